from .base import BaseBackbone
from .dualvit import DualViT
from .elsa_swin import ELSASwin

__all__ = ['BaseBackbone', 'DualViT', 'ELSASwin']
