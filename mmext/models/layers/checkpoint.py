"""Gradient checkpointing switch used by every block."""
from typing import Callable

import torch
import torch.utils.checkpoint as cp


def maybe_checkpoint(fn: Callable, *args, enabled: bool = True):
    """``fn(*args)``, recomputed in the backward pass (non-reentrant
    ``torch.utils.checkpoint``) when ``enabled`` and autograd is recording;
    a plain call otherwise (inference pays nothing)."""
    if enabled and torch.is_grad_enabled():
        return cp.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)
