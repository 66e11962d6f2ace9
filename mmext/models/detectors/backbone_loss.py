"""mmdet detectors plus the backbone's own loss terms (A-ViT's halting
losses): thin subclasses."""
from mmdet.models.detectors import MaskRCNN

from mmext.registry import MODELS
from ..backbone_loss import BackboneLossMixin

__all__ = ['BackboneLossMaskRCNN']


@MODELS.register_module()
class BackboneLossMaskRCNN(BackboneLossMixin, MaskRCNN):
    """mmdet's ``MaskRCNN`` plus the backbone's own losses (see
    :class:`BackboneLossMixin`)."""
