"""Runner, hooks (crash-safe checkpoints), optimizer-wrapper constructors
and the mixed-precision optimizer wrapper."""
from . import optim  # noqa: F401  (registers the constructor)
from .amp import DeviceAmpOptimWrapper
from .hooks import SafeCheckpointHook
from .runner import MMExtRunner

__all__ = ['DeviceAmpOptimWrapper', 'MMExtRunner', 'SafeCheckpointHook']
