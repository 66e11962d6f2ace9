"""Zero padding of maps to a multiple of a window, patch or merge size,
written so that a traced graph (``torch.export``, and ``torch.compile``
with dynamic shapes) stays general over input sizes.

Eager code may skip a pad of nothing (``F.pad`` copies even then). A graph
must not: traced by ``torch.export``, the skip would be decided by the
example's size and baked in for every size; under ``torch.compile`` it is
a guard on the size's divisibility, a recompile for each other case. So
while compiling or exporting the pad always runs (a zero pad is a no-op
the compiler fuses into the next copy), and the padded size is written as
the product ``ceil(h / k) * k``: a symbolic size the shape engine can split
again without new guards (``h + (k - h % k) % k`` it cannot simplify).
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import AdaptivePadding
from torch import Tensor

__all__ = [
    'padded_size', 'pad_needed', 'pad_to_multiple', 'CornerPad',
    'use_corner_pad'
]


def padded_size(size, multiple: int):
    """``size`` rounded up to a multiple of ``multiple``; written as a
    ceiling so that a symbolic size stays provably divisible."""
    return (size + multiple - 1) // multiple * multiple


def pad_needed(*pads) -> bool:
    """Whether to call ``F.pad`` for these pad widths: always while
    compiling or exporting, else only if one is positive."""
    return torch.compiler.is_compiling() or any(p > 0 for p in pads)


def pad_to_multiple(x: Tensor, multiple: int) -> Tuple[Tensor, int, int]:
    """Zero-pad the bottom/right of a ``(B, H, W, C)`` map so that H and W
    are multiples of ``multiple``; returns the map and its new ``(H, W)``.
    """
    h, w = x.shape[1], x.shape[2]
    hp, wp = padded_size(h, multiple), padded_size(w, multiple)
    if pad_needed(hp - h, wp - w):
        x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    return x, hp, wp


class CornerPad(nn.Module):
    """mmcv's ``AdaptivePadding(padding='corner')`` (zeros at the bottom and
    right, so that a ``kernel_size`` / ``stride`` / ``dilation`` sliding
    window covers the whole map) with the same result, written as this
    module describes."""

    def __init__(self, kernel_size: Tuple[int, int], stride: Tuple[int, int],
                 dilation: Tuple[int, int]):
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.dilation = tuple(dilation)

    def pad_shape(self, h: int, w: int) -> Tuple[int, int]:
        pads = []
        for size, k, s, d in zip((h, w), self.kernel_size, self.stride,
                                 self.dilation):
            span = (k - 1) * d + 1
            if span == s:  # patches that tile the map: no max() needed
                pads.append(padded_size(size, s) - size)
                continue
            windows = (size + s - 1) // s  # ceil(size / s)
            pads.append(torch.sym_max((windows - 1) * s + span - size, 0))
        return pads[0], pads[1]

    def forward(self, x: Tensor) -> Tensor:
        pad_h, pad_w = self.pad_shape(x.shape[-2], x.shape[-1])
        if pad_needed(pad_h, pad_w):
            x = F.pad(x, [0, pad_w, 0, pad_h])
        return x


def use_corner_pad(module: nn.Module) -> nn.Module:
    """Replace every mmcv ``AdaptivePadding(padding='corner')`` inside
    ``module`` (e.g. of mmcv's ``PatchEmbed`` and ``PatchMerging``) by an
    equivalent :class:`CornerPad`; both hold no parameters, so checkpoints
    are unchanged. Returns ``module``."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, AdaptivePadding) and \
                    child.padding == 'corner':
                setattr(parent, name,
                        CornerPad(child.kernel_size, child.stride,
                                  child.dilation))
    return module
