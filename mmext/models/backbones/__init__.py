from .avit import AViT
from .base import BaseBackbone
from .dualvit import DualViT
from .elsa_swin import ELSASwin
from .plain_vit import PlainViTBackbone
from .shuffle_swin import ShuffleSwin
from .shuffle_vit import ShuffleViT
from .swin_like import SwinLikeBackbone

__all__ = [
    'AViT', 'BaseBackbone', 'DualViT', 'ELSASwin', 'PlainViTBackbone',
    'ShuffleSwin', 'ShuffleViT', 'SwinLikeBackbone'
]
