from .dualvit import DualViT

__all__ = ['DualViT']

from .elsa_swin import ELSASwin  # noqa: E402
__all__ += ['ELSASwin']
from .avit import AViT  # noqa: E402
__all__ += ['AViT']
