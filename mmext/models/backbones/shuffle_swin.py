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
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from mmext.registry import MODELS
from ..layers.blocks import SwinBlock
from ..layers.channel_shuffle import (ChannelShuffleMixin,
                                      learnable_rescale_keys)
from ..layers.norm import build_norm
from ..layers.padding import pad_to_multiple
from .swin_like import SwinLikeBackbone, SwinLikeStage

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
            [build_norm(norm_cfg, gathered) for _ in range(2)])
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


@MODELS.register_module()
class ShuffleSwin(SwinLikeBackbone):
    """Shuffle Swin Transformer backbone.

    Args:
        arch (str | dict): 'xtiny' (Shuffle Swin-XTi: 96 channels after the
            patch embedding, depths 2, 2, 4, 2, heads 3, 6, 12, 24) or a dict
            with keys ``embed_dims`` (full width of stage 0), ``depths`` and
            ``num_heads`` (heads of the attended half, which is
            ``embed_dims * 2**i / 2`` wide in stage ``i``).
        rescale (str | None): shortcut factors of every block: 'fixed'
            (1/2, as released), 'learnable' (the paper's two learnable
            coefficients per block, starting at 1/2) or None.
        pad_small_map (bool): False (default) attends a stage no larger than
            one window in height or width without shifting, as the authors'
            classifier (7x7 last stage at 224 pixels); True always shifts
            (mmdet's Swin).
        Other arguments (``in_channels``, ``patch_size``, ``window_size``,
        ``mlp_ratio`` (FFN hidden width over the attended width),
        ``qkv_bias``, ``qk_scale``, dropout and drop-path rates,
        ``out_indices``, ``frozen_stages``, ``norm_eval``, ``norm_cfg``,
        ``with_cp``, ``init_cfg``): see
        :class:`~mmext.models.backbones.swin_like.SwinLikeBackbone`.
    """
    arch_zoo = {
        'xtiny': dict(embed_dims=96, depths=[2, 2, 4, 2],
                      num_heads=[3, 6, 12, 24]),
    }
    arch_keys = ('embed_dims', 'depths', 'num_heads')

    def __init__(self,
                 arch: Union[str, Dict] = 'xtiny',
                 rescale: Optional[str] = 'fixed',
                 pad_small_map: bool = False,
                 **kwargs):
        super().__init__(arch, **kwargs)
        self.rescale = rescale
        self.window_cfg['pad_small_map'] = pad_small_map
        self.build_stages()

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

    def build_stage(self, index: int, dims: int, num_heads: int,
                    drop_path_rates: List[float]) -> SwinLikeStage:
        blocks = [
            ShuffleSwinBlock(dims,
                             num_heads,
                             shift=j % 2 == 1,
                             rescale=self.rescale,
                             attn_cfg=self.window_cfg,
                             drop_path_rate=rate,
                             **self.block_cfg)
            for j, rate in enumerate(drop_path_rates)
        ]
        downsample = GroupPatchMerging(dims, self.norm_cfg) \
            if index < self.num_stages - 1 else None
        return SwinLikeStage(blocks, downsample)

    def optional_pretrained_keys(self):
        return super().optional_pretrained_keys() + \
            learnable_rescale_keys(self)
