"""Export-time replacements of third-party forwards.

Some mmcv / torch modules decide with Python arithmetic on sizes (mmcv's
``AdaptivePadding``: ``if pad_h > 0``; adaptive average pooling: its
decomposition for ONNX picks bins from the example's size); the exported
graph would keep the example's decision for every input size. Inside
:func:`export_rewrites` those forwards compute the same result from
symbolic sizes. mmext's own layers need no rewrite: they keep such
decisions traceable themselves.
"""
import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor


def _ceil_div(a, b):
    return (a + b - 1) // b


def _adaptive_padding_forward(self, x: Tensor) -> Tensor:
    """mmcv's ``AdaptivePadding``: pad so that a ``kernel_size`` /
    ``stride`` / ``dilation`` window covers the input (``'corner'``: all at
    the bottom/right; ``'same'``: split in two), with the pad computed as a
    symbolic size and applied even when it is 0."""
    pads = []
    for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride,
                             self.dilation):
        pads.append(
            torch.sym_max((_ceil_div(size, s) - 1) * s + (k - 1) * d + 1 -
                          size, 0))
    pad_h, pad_w = pads
    if self.padding == 'corner':
        return F.pad(x, [0, pad_w, 0, pad_h])
    return F.pad(
        x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


def _bin_means(size, bins: int, like: Tensor) -> Tensor:
    """``(bins, size)`` matrix whose row ``i`` averages adaptive pooling's
    bin ``i``: ``[floor(i * size / bins), ceil((i + 1) * size / bins))``."""
    i = torch.arange(bins, device=like.device)
    start = i * size // bins
    end = _ceil_div((i + 1) * size, bins)
    pos = torch.arange(size, device=like.device)
    inside = (pos >= start[:, None]) & (pos < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def _adaptive_avg_pool2d_forward(self, x: Tensor) -> Tensor:
    """``nn.AdaptiveAvgPool2d`` as two products with bin-averaging matrices
    built from the (symbolic) input size."""
    out = self.output_size
    out_h, out_w = (out, out) if isinstance(out, int) else out
    h, w = x.shape[-2:]
    out_h = h if out_h is None else out_h
    out_w = w if out_w is None else out_w
    rows = _bin_means(h, out_h, x)  # (out_h, H)
    cols = _bin_means(w, out_w, x)  # (out_w, W)
    return torch.matmul(torch.matmul(rows, x), cols.t())


@contextlib.contextmanager
def _patched(owner, name: str, value) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def export_rewrites() -> Iterator[None]:
    """Within this context, the third-party forwards above are replaced."""
    from mmcv.cnn.bricks.transformer import AdaptivePadding
    with _patched(AdaptivePadding, 'forward', _adaptive_padding_forward), \
            _patched(torch.nn.AdaptiveAvgPool2d, 'forward',
                     _adaptive_avg_pool2d_forward):
        yield
