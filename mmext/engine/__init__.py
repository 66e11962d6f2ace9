"""Runner and hooks (crash-safe checkpoints, CPU-distributed runs)."""
from .hooks import SafeCheckpointHook
from .runner import MMExtRunner

__all__ = ['MMExtRunner', 'SafeCheckpointHook']
