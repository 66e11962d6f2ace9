"""ELSA-Swin: Swin Transformer with enhanced local self-attention.

"ELSA: Enhanced Local Self-Attention for Vision Transformer"
(Zhou et al., arXiv:2112.12786). The first three stages replace Swin's window
attention with ELSA (Hadamard attention -> grouped KxK conv -> GELU -> 1x1
conv gives per-head KxK attention maps; a ghost head adds static
per-channel matrices; the result filters a sliding, zero-padded KxK
neighbourhood of v). The last stage keeps (shifted) window attention.

Official checkpoints (ImageNet classifiers and detection / segmentation
backbones) load after ``tools/convert_imagenet.py elsa_swin SRC DST``.
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn.bricks.transformer import PatchMerging
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor

from mmext.ops import ELSA_IMPLS, elsa_filter
from mmext.registry import MODELS
from ..layers import PreNormBlock, SwinBlock, fp32_norm, softmax
from .base import BaseBackbone

__all__ = ['ELSASwin', 'ELSAttention', 'ELSABlock', 'SwinBlock']


def elsa_qk_dims(dim: int, group_width: int) -> int:
    """Channels of q (and of k): ``(dim // 3) * 2`` rounded up to a multiple
    of ``group_width``."""
    return int(math.ceil((dim // 3 * 2) / group_width) * group_width)


class ELSAttention(BaseModule):
    """Enhanced local self-attention on the tokens of an ``H x W`` map.

    Args:
        embed_dims (int): channels ``C`` (``dim_v = C``).
        num_heads (int): heads; must divide ``C``.
        kernel_size (int): neighbourhood size ``K``. Default 7.
        group_width (int): channels per group of the grouped ``KxK`` conv.
        dilation (int): neighbourhood dilation. Default 1.
        qkv_bias (bool): bias in the q/k/v projection. Default True.
        qk_scale (float): scale of the Hadamard product ``q * k``. Default 1.
        lam (float): exponent of the multiplicative ghost matrix; 0 disables
            it (as in the released models). Default 0.
        gamma (float): factor of the additive ghost matrix; 0 disables it.
            Default 1.
        attn_drop_rate (float): dropout on the attention maps.
        proj_drop_rate (float): dropout after the output projection.
        impl (str): ELSA filter implementation, see
            :func:`mmext.ops.elsa_filter`. Default 'auto'.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 kernel_size: int = 7,
                 group_width: int = 8,
                 dilation: int = 1,
                 qkv_bias: bool = True,
                 qk_scale: float = 1.,
                 lam: float = 0.,
                 gamma: float = 1.,
                 attn_drop_rate: float = 0.,
                 proj_drop_rate: float = 0.,
                 impl: str = 'auto',
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads != 0:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible '
                             f'by num_heads ({num_heads})')
        if impl not in ELSA_IMPLS:
            raise ValueError(f'impl must be one of {ELSA_IMPLS}, got {impl!r}')
        if impl == 'carafe' and (lam != 0 or dilation != 1):
            raise ValueError(
                "impl='carafe' supports only lam=0 and dilation=1 (mmcv's "
                "CARAFE); use impl='pytorch' or 'auto' for lam="
                f'{lam}, dilation={dilation}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.scale = qk_scale
        self.lam = lam
        self.gamma = gamma
        self.impl = impl
        self.dim_qk = elsa_qk_dims(embed_dims, group_width)
        dqk, ks = self.dim_qk, kernel_size

        self.qkv = nn.Conv2d(embed_dims,
                             2 * dqk + embed_dims,
                             1,
                             bias=qkv_bias)
        self.attn_gen = nn.Sequential(
            nn.Conv2d(dqk,
                      dqk,
                      ks,
                      padding=(ks // 2) * dilation,
                      dilation=dilation,
                      groups=dqk // group_width),
            nn.GELU(),
            nn.Conv2d(dqk, ks * ks * num_heads, 1),
        )
        if lam != 0:
            self.ghost_mul = nn.Parameter(torch.randn(embed_dims, ks, ks))
        else:
            self.register_parameter('ghost_mul', None)
        if gamma != 0:
            self.ghost_add = nn.Parameter(torch.zeros(embed_dims, ks, ks))
            trunc_normal_(self.ghost_add, std=.02)
        else:
            self.register_parameter('ghost_add', None)
        self.attn_drop = nn.Dropout(attn_drop_rate)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop_rate)

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        """``x``: ``(B, H * W, C)`` tokens of an ``H x W`` map; returns the
        same shape."""
        b, _, c = x.shape
        h, w = hw_shape
        ks2 = self.kernel_size**2
        qkv = self.qkv(x.view(b, h, w, c).permute(0, 3, 1, 2))
        q, k, v = torch.split(qkv, (self.dim_qk, self.dim_qk, self.embed_dims),
                              dim=1)
        attn = self.attn_gen(q * k * self.scale)
        # normalised over the taps in float32 (the filter sums in it too)
        attn = softmax(attn.view(b, self.num_heads, ks2, h, w), dim=2)
        attn = self.attn_drop(attn).view(b, self.num_heads * ks2, h, w)
        ghost_mul = None if self.ghost_mul is None else \
            self.ghost_mul ** self.lam
        ghost_add = None if self.ghost_add is None else \
            self.ghost_add * self.gamma
        out = elsa_filter(v,
                          attn,
                          ghost_add=ghost_add,
                          ghost_mul=ghost_mul,
                          kernel_size=self.kernel_size,
                          dilation=self.dilation,
                          impl=self.impl)
        out = self.proj(out.permute(0, 2, 3, 1))
        return self.proj_drop(out).view(b, h * w, c)


class ELSABlock(PreNormBlock):
    """ELSA block on ``(B, H * W, C)`` tokens; ``attn_cfg`` holds the
    :class:`ELSAttention` options, the other keywords are those of
    :class:`~mmext.models.layers.PreNormBlock`."""

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_cfg: Optional[dict] = None,
                 **block_kwargs):
        super().__init__(
            embed_dims, ELSAttention(embed_dims, num_heads,
                                     **(attn_cfg or {})), **block_kwargs)


class ELSASwinStage(BaseModule):
    """A stage: ``depth`` blocks, then an optional 2x2 patch merging."""

    def __init__(self, blocks: Sequence[BaseModule],
                 downsample: Optional[BaseModule]):
        super().__init__()
        self.blocks = ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]):
        for block in self.blocks:
            x = block(x, hw_shape)
        if self.downsample is None:
            return x, hw_shape, x, hw_shape
        x_down, down_shape = self.downsample(x, hw_shape)
        # the merged tokens (a linear layer's output, half precision under
        # autocast) rejoin the float32 token stream
        x_down = x_down.to(x.dtype)
        return x_down, down_shape, x, hw_shape


@MODELS.register_module()
class ELSASwin(BaseBackbone):
    """ELSA-Swin backbone.

    Args:
        arch (str | dict): ``'t'``/``'tiny'``, ``'s'``/``'small'``,
            ``'b'``/``'base'``, or a dict with keys ``embed_dims``,
            ``depths``, ``num_heads`` and ``group_width``.
        in_channels (int): input channels. Default 3.
        patch_size (int): patch embedding stride. Default 4.
        window_size (int): window of the last (Swin) stage. Default 7.
        mlp_ratio (float): FFN expansion. Default 4.
        qkv_bias (bool): bias in the q/k/v projections. Default True.
        qk_scale (float, optional): scale of the window attention in the last
            stage; defaults to ``head_dim ** -0.5``. (ELSA stages use 1.)
        elsa_cfg (dict, optional): options of :class:`ELSAttention` in the
            first stages: ``kernel_size`` (7), ``lam`` (0) and ``gamma`` (1)
            (the ghost head, released models: 0 and 1), ``dilation`` (1),
            ``impl`` ('auto', 'carafe', 'pytorch').
        drop_rate, attn_drop_rate (float): dropout rates. Default 0.
        drop_path_rate (float): stochastic depth, increasing linearly over
            all blocks from 0. Default 0.1.
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`~mmext.models.backbones.base.BaseBackbone`.
        norm_cfg (dict): norm of blocks, patch embed/merging and outputs.
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(
            embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
            group_width=4)),
        **dict.fromkeys(['s', 'small'], dict(
            embed_dims=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24],
            group_width=8)),
        **dict.fromkeys(['b', 'base'], dict(
            embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32],
            group_width=8)),
    }  # yapf: disable
    arch_keys = ('embed_dims', 'depths', 'num_heads', 'group_width')

    def __init__(self,
                 arch: Union[str, Dict] = 't',
                 in_channels: int = 3,
                 patch_size: int = 4,
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 elsa_cfg: Optional[Dict] = None,
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
        elsa_cfg = self._elsa_cfg(elsa_cfg, self.arch_settings['group_width'],
                                  qkv_bias, attn_drop_rate, drop_rate)
        window_cfg = dict(window_size=window_size,
                          qkv_bias=qkv_bias,
                          qk_scale=qk_scale,
                          attn_drop_rate=attn_drop_rate,
                          proj_drop_rate=drop_rate)
        ffn_cfg = dict(mlp_ratio=mlp_ratio, drop_rate=drop_rate)

        stage_rates = self.drop_path_rates(drop_path_rate)
        self.stages = ModuleList()
        for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            dims = self.num_features[i]
            rates = stage_rates[i]
            common = dict(norm_cfg=norm_cfg, ffn_cfg=ffn_cfg, with_cp=with_cp)
            if i == self.num_stages - 1:
                blocks = [
                    SwinBlock(dims,
                              heads,
                              shift=j % 2 == 1,
                              attn_cfg=window_cfg,
                              drop_path_rate=rates[j],
                              **common) for j in range(depth)
                ]
                downsample = None
            else:
                blocks = [
                    ELSABlock(dims,
                              heads,
                              attn_cfg=elsa_cfg,
                              drop_path_rate=rates[j],
                              **common) for j in range(depth)
                ]
                downsample = PatchMerging(in_channels=dims,
                                          out_channels=2 * dims,
                                          kernel_size=2,
                                          stride=2,
                                          padding='corner',
                                          norm_cfg=norm_cfg,
                                          bias=False)
                downsample.norm = fp32_norm(downsample.norm)
            self.stages.append(ELSASwinStage(blocks, downsample))

        self.add_out_norms(self.num_features, norm_cfg)
        self.freeze_stages()

    @classmethod
    def check_arch(cls, settings: Dict) -> None:
        cls.check_hierarchical_arch(settings,
                                    ints=('embed_dims', 'group_width'))

    @staticmethod
    def _elsa_cfg(user_cfg, group_width, qkv_bias, attn_drop_rate,
                  drop_rate) -> Dict:
        allowed = ('kernel_size', 'lam', 'gamma', 'dilation', 'impl')
        unknown = sorted(set(user_cfg or {}) - set(allowed))
        if unknown:
            raise ValueError(f'ELSASwin elsa_cfg: unknown keys {unknown}; '
                             f'allowed: {list(allowed)}')
        cfg = dict(kernel_size=7, lam=0., gamma=1., dilation=1, impl='auto')
        cfg.update(user_cfg or {})
        if cfg['impl'] not in ELSA_IMPLS:
            raise ValueError(f'ELSASwin elsa_cfg impl must be one of '
                             f'{ELSA_IMPLS}, got {cfg["impl"]!r}')
        return dict(cfg,
                    group_width=group_width,
                    qkv_bias=qkv_bias,
                    attn_drop_rate=attn_drop_rate,
                    proj_drop_rate=drop_rate)

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
