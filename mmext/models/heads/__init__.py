"""Classification heads; they build on mmpretrain and are skipped (with the
rest of mmext working) when it is not installed."""
import importlib.util

__all__ = []

if importlib.util.find_spec('mmpretrain') is not None:
    from .dualvit_head import DualViTClsHead  # noqa: F401
    __all__ += ['DualViTClsHead']
