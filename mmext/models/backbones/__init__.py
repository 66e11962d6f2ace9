from .avit import AViT
from .base import BaseBackbone
from .dualvit import DualViT
from .elsa_swin import ELSASwin

__all__ = ['AViT', 'BaseBackbone', 'DualViT', 'ELSASwin']
