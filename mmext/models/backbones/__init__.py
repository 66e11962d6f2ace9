from .dualvit import DualViT

__all__ = ['DualViT']

from .elsa_swin import ELSASwin  # noqa: E402
__all__ += ['ELSASwin']

from .shuffle_swin import ShuffleSwin  # noqa: E402
from .shuffle_vit import ShuffleViT  # noqa: E402
__all__ += ['ShuffleSwin', 'ShuffleViT']
