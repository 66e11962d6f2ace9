"""Thin mmdet detector subclasses; skipped when mmdet is not installed."""
import importlib.util

__all__ = []

if importlib.util.find_spec('mmdet') is not None:
    from .backbone_loss import BackboneLossMaskRCNN
    __all__ += ['BackboneLossMaskRCNN']
