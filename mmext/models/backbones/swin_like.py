"""What the Swin-like families (ELSA-Swin, Shuffle Swin) share: an arch of
``embed_dims`` (doubling per stage), ``depths`` and ``num_heads``, a padded
patch embedding, stages of blocks each followed by a 2x downsampling (none
after the last), an output norm per out index, and the forward over them.
A family says only how one stage is built (:meth:`SwinLikeBackbone.
build_stage`)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from ..layers.tokens import build_patch_embed
from .base import BaseBackbone


class SwinLikeStage(BaseModule):
    """Blocks at one resolution, then (except in the last stage) the
    downsampling; the stage output is taken before the downsampling."""

    def __init__(self, blocks: Sequence[nn.Module],
                 downsample: Optional[nn.Module] = None):
        super().__init__()
        self.blocks = ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]):
        """Tokens and grid for the next stage, then this stage's output
        tokens and grid."""
        for block in self.blocks:
            x = block(x, hw_shape)
        if self.downsample is None:
            return x, hw_shape, x, hw_shape
        x_down, down_shape = self.downsample(x, hw_shape)
        # the merged tokens (a linear layer's output, half precision under
        # autocast) rejoin the token stream in its dtype (float32)
        return x_down.to(x.dtype), down_shape, x, hw_shape


class SwinLikeBackbone(BaseBackbone):
    """Base of the Swin-like families (see the module docstring).

    A family's constructor takes its own options, passes the rest here and
    ends with :meth:`build_stages`.

    Args:
        arch (str | dict): a name of the family's ``arch_zoo`` or a dict of
            its ``arch_keys``.
        in_channels (int): image channels. Default 3.
        patch_size (int): patch embedding stride. Default 4.
        window_size (int): window of the (shifted) window attention.
            Default 7.
        mlp_ratio (float): FFN hidden width over the block width. Default 4.
        qkv_bias (bool): bias of the qkv projections. Default True.
        qk_scale (float, optional): scale of the window attention; defaults
            to ``head_dim ** -0.5``.
        drop_rate (float): dropout after the patch embedding, in the FFNs
            and after the attention projections. Default 0.
        attn_drop_rate (float): dropout on the attention maps. Default 0.
        drop_path_rate (float): stochastic depth, increasing linearly from
            0 over all blocks. Default 0.1.
        out_indices (Sequence[int]): stages to output (strides ``4, 8, 16,
            32`` with ``patch_size`` 4); each output has its own norm
            (``norm{i}``). Default all four.
        frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`~mmext.models.backbones.base.BaseBackbone`.
        norm_cfg (dict): norm of blocks, patch embedding, downsampling and
            outputs. Default LayerNorm.
    """

    def __init__(self,
                 arch: Union[str, Dict],
                 in_channels: int = 3,
                 patch_size: int = 4,
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
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
        self.embed_dims = self.arch_settings['embed_dims']
        self.num_heads = self.arch_settings['num_heads']
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.num_features = [
            self.embed_dims * 2**i for i in range(self.num_stages)
        ]
        self.norm_cfg = norm_cfg
        #: options of the window attention
        self.window_cfg = dict(window_size=window_size,
                               qkv_bias=qkv_bias,
                               qk_scale=qk_scale,
                               attn_drop_rate=attn_drop_rate,
                               proj_drop_rate=drop_rate)
        #: keywords every block takes
        self.block_cfg = dict(norm_cfg=norm_cfg,
                              ffn_cfg=dict(mlp_ratio=mlp_ratio,
                                           drop_rate=drop_rate),
                              with_cp=with_cp)
        self.stage_drop_path_rates = self.drop_path_rates(drop_path_rate)
        self.patch_embed = build_patch_embed(in_channels, self.embed_dims,
                                             patch_size, norm_cfg)
        self.drop_after_pos = nn.Dropout(p=drop_rate)

    @classmethod
    def check_hierarchical_arch(
        cls,
        settings: dict,
        ints: Sequence[str] = ('embed_dims', ),
        lists: Sequence[str] = ('depths', 'num_heads')
    ) -> None:
        """Common checks of a Swin-like arch: ``ints`` positive ints,
        ``lists`` equally long non-empty lists of positive ints."""
        ok = all(
            isinstance(settings[k], int) and settings[k] > 0 for k in ints)
        ok = ok and all(
            isinstance(settings[k], list) and settings[k] and all(
                isinstance(n, int) and n > 0 for n in settings[k])
            for k in lists)
        if not ok:
            raise ValueError(
                f'custom {cls.__name__} arch: {", ".join(ints)} must be '
                f'positive ints and {" / ".join(lists)} non-empty lists of '
                f'positive ints (one per stage), got {settings}')
        lengths = {k: len(settings[k]) for k in lists}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f'{cls.__name__} arch: ' + ', '.join(f'{k} {settings[k]}'
                                                     for k in lists) +
                ' must have the same length (one entry per stage)')

    @classmethod
    def check_arch(cls, settings: dict) -> None:
        cls.check_hierarchical_arch(settings)

    def build_stage(self, index: int, dims: int, num_heads: int,
                    drop_path_rates: List[float]) -> SwinLikeStage:
        """Stage ``index``: its blocks (``dims`` wide, ``num_heads`` heads,
        one drop-path rate each) and, unless it is the last, the
        downsampling to ``2 * dims``."""
        raise NotImplementedError

    def build_stages(self) -> None:
        """``stages``, the output norms and the frozen state: the end of a
        family's constructor."""
        self.stages = ModuleList(
            self.build_stage(i, self.num_features[i], self.num_heads[i],
                             self.stage_drop_path_rates[i])
            for i in range(self.num_stages))
        self.add_out_norms(self.num_features, self.norm_cfg)
        self.freeze_stages()

    def stage_channels(self) -> List[int]:
        return list(self.num_features)

    def stage_strides(self) -> List[int]:
        return [self.patch_size * 2**i for i in range(self.num_stages)]

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        self.check_input(x)
        x, hw_shape = self.patch_embed(x)
        x = self.drop_after_pos(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x, next_shape, out, out_shape = stage(x, hw_shape)
            if i in self.out_indices:
                outs.append(self.to_output(i, out, out_shape))
            hw_shape = next_shape
        return tuple(outs)
