"""Zero padding of channels-last maps that an exported graph keeps general.

Eager code may skip a pad of nothing (``F.pad`` copies even then); a graph
traced by ``torch.export`` must not: the skip would be decided by the size
of the example input and baked into the graph for every size.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def padded_size(size, multiple: int):
    """``size`` rounded up to a multiple of ``multiple``; written as a
    ceiling so that a symbolic size stays provably divisible."""
    return (size + multiple - 1) // multiple * multiple


def pad_to_multiple(x: Tensor, multiple: int) -> Tuple[Tensor, int, int]:
    """Zero-pad the bottom/right of a ``(B, H, W, C)`` map so that H and W
    are multiples of ``multiple``; returns the map and its new ``(H, W)``.
    """
    h, w = x.shape[1], x.shape[2]
    hp, wp = padded_size(h, multiple), padded_size(w, multiple)
    if torch.compiler.is_exporting() or hp != h or wp != w:
        x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    return x, hp, wp
