"""Decisions that every process of a distributed run must take together
(a process that stops alone leaves the others waiting in a collective)."""
import torch
from mmengine.dist import all_reduce, is_distributed


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any process (no communication when not
    distributed)."""
    if not is_distributed():
        return bool(flag)
    value = torch.tensor([float(bool(flag))])
    all_reduce(value, op='sum')  # on the backend's device
    return bool(value.item() > 0)
