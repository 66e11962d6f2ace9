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
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn.bricks.transformer import PatchMerging
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor

from mmext.ops import ELSA_IMPLS, elsa_filter
from mmext.registry import MODELS
from ..layers import PreNormBlock, SwinBlock, fp32_norm, softmax
from ..layers.padding import use_corner_pad
from .swin_like import SwinLikeBackbone, SwinLikeStage

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


@MODELS.register_module()
class ELSASwin(SwinLikeBackbone):
    """ELSA-Swin backbone: ELSA blocks in every stage but the last, which
    keeps Swin's (shifted) window attention.

    Args:
        arch (str | dict): ``'t'``/``'tiny'``, ``'s'``/``'small'``,
            ``'b'``/``'base'``, or a dict with keys ``embed_dims``,
            ``depths``, ``num_heads`` and ``group_width``.
        elsa_cfg (dict, optional): options of :class:`ELSAttention` in the
            first stages: ``kernel_size`` (7), ``lam`` (0) and ``gamma`` (1)
            (the ghost head, released models: 0 and 1), ``dilation`` (1),
            ``impl`` ('auto', 'carafe', 'pytorch').
        Other arguments (``in_channels``, ``patch_size``, ``window_size`` of
        the last stage, ``mlp_ratio``, ``qkv_bias``, ``qk_scale`` of the
        last stage (ELSA stages use 1), dropout and drop-path rates,
        ``out_indices``, ``frozen_stages``, ``norm_eval``, ``norm_cfg``,
        ``with_cp``, ``init_cfg``): see
        :class:`~mmext.models.backbones.swin_like.SwinLikeBackbone`.
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
                 elsa_cfg: Optional[Dict] = None,
                 **kwargs):
        super().__init__(arch, **kwargs)
        self.elsa_cfg = self._elsa_cfg(elsa_cfg)
        self.build_stages()

    @classmethod
    def check_arch(cls, settings: Dict) -> None:
        cls.check_hierarchical_arch(settings,
                                    ints=('embed_dims', 'group_width'))

    def _elsa_cfg(self, user_cfg) -> Dict:
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
        window = self.window_cfg
        return dict(cfg,
                    group_width=self.arch_settings['group_width'],
                    qkv_bias=window['qkv_bias'],
                    attn_drop_rate=window['attn_drop_rate'],
                    proj_drop_rate=window['proj_drop_rate'])

    def build_stage(self, index: int, dims: int, num_heads: int,
                    drop_path_rates: List[float]) -> SwinLikeStage:
        if index == self.num_stages - 1:
            return SwinLikeStage([
                SwinBlock(dims,
                          num_heads,
                          shift=j % 2 == 1,
                          attn_cfg=self.window_cfg,
                          drop_path_rate=rate,
                          **self.block_cfg)
                for j, rate in enumerate(drop_path_rates)
            ])
        blocks = [
            ELSABlock(dims,
                      num_heads,
                      attn_cfg=self.elsa_cfg,
                      drop_path_rate=rate,
                      **self.block_cfg) for rate in drop_path_rates
        ]
        merging = PatchMerging(in_channels=dims,
                               out_channels=2 * dims,
                               kernel_size=2,
                               stride=2,
                               padding='corner',
                               norm_cfg=self.norm_cfg,
                               bias=False)
        merging.norm = fp32_norm(merging.norm)
        return SwinLikeStage(blocks, use_corner_pad(merging))
