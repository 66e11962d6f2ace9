"""Runner, hooks (crash-safe checkpoints, non-finite losses, SIGTERM),
optimizer-wrapper constructors and TTA models."""
from . import optim, tta  # noqa: F401  (registers the constructor, TTA)
from .hooks import SafeCheckpointHook
from .nonfinite import NonFiniteCheckHook
from .preemption import PreemptionHook
from .runner import MMExtRunner

__all__ = [
    'MMExtRunner', 'SafeCheckpointHook', 'NonFiniteCheckHook',
    'PreemptionHook'
]
