from .avit import AViT
from .base import BaseBackbone
from .dualvit import DualViT
from .elsa_swin import ELSASwin
from .shuffle_swin import ShuffleSwin
from .shuffle_vit import ShuffleViT

__all__ = [
    'AViT', 'BaseBackbone', 'DualViT', 'ELSASwin', 'ShuffleSwin', 'ShuffleViT'
]
