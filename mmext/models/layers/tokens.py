"""Moving between token sequences ``(B, N, C)`` and feature maps.

Transformer stages keep activations as ``(B, H*W, C)`` so that every linear
layer is one plain GEMM. Convolutions need NCHW; viewing the token buffer as
NCHW gives a *channels-last* tensor without copying, which oneDNN/cuDNN
convolutions consume directly and return channels-last again, so the way back
is free as well.
"""
from typing import Tuple

import torch
from torch import Tensor


def tokens_to_map(x: Tensor, hw: Tuple[int, int]) -> Tensor:
    """``(B, H*W, C)`` -> ``(B, C, H, W)`` as a channels-last view (no copy
    when ``x`` is contiguous)."""
    b, n, c = x.shape
    h, w = hw
    if n != h * w:
        raise ValueError(f'{n} tokens do not form a {h}x{w} map')
    return x.view(b, h, w, c).permute(0, 3, 1, 2)


def map_to_tokens(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, H*W, C)``; a view for channels-last maps."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


def to_channels_last(x: Tensor) -> Tensor:
    """Channels-last copy of an NCHW map (no-op when it already is)."""
    return x.contiguous(memory_format=torch.channels_last)


def build_patch_embed(in_channels: int, embed_dims: int, patch_size: int,
                      norm_cfg: dict = None):
    """mmcv's ``PatchEmbed`` as the Swin-like backbones use it: a
    ``patch_size`` conv with stride ``patch_size``, the input padded at the
    bottom/right to a multiple of it (any input size; by
    :class:`~mmext.models.layers.padding.CornerPad`, one traced graph for
    every size), then ``norm_cfg``."""
    from mmcv.cnn.bricks.transformer import PatchEmbed

    from .norm import fp32_norm
    from .padding import use_corner_pad
    embed = PatchEmbed(
        in_channels=in_channels,
        embed_dims=embed_dims,
        conv_type='Conv2d',
        kernel_size=patch_size,
        stride=patch_size,
        padding='corner',
        norm_cfg=norm_cfg)
    if embed.norm is not None:
        embed.norm = fp32_norm(embed.norm)
    return use_corner_pad(embed)
