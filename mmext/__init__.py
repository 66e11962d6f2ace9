"""mmext: recent vision-transformer backbones for OpenMMLab 2.0."""
from .utils.checkpoint import register_safe_globals
from .version import __version__

# mmengine checkpoints hold a few non-tensor objects; allow exactly those
# under torch.load(weights_only=True).
register_safe_globals()

__all__ = ['__version__']
