"""Runner, hooks (crash-safe checkpoints, non-finite losses, SIGTERM) and
optimizer-wrapper constructors."""
from . import optim  # noqa: F401  (registers the constructor)
from .hooks import SafeCheckpointHook
from .nonfinite import NonFiniteCheckHook
from .preemption import PreemptionHook
from .runner import MMExtRunner

__all__ = [
    'MMExtRunner', 'SafeCheckpointHook', 'NonFiniteCheckHook',
    'PreemptionHook'
]
