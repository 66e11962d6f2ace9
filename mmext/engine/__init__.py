"""Runner, hooks (crash-safe checkpoints, non-finite losses, SIGTERM,
backbone compilation), optimizer-wrapper constructors and the
mixed-precision optimizer wrapper."""
from . import optim  # noqa: F401  (registers the constructor)
from .amp import DeviceAmpOptimWrapper
from .compile import CompileBackboneHook, compile_backbone
from .hooks import SafeCheckpointHook
from .nonfinite import NonFiniteCheckHook
from .preemption import PreemptionHook
from .runner import MMExtRunner

__all__ = [
    'DeviceAmpOptimWrapper', 'MMExtRunner', 'SafeCheckpointHook',
    'NonFiniteCheckHook', 'PreemptionHook', 'CompileBackboneHook',
    'compile_backbone'
]
