from .base import BaseBackbone
from .dualvit import DualViT
from .elsa_swin import ELSASwin
from .shuffle_swin import ShuffleSwin
from .shuffle_vit import ShuffleViT

__all__ = ['BaseBackbone', 'DualViT', 'ELSASwin', 'ShuffleSwin', 'ShuffleViT']
