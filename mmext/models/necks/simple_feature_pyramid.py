"""One stride-16 map of a plain ViT -> a pyramid for FPN / UperNet.

The simple feature pyramid of ViTDet (Li et al., "Exploring Plain Vision
Transformer Backbones for Object Detection", ECCV 2022): each level is
resampled from the ViT map (2x2 stride-2 transposed convs to go up, 2x2 max
pooling to go down), then a 1x1 and a 3x3 conv, each followed by a norm.
Given as many maps as levels (e.g. the outputs of blocks 3/6/9/12, as
mmseg's ``MultiLevelNeck`` takes them), level ``i`` is made from map ``i``.
"""
from typing import Optional, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer
from mmengine.model import BaseModule
from torch import Tensor

from mmext.registry import MODELS
from ..layers import build_norm

__all__ = ['SimpleFeaturePyramid']


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """ViTDet-style pyramid from a plain ViT map.

    Args:
        in_channels (int): channels of the ViT map(s).
        out_channels (int): channels of every output level.
        scale_factors (Sequence[float]): resampling of each level relative
            to the input, from {4, 2, 1, 0.5}. Default (4, 2, 1, 0.5):
            strides 4/8/16/32 from a stride-16 map.
        norm_cfg (dict): norm after the convs and between the two
            transposed convs of the 4x level. Default channel LayerNorm
            (``mmext.LN2d``, eps 1e-6) as ViTDet.
        act_cfg (dict): activation between the two 4x transposed convs.
            Default GELU.
        num_outs (int, optional): outputs; levels past the scale factors
            subsample the last one by 2 (ViTDet's extra stride-64 level for
            RPN, mmdet FPN's ``add_extra_convs=False``). Default: one per
            scale factor.
        init_cfg: default: ViTDet's (Kaiming uniform, a=1) on the convs.
    """
    factors = (4, 2, 1, 0.5)

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 scale_factors: Sequence[float] = (4, 2, 1, 0.5),
                 norm_cfg: dict = dict(type='mmext.LN2d', eps=1e-6),
                 act_cfg: dict = dict(type='GELU'),
                 num_outs: Optional[int] = None,
                 init_cfg=dict(
                     type='Kaiming', layer=['Conv2d', 'ConvTranspose2d'],
                     a=1, distribution='uniform', mode='fan_in',
                     nonlinearity='leaky_relu')):
        super().__init__(init_cfg=init_cfg)
        bad = [s for s in scale_factors if s not in self.factors]
        if bad or not scale_factors:
            raise ValueError(f'scale_factors {tuple(scale_factors)}: each '
                             f'must be one of {self.factors}')
        if 4 in scale_factors and in_channels % 4:
            raise ValueError(f'in_channels ({in_channels}) must be divisible '
                             'by 4 for the 4x level')
        self.scale_factors = tuple(scale_factors)
        self.num_outs = num_outs or len(scale_factors)
        if self.num_outs < len(scale_factors):
            raise ValueError(f'num_outs ({num_outs}) must be at least the '
                             f'number of scale factors ({len(scale_factors)})')
        self.resample = nn.ModuleList()
        self.convs = nn.ModuleList()
        for factor in self.scale_factors:
            layers, channels = self._resample(factor, in_channels, norm_cfg,
                                              act_cfg)
            self.resample.append(layers)
            self.convs.append(
                nn.Sequential(
                    ConvModule(channels, out_channels, 1, bias=False,
                               norm_cfg=norm_cfg, act_cfg=None),
                    ConvModule(out_channels, out_channels, 3, padding=1,
                               bias=False, norm_cfg=norm_cfg, act_cfg=None)))

    @staticmethod
    def _resample(factor, channels, norm_cfg, act_cfg):
        def up(c_in, c_out):
            return nn.ConvTranspose2d(c_in, c_out, 2, stride=2)

        if factor == 4:
            return nn.Sequential(
                up(channels, channels // 2),
                build_norm(norm_cfg, channels // 2),
                build_activation_layer(act_cfg),
                up(channels // 2, channels // 4)), channels // 4
        if factor == 2:
            return up(channels, channels // 2), channels // 2
        if factor == 1:
            return nn.Identity(), channels
        # ceil: an odd map keeps its last row / column
        return nn.MaxPool2d(2, stride=2, ceil_mode=True), channels

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        if isinstance(inputs, Tensor):
            inputs = [inputs]
        levels = len(self.scale_factors)
        if len(inputs) not in (1, levels):
            raise ValueError(f'SimpleFeaturePyramid takes 1 or {levels} '
                             f'maps, got {len(inputs)}')
        maps = list(inputs) if len(inputs) == levels else \
            [inputs[0]] * levels
        outs = [
            conv(resample(x))
            for x, resample, conv in zip(maps, self.resample, self.convs)
        ]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        # LN2d leaves channels-last strides; mmcv's RoIAlign kernels (CPU
        # and CUDA) index the raw NCHW buffer and pool garbage from them
        return tuple(out.contiguous() for out in outs)
