"""Thin mmseg segmentor subclasses; skipped when mmseg is not installed."""
import importlib.util

__all__ = []

if importlib.util.find_spec('mmseg') is not None:
    from .backbone_loss import BackboneLossEncoderDecoder
    __all__ += ['BackboneLossEncoderDecoder']
