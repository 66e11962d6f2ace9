"""(Shifted) window multi-head self-attention with a relative position bias.

The Swin Transformer convention is used throughout: the bias table has shape
``((2 * Wh - 1) * (2 * Ww - 1), num_heads)`` and is indexed by the relative
position *query minus key*; ``qkv`` rows are ordered ``[q; k; v]``. Feature
maps of any size are padded (bottom/right, with zeros) to a multiple of the
window; shifted windows use a cyclic roll and a -100 mask between regions
that were not adjacent before the roll.

Only torch and mmengine are needed; attention runs through
``torch.nn.functional.scaled_dot_product_attention``.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor

from mmext.utils.precision import full_precision, upcast
from .padding import pad_needed, pad_to_multiple

__all__ = ['WindowMSA', 'ShiftWindowMSA', 'relative_position_index']


def _pair(x) -> Tuple[int, int]:
    if isinstance(x, int):
        return x, x
    x = tuple(x)
    if len(x) != 2:
        raise ValueError(f'expected an int or a pair, got {x!r}')
    return int(x[0]), int(x[1])


def relative_position_index(window_size: Union[int, Sequence[int]]) -> Tensor:
    """``(N, N)`` index into the bias table for every (query, key) pair of a
    window with ``N = Wh * Ww`` tokens, for the offset query minus key."""
    wh, ww = _pair(window_size)
    ys, xs = torch.meshgrid(
        torch.arange(wh), torch.arange(ww), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + (wh - 1)
    dx = xs[:, None] - xs[None, :] + (ww - 1)
    return dy * (2 * ww - 1) + dx


class WindowMSA(BaseModule):
    """Multi-head self-attention inside one window, with relative bias.

    Args:
        embed_dims (int): channels.
        num_heads (int): heads; must divide ``embed_dims``.
        window_size (int | tuple[int]): ``(Wh, Ww)``.
        qkv_bias (bool): bias in the qkv projection. Default True.
        qk_scale (float, optional): defaults to ``head_dim ** -0.5``.
        attn_drop_rate (float): dropout on attention weights.
        proj_drop_rate (float): dropout after the output projection.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: Union[int, Sequence[int]],
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 attn_drop_rate: float = 0.,
                 proj_drop_rate: float = 0.,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible '
                             f'by num_heads ({num_heads})')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.window_size = _pair(window_size)
        head_dims = embed_dims // num_heads
        self.scale = qk_scale or head_dims**-0.5
        wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        self.register_buffer(
            'relative_position_index',
            relative_position_index(self.window_size),
            persistent=False)
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop_rate = attn_drop_rate
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def init_weights(self):
        super().init_weights()
        trunc_normal_(self.relative_position_bias_table, std=.02)

    def relative_bias(self) -> Tensor:
        """``(num_heads, N, N)`` bias for one window."""
        n = self.window_size[0] * self.window_size[1]
        idx = self.relative_position_index.reshape(-1)
        bias = self.relative_position_bias_table[idx].view(n, n, -1)
        return bias.permute(2, 0, 1)

    def forward(self,
                x: Tensor,
                mask: Optional[Tensor] = None,
                batch: Optional[int] = None) -> Tensor:
        """
        Args:
            x (Tensor): ``(num_windows * B, N, C)`` windows, ordered with the
                window index fastest-varying inside each image.
            mask (Tensor, optional): ``(num_windows, N, N)`` additive mask.
            batch (int, optional): ``B``; inferred from ``mask`` if omitted.
        """
        bw, n, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(bw, n, 3, heads, c // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (bw, heads, N, d)
        # 4-D inputs and a 4-D mask keep SDPA on its fused CPU kernel; a 3-D
        # mask or 5-D inputs send it to the unfused path (~4x slower)
        bias = self.relative_bias().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            if bw % nw != 0:
                raise ValueError(f'{bw} windows cannot be grouped by a mask '
                                 f'for {nw} windows per image')
            bias = bias + mask.to(bias.dtype).unsqueeze(1)  # nW, heads, N, N
            # a view for one image, one copy of the mask per image otherwise
            bias = bias.expand(bw // nw, nw, heads, n, n).reshape(
                bw, heads, n, n)
        drop = self.attn_drop_rate if self.training else 0.
        if bias.requires_grad and q.device.type == 'cpu' and \
                torch.is_grad_enabled():
            # SDPA's CPU kernels cannot differentiate the bias and fall
            # back to an unfused path with extra masking passes; one batched
            # GEMM that adds the bias makes a Swin training step ~8% faster
            d = c // heads
            # logits and softmax in float32 under mixed precision, as
            # SDPA's kernels compute them
            with full_precision(q.device.type):
                scores = torch.baddbmm(
                    upcast(bias).expand(bw, heads, n, n).reshape(
                        bw * heads, n, n),
                    (upcast(q) * self.scale).reshape(bw * heads, n, d),
                    upcast(k).reshape(bw * heads, n, d).transpose(1, 2))
                attn = F.dropout(scores.softmax(-1), drop, self.training)
            out = torch.bmm(attn.to(v.dtype), v.reshape(bw * heads, n, d))
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop,
                scale=self.scale)
        out = out.reshape(bw, heads, n, c // heads).transpose(1, 2)
        out = self.proj(out.reshape(bw, n, c))
        return self.proj_drop(out)


# explicit sizes instead of -1 in the views: with symbolic (compiled,
# dynamic) shapes a -1 becomes a division the shape engine must simplify
def _window_partition(x: Tensor, ws: Tuple[int, int]) -> Tensor:
    b, h, w, c = x.shape
    nh, nw = h // ws[0], w // ws[1]
    x = x.view(b, nh, ws[0], nw, ws[1], c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, ws[0] * ws[1],
                                               c)


def _window_reverse(windows: Tensor, ws: Tuple[int, int], b: int, h: int,
                    w: int) -> Tensor:
    c = windows.shape[-1]
    x = windows.view(b, h // ws[0], w // ws[1], ws[0], ws[1], c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


class ShiftWindowMSA(BaseModule):
    """Window attention over a token map of any size, optionally shifted.

    Args:
        embed_dims, num_heads: see :class:`WindowMSA`.
        window_size (int): square window size. Default 7.
        shift_size (int): cyclic shift, ``0 <= shift_size < window_size``.
        pad_small_map (bool): on a map no larger than one window in height
            or width, True shifts anyway (mmdet's Swin); False does not
            shift there, as the original Swin classifiers (and mmpretrain's
            ``pad_small_map=False``), whose 224-pixel models attend their
            7x7 last stage unshifted. Default True.
        **msa_kwargs: ``qkv_bias``, ``qk_scale``, ``attn_drop_rate``,
            ``proj_drop_rate`` of :class:`WindowMSA`.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int = 7,
                 shift_size: int = 0,
                 pad_small_map: bool = True,
                 init_cfg=None,
                 **msa_kwargs):
        super().__init__(init_cfg=init_cfg)
        if not 0 <= shift_size < window_size:
            raise ValueError(f'shift_size must be in [0, window_size), got '
                             f'{shift_size} with window_size {window_size}')
        self.window_size = window_size
        self.shift_size = shift_size
        self.pad_small_map = pad_small_map
        self.w_msa = WindowMSA(embed_dims, num_heads, window_size,
                               **msa_kwargs)

    def _shift_mask(self, hp: int, wp: int, device) -> Tensor:
        """``(nW, N, N)`` mask: -100 between tokens of a window that came
        from different regions of the rolled map. The region of a row
        (column) is 0, 1 or 2 by its distance from the bottom (right)
        border; comparisons keep the mask a function of the map size."""
        ws, s = self.window_size, self.shift_size

        def regions(size):
            pos = torch.arange(size, device=device)
            return (pos >= size - ws).long() + (pos >= size - s).long()

        region = regions(hp)[:, None] * 3 + regions(wp)[None, :]
        region = region.to(torch.float32)[None, :, :, None]
        region = _window_partition(region, (ws, ws)).squeeze(-1)  # nW, N
        diff = region.unsqueeze(1) - region.unsqueeze(2)
        return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.)

    def _shift_for(self, h, w, device) -> Union[int, Tensor]:
        """The shift of an ``h x w`` map: ``shift_size``, or 0 on a map no
        larger than a window without ``pad_small_map``. While
        compiling or exporting that choice is a boolean 0-d tensor (shift
        or not), so that the graph makes it for each input instead of
        keeping (or guarding on) the example's."""
        ws, s = self.window_size, self.shift_size
        if self.pad_small_map or not s:
            return s
        if torch.compiler.is_compiling():
            return torch.scalar_tensor(torch.sym_min(h, w),
                                       device=device) > ws
        return 0 if min(h, w) <= ws else s

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        """``x``: ``(B, H * W, C)`` tokens of an ``H x W`` map."""
        b, length, c = x.shape
        h, w = hw_shape
        if length != h * w:
            raise ValueError(f'got {length} tokens for a {h}x{w} map')
        ws = self.window_size
        x, hp, wp = pad_to_multiple(x.view(b, h, w, c), ws)
        shift = self._shift_for(h, w, x.device)
        mask = None
        if torch.is_tensor(shift):
            # the graph's choice: rolled or not, the mask zeroed if not
            s = self.shift_size
            x = torch.where(shift, torch.roll(x, (-s, -s), (1, 2)), x)
            mask = self._shift_mask(hp, wp, x.device) * shift
        elif shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
            mask = self._shift_mask(hp, wp, x.device)
        windows = _window_partition(x, (ws, ws))
        windows = self.w_msa(windows, mask=mask)
        x = _window_reverse(windows, (ws, ws), b, hp, wp)
        if torch.is_tensor(shift):
            s = self.shift_size
            x = torch.where(shift, torch.roll(x, (s, s), (1, 2)), x)
        elif shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        if pad_needed(hp - h, wp - w):
            # always a copy: a reshape would check contiguity, which while
            # compiling is a guard on whether the map was padded
            x = x[:, :h, :w, :].clone(memory_format=torch.contiguous_format)
        return x.view(b, h * w, c)
