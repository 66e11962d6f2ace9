"""Shuffle Swin: Swin Transformer with the channel shuffle module.

"Plug'n Play Channel Shuffle Module for Enhancing Tiny Vision Transformers"
(Xu et al., arXiv:2310.05642); reimplemented from the authors' pre-release
code (github.com/Ackesnal/Swin-Transformer, branch ``release``). Tokens are
twice as wide as the Swin blocks: each block attends over the first half of
the channels, with both shortcuts halved (``rescale='fixed'``), and the
halves are interleaved after it. The downsampling merges the two halves
separately.

Authors' checkpoints load after ``tools/convert_imagenet.py shuffle_swin SRC
DST``.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from mmext.registry import MODELS
from ..layers.blocks import SwinBlock
from ..layers.channel_shuffle import (ChannelShuffleMixin,
                                      learnable_rescale_keys)
from ..layers.padding import pad_to_multiple
from .base import BaseBackbone

__all__ = ['ShuffleSwin', 'ShuffleSwinBlock', 'GroupPatchMerging']


class ShuffleSwinBlock(ChannelShuffleMixin, SwinBlock):
    """A Swin block on the attended half of ``embed_dims`` tokens, then the
    channel shuffle (see :class:`ChannelShuffleMixin`).

    Args:
        embed_dims (int): full token width (the block runs at half of it).
        num_heads (int): heads of the attended half.
        rescale (str | None): 'fixed' (the authors' 1/2), 'learnable' or
            None.
        Other arguments: see :class:`~mmext.models.layers.SwinBlock`.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 rescale: Optional[str] = 'fixed',
                 **swin_block_kwargs):
        super().__init__(embed_dims // 2, num_heads, **swin_block_kwargs)
        self.init_rescale(rescale, 0.5)


class GroupPatchMerging(BaseModule):
    """2x downsampling of each channel half on its own.

    Each half (``C/2`` channels) gathers its 2x2 neighbours in the order
    (0, 0), (1, 0), (0, 1), (1, 1) (row, column offsets; Swin's order),
    then ``norms[g]`` (``2C`` wide) and ``reductions[g]`` (``2C -> C``, no
    bias); the two results are concatenated. Odd maps are padded with zeros
    at the bottom/right.
    """

    def __init__(self, in_channels: int, norm_cfg: dict = dict(type='LN'),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if in_channels % 2:
            raise ValueError(f'GroupPatchMerging needs an even number of '
                             f'channels, got {in_channels}')
        self.in_channels = in_channels
        gathered = 2 * in_channels  # 4 neighbours x C/2
        self.norms = ModuleList(
            [build_norm_layer(norm_cfg, gathered)[1] for _ in range(2)])
        self.reductions = ModuleList(
            [nn.Linear(gathered, in_channels, bias=False) for _ in range(2)])

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]
                ) -> Tuple[Tensor, Tuple[int, int]]:
        b, length, c = x.shape
        h, w = hw_shape
        x, h, w = pad_to_multiple(x.view(b, h, w, c), 2)
        ho, wo = h // 2, w // 2
        # (b, row, dy, col, dx, group, c/2) -> (group, b, row, col, dx, dy,
        # c/2): one copy gathers both halves, each contiguous for its norm
        x = x.view(b, ho, 2, wo, 2, 2, c // 2).permute(5, 0, 1, 3, 4, 2, 6)
        x = x.reshape(2, b * ho * wo, 2 * c)
        out = torch.cat([
            reduction(norm(part)) for part, norm, reduction in zip(
                x.unbind(0), self.norms, self.reductions)
        ], dim=-1)
        return out.view(b, ho * wo, 2 * c), (ho, wo)


class ShuffleSwinStage(BaseModule):
    """Blocks of one resolution, then (except in the last stage) the
    downsampling; the stage output is taken before the downsampling."""

    def __init__(self, blocks, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.blocks = ModuleList(blocks)
        self.downsample = downsample


@MODELS.register_module()
class ShuffleSwin(BaseBackbone):
    """Shuffle Swin Transformer backbone.

    Args:
        arch (str | dict): 'xtiny' (Shuffle Swin-XTi: 96 channels after the
            patch embedding, depths 2, 2, 4, 2, heads 3, 6, 12, 24) or a dict
            with keys ``embed_dims`` (full width of stage 0), ``depths`` and
            ``num_heads`` (heads of the attended half, which is
            ``embed_dims * 2**i / 2`` wide in stage ``i``).
        in_channels (int): image channels. Default 3.
        patch_size (int): patch embedding stride. Default 4.
        window_size (int): attention window. Default 7.
        mlp_ratio (float): FFN hidden width over the attended width.
        qkv_bias (bool): bias of the qkv projections. Default True.
        qk_scale (float, optional): defaults to ``head_dim ** -0.5``.
        rescale (str | None): shortcut factors of every block: 'fixed'
            (1/2, as released), 'learnable' (the paper's two learnable
            coefficients per block, starting at 1/2) or None.
        pad_small_map (bool): False (default) attends a stage no larger than
            one window in height or width without shifting, as the authors'
            classifier (7x7 last stage at 224 pixels); True always shifts
            (mmdet's Swin).
        drop_rate (float): dropout after the patch embedding and in blocks.
        attn_drop_rate (float): attention dropout.
        drop_path_rate (float): stochastic depth, increasing linearly from
            0 over the blocks. Default 0.1.
        out_indices (Sequence[int]): stages to output (strides 4, 8, 16, 32);
            each output has its own norm (``norm{i}``).
        frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`~mmext.models.backbones.base.BaseBackbone`.
        norm_cfg (dict): every norm. Default LayerNorm.
    """
    arch_zoo = {
        'xtiny': dict(embed_dims=96, depths=[2, 2, 4, 2],
                      num_heads=[3, 6, 12, 24]),
    }
    arch_keys = ('embed_dims', 'depths', 'num_heads')

    def __init__(self,
                 arch: Union[str, Dict] = 'xtiny',
                 in_channels: int = 3,
                 patch_size: int = 4,
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 rescale: Optional[str] = 'fixed',
                 pad_small_map: bool = False,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Dict = dict(type='LN'),
                 with_cp: bool = False,
                 init_cfg=None):
        super().__init__(arch, out_indices, frozen_stages, norm_eval, with_cp,
                         init_cfg)
        self.build_swin_stem(in_channels, patch_size, norm_cfg, drop_rate)
        attn_cfg = dict(window_size=window_size, qkv_bias=qkv_bias,
                        qk_scale=qk_scale, attn_drop_rate=attn_drop_rate,
                        proj_drop_rate=drop_rate,
                        pad_small_map=pad_small_map)
        ffn_cfg = dict(mlp_ratio=mlp_ratio, drop_rate=drop_rate)

        stage_rates = self.drop_path_rates(drop_path_rate)
        self.stages = ModuleList()
        for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            rates = stage_rates[i]
            blocks = [
                ShuffleSwinBlock(
                    self.num_features[i],
                    heads,
                    shift=j % 2 == 1,
                    rescale=rescale,
                    attn_cfg=attn_cfg,
                    ffn_cfg=ffn_cfg,
                    drop_path_rate=rates[j],
                    norm_cfg=norm_cfg,
                    with_cp=with_cp) for j in range(depth)
            ]
            downsample = GroupPatchMerging(self.num_features[i], norm_cfg) \
                if i < self.num_stages - 1 else None
            self.stages.append(ShuffleSwinStage(blocks, downsample))

        self.add_out_norms(self.num_features, norm_cfg)
        self.freeze_stages()

    @classmethod
    def check_arch(cls, settings: Dict) -> None:
        cls.check_hierarchical_arch(settings)
        if settings['embed_dims'] % 2:
            raise ValueError('ShuffleSwin arch: embed_dims must be even (an '
                             'attended and an idle half), got '
                             f'{settings["embed_dims"]}')
        for i, heads in enumerate(settings['num_heads']):
            attended = settings['embed_dims'] * 2**i // 2
            if attended % heads:
                raise ValueError(
                    f'ShuffleSwin arch: stage {i} attends over {attended} '
                    f'channels (half of embed_dims * 2**{i}), not divisible '
                    f'by num_heads[{i}] = {heads}')

    def optional_pretrained_keys(self):
        return super().optional_pretrained_keys() + \
            learnable_rescale_keys(self)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        self.check_input(x)
        x, hw_shape = self.patch_embed(x)
        x = self.drop_after_pos(x)
        outs = []
        for i, stage in enumerate(self.stages):
            for block in stage.blocks:
                x = block(x, hw_shape)
            if i in self.out_indices:
                outs.append(self.to_output(i, x, hw_shape))
            if stage.downsample is not None:
                x, hw_shape = stage.downsample(x, hw_shape)
        return tuple(outs)
