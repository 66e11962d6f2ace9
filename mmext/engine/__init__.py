"""Runner, hooks (crash-safe checkpoints) and optimizer-wrapper
constructors."""
from . import optim  # noqa: F401  (registers the constructor)
from .hooks import SafeCheckpointHook
from .runner import MMExtRunner

__all__ = ['MMExtRunner', 'SafeCheckpointHook']
