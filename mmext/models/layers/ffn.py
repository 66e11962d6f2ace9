"""Feed-forward layers on token sequences."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor

from .tokens import map_to_tokens, tokens_to_map

#: without autograd, a ConvFFN processes the map in bands of rows whose
#: hidden activations take about this many bytes: they stay in cache, and
#: the full-size hidden tensors (the largest activations of a high-resolution
#: forward) are never allocated
FFN_BAND_BYTES = 16 * 2**20


class _GeluLinear(torch.autograd.Function):
    """``linear(gelu(h))`` that keeps only ``h`` for the backward pass and
    recomputes ``gelu(h)`` there: the hidden activations of an FFN are the
    largest tensors autograd holds, and this drops one of the three a
    conv-FFN would keep (``fc1`` out, ``dwconv`` out, ``gelu`` out) for one
    cheap elementwise recomputation."""

    @staticmethod
    def forward(ctx, h, weight, bias):
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(h), weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        h, weight = ctx.saved_tensors
        grad_h = grad_w = grad_b = None
        # under autocast the forward ran in low precision: follow grad_out
        dtype = grad_out.dtype
        flat = grad_out.reshape(-1, grad_out.shape[-1])
        if ctx.needs_input_grad[1]:
            a = F.gelu(h).to(dtype)
            grad_w = flat.t().mm(a.reshape(-1, a.shape[-1]))
            del a
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = flat.sum(0)
        if ctx.needs_input_grad[0]:
            grad_a = grad_out.matmul(weight.to(dtype)).to(h.dtype)
            # elementwise, so it may overwrite grad_a: one fewer hidden-size
            # buffer at the memory peak of the backward pass
            grad_h = torch.ops.aten.gelu_backward.grad_input(
                grad_a, h, grad_input=grad_a)
        return grad_h, grad_w, grad_b


class ConvFFN(nn.Module):
    """``fc1 -> 3x3 depth-wise conv -> act -> fc2`` on ``(B, H*W, C)`` tokens
    (the PVTv2 / SegFormer "Mix-FFN").

    The depth-wise conv runs on a channels-last view of the token buffer, so
    there is no transpose or copy between the linear layers and the conv.
    When no gradient is recorded (inference), large maps are processed in
    horizontal bands (with a one-row halo for the conv): same results, about
    half the time on CPU and a fraction of the peak memory. When training,
    with ``recompute_hidden`` the whole FFN is recomputed in the backward
    pass (activation checkpointing of the FFN alone: autograd keeps only
    its input, for a few percent more time); without it, autograd keeps one
    hidden-size tensor instead of three (the activation is recomputed).

    Args:
        in_dims (int): token width.
        hidden_dims (int): hidden width.
        act_layer (type): activation class. Default ``nn.GELU``.
        kernel_size (int): depth-wise kernel (odd). Default 3.
        recompute_hidden (bool): recompute the FFN in the backward pass
            instead of keeping its hidden activations. Default True;
            pointless inside a block that is checkpointed as a whole.
    """

    def __init__(self, in_dims: int, hidden_dims: int,
                 act_layer=nn.GELU, kernel_size: int = 3,
                 recompute_hidden: bool = True):
        super().__init__()
        self.recompute_hidden = recompute_hidden
        if kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be odd, got {kernel_size}')
        self.fc1 = nn.Linear(in_dims, hidden_dims)
        self.dwconv = nn.Conv2d(hidden_dims, hidden_dims, kernel_size,
                                padding=kernel_size // 2, groups=hidden_dims)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_dims, in_dims)

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        rows = self._band_rows(x, hw)
        if rows:
            return self._forward_banded(x, hw, rows)
        if not torch.is_grad_enabled():
            return self.fc2(self.act(self._fc1_dwconv(x, hw)))
        # the hidden activations are the largest tensors autograd would keep:
        # recompute them in the backward pass from the (narrow) input
        if self.recompute_hidden:
            return cp.checkpoint(self._forward_train, x, hw,
                                 use_reentrant=False)
        return self._forward_train(x, hw)

    def _forward_train(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        x = self._fc1_dwconv(x, hw)
        if type(self.act) is nn.GELU and self.act.approximate == 'none':
            return _GeluLinear.apply(x, self.fc2.weight, self.fc2.bias)
        return self.fc2(self.act(x))

    def _fc1_dwconv(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        return map_to_tokens(self.dwconv(tokens_to_map(self.fc1(x), hw)))

    def _band_rows(self, x: Tensor, hw: Tuple[int, int]) -> int:
        """Rows per band, or 0 to run the whole map at once."""
        # (a compiled or exported graph runs whole maps: the bands are a
        # Python loop over the height, which a graph would fix)
        if torch.is_grad_enabled() or x.device.type != 'cpu' or \
                torch.compiler.is_compiling():
            return 0
        height, width = hw
        bytes_per_row = x.shape[0] * width * self.fc1.out_features * \
            x.element_size()
        rows = max(4 * self.dwconv.padding[0], FFN_BAND_BYTES //
                   max(bytes_per_row, 1))
        return rows if height >= 2 * rows else 0

    def _forward_banded(self, x: Tensor, hw: Tuple[int, int],
                        rows: int) -> Tensor:
        height, width = hw
        b, _, c = x.shape
        halo = self.dwconv.padding[0]
        x = x.reshape(b, height, width, c)  # split views may be strided
        out = x.new_empty(b, height, width, self.fc2.out_features)
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            # the band plus `halo` real rows on each side; the conv's own
            # zero padding only matters for rows we discard or at the border
            lo, hi = max(0, top - halo), min(height, bottom + halo)
            h = self.fc1(x[:, lo:hi]).permute(0, 3, 1, 2)  # channels-last
            h = self.dwconv(h)[:, :, top - lo:bottom - lo]
            out[:, top:bottom] = self.fc2(self.act(h.permute(0, 2, 3, 1)))
        return out.view(b, height * width, -1)


class MLP(nn.Sequential):
    """``Linear -> act -> Linear``; a Sequential so weights are ``0.*`` and
    ``2.*`` like the ``nn.Sequential`` MLPs in most reference code."""

    def __init__(self, in_dims: int, hidden_dims: int, act_layer=nn.GELU,
                 out_dims: int = None):
        super().__init__(
            nn.Linear(in_dims, hidden_dims), act_layer(),
            nn.Linear(hidden_dims, out_dims or in_dims))
