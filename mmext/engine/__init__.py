"""Runner, hooks (crash-safe checkpoints), optimizer-wrapper constructors
and TTA models."""
from . import optim, tta  # noqa: F401  (registers the constructor, TTA)
from .hooks import SafeCheckpointHook
from .runner import MMExtRunner

__all__ = ['MMExtRunner', 'SafeCheckpointHook']
