"""Feed-forward layers on token sequences."""
from typing import Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .tokens import map_to_tokens, tokens_to_map

#: without autograd, a ConvFFN processes the map in bands of rows whose
#: hidden activations take about this many bytes: they stay in cache, and
#: the full-size hidden tensors (the largest activations of a high-resolution
#: forward) are never allocated
FFN_BAND_BYTES = 16 * 2**20


class ConvFFN(nn.Module):
    """``fc1 -> 3x3 depth-wise conv -> act -> fc2`` on ``(B, H*W, C)`` tokens
    (the PVTv2 / SegFormer "Mix-FFN").

    The depth-wise conv runs on a channels-last view of the token buffer, so
    there is no transpose or copy between the linear layers and the conv.
    When no gradient is recorded (inference), large maps are processed in
    horizontal bands (with a one-row halo for the conv): same results, about
    half the time on CPU and a fraction of the peak memory.

    Args:
        in_dims (int): token width.
        hidden_dims (int): hidden width.
        act_layer (type): activation class. Default ``nn.GELU``.
        kernel_size (int): depth-wise kernel (odd). Default 3.
    """

    def __init__(self, in_dims: int, hidden_dims: int,
                 act_layer=nn.GELU, kernel_size: int = 3):
        super().__init__()
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
        x = self.fc1(x)
        x = map_to_tokens(self.dwconv(tokens_to_map(x, hw)))
        return self.fc2(self.act(x))

    def _band_rows(self, x: Tensor, hw: Tuple[int, int]) -> int:
        """Rows per band, or 0 to run the whole map at once."""
        if torch.is_grad_enabled() or x.device.type != 'cpu':
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
        x = x.view(b, height, width, c)
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
