"""Zero padding of maps to a multiple of a window, patch or merge size,
written so that ``torch.compile(dynamic=True)`` traces one graph for every
input size.

Two things would otherwise make a compiled backbone recompile for new
sizes: a Python ``if`` on whether a size is divisible (a guard on
``h % k == 0``), and sizes written as ``h + (k - h % k) % k``, which the
symbolic-shape engine cannot simplify when a later ``view`` splits them
(slow to trace, and more guards). Here the padded size is the product
``ceil(h / k) * k`` and, while compiling, the pad always runs (a zero pad
is a no-op that the compiler fuses into the next copy). Eager mode pads
only when something is padded, as before (``F.pad`` copies even then).
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import AdaptivePadding
from torch import Tensor

__all__ = ['padded_size', 'pad_needed', 'CornerPad', 'use_corner_pad']


def padded_size(size: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is ``>= size``."""
    return (size + multiple - 1) // multiple * multiple


def pad_needed(*pads: int) -> bool:
    """Whether to call ``F.pad`` for these pad widths (see the module
    docstring: always while compiling)."""
    return torch.compiler.is_compiling() or any(p > 0 for p in pads)


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
            pads.append(max((windows - 1) * s + span - size, 0))
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
