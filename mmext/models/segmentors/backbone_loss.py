"""mmseg's ``EncoderDecoder`` plus the backbone's own losses."""
from mmseg.models.segmentors import EncoderDecoder

from mmext.registry import MODELS
from ..backbone_loss import BackboneLossMixin

__all__ = ['BackboneLossEncoderDecoder']


@MODELS.register_module()
class BackboneLossEncoderDecoder(BackboneLossMixin, EncoderDecoder):
    """See :class:`~mmext.models.backbone_loss.BackboneLossMixin`.
    """
