"""Pre-norm transformer blocks on ``(B, H*W, C)`` tokens."""
from typing import Optional, Tuple

import torch.nn as nn
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule
from torch import Tensor

from .checkpoint import maybe_checkpoint
from .norm import build_norm
from .window_attention import ShiftWindowMSA


def build_ffn(embed_dims: int, mlp_ratio: float = 4., drop_rate: float = 0.,
              drop_path_rate: float = 0.) -> FFN:
    """mmcv's two-layer GELU FFN with its own residual and drop path (keys
    ``ffn.layers.0.0`` / ``ffn.layers.1``, as mmdet's Swin)."""
    return FFN(
        embed_dims=embed_dims,
        feedforward_channels=int(embed_dims * mlp_ratio),
        num_fcs=2,
        ffn_drop=drop_rate,
        dropout_layer=dict(type='DropPath', drop_prob=drop_path_rate),
        act_cfg=dict(type='GELU'),
        add_identity=True)


class PreNormBlock(BaseModule):
    """``x + drop_path(attn(norm1(x), hw))``, then
    ``x + drop_path(ffn(norm2(x)))``.

    Args:
        embed_dims (int): token width.
        attn (nn.Module): the token mixer, called as ``attn(x, hw_shape)``.
        ffn_cfg (dict): ``mlp_ratio`` and ``drop_rate`` of the FFN.
        drop_path_rate (float): stochastic depth of both branches.
        norm_cfg (dict): the two norms.
        with_cp (bool): recompute the block in the backward pass.
    """

    def __init__(self,
                 embed_dims: int,
                 attn: nn.Module,
                 ffn_cfg: Optional[dict] = None,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.norm1 = build_norm(norm_cfg, embed_dims)
        self.attn = attn
        self.drop_path = build_dropout(
            dict(type='DropPath', drop_prob=drop_path_rate))
        self.norm2 = build_norm(norm_cfg, embed_dims)
        self.ffn = build_ffn(embed_dims, drop_path_rate=drop_path_rate,
                             **(ffn_cfg or {}))

    def _forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw_shape))
        return self.ffn(self.norm2(x), identity=x)

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        return maybe_checkpoint(self._forward, x, hw_shape,
                                enabled=self.with_cp)


class SwinBlock(PreNormBlock):
    """Swin block: (shifted) window attention, then the FFN.

    ``attn_cfg`` holds :class:`ShiftWindowMSA` options (``window_size``,
    ``qkv_bias``, ``qk_scale``, ``attn_drop_rate``, ``proj_drop_rate``);
    ``shift`` shifts the windows by half their size.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 shift: bool = False,
                 attn_cfg: Optional[dict] = None,
                 ffn_cfg: Optional[dict] = None,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False,
                 init_cfg=None):
        attn_cfg = {'window_size': 7, **(attn_cfg or {})}
        if shift:
            attn_cfg['shift_size'] = attn_cfg['window_size'] // 2
        super().__init__(embed_dims, ShiftWindowMSA(embed_dims, num_heads,
                                                    **attn_cfg),
                         ffn_cfg, drop_path_rate, norm_cfg, with_cp, init_cfg)
