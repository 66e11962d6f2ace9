"""Runner, hooks (crash-safe checkpoints, backbone compilation) and
optimizer-wrapper constructors."""
from . import optim  # noqa: F401  (registers the constructor)
from .compile import CompileBackboneHook, compile_backbone
from .hooks import SafeCheckpointHook
from .runner import MMExtRunner

__all__ = [
    'MMExtRunner', 'SafeCheckpointHook', 'CompileBackboneHook',
    'compile_backbone'
]
