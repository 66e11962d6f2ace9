"""Runner, hooks (crash-safe checkpoints), optimizer-wrapper constructors
and TTA models."""
from . import optim, tta  # noqa: F401  (registers the constructor, TTA)
from .compile import CompileBackboneHook, compile_backbone
from .hooks import SafeCheckpointHook
from .runner import MMExtRunner

__all__ = [
    'MMExtRunner', 'SafeCheckpointHook', 'CompileBackboneHook',
    'compile_backbone'
]
