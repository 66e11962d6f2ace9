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
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.transformer import FFN, PatchEmbed, PatchMerging
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor

from mmext.models.layers.backbone_mixin import (BackboneMixin,
                                                normalize_out_indices)
from mmext.models.layers.window_attention import ShiftWindowMSA
from mmext.ops import ELSA_IMPLS, elsa_filter
from mmext.registry import MODELS

__all__ = ['ELSASwin', 'ELSAttention', 'ELSABlock', 'SwinBlock']


def elsa_qk_dims(dim: int, group_width: int) -> int:
    """Channels of q (and of k): ``(dim // 3) * 2`` rounded up to a multiple
    of ``group_width``."""
    return int(math.ceil((dim // 3 * 2) / group_width) * group_width)


class ELSAttention(BaseModule):
    """Enhanced local self-attention on a ``(B, H, W, C)`` map.

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

        self.qkv = nn.Conv2d(embed_dims, 2 * dqk + embed_dims, 1,
                             bias=qkv_bias)
        self.attn_gen = nn.Sequential(
            nn.Conv2d(
                dqk,
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

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, H, W, C)``; returns the same shape."""
        b, h, w, _ = x.shape
        ks2 = self.kernel_size**2
        qkv = self.qkv(x.permute(0, 3, 1, 2))
        q, k, v = torch.split(qkv, (self.dim_qk, self.dim_qk, self.embed_dims),
                              dim=1)
        attn = self.attn_gen(q * k * self.scale)
        attn = attn.view(b, self.num_heads, ks2, h, w).softmax(dim=2)
        attn = self.attn_drop(attn).view(b, self.num_heads * ks2, h, w)
        ghost_mul = None if self.ghost_mul is None else \
            self.ghost_mul ** self.lam
        ghost_add = None if self.ghost_add is None else \
            self.ghost_add * self.gamma
        out = elsa_filter(
            v,
            attn,
            ghost_add=ghost_add,
            ghost_mul=ghost_mul,
            kernel_size=self.kernel_size,
            dilation=self.dilation,
            impl=self.impl)
        out = self.proj(out.permute(0, 2, 3, 1))
        return self.proj_drop(out)


def _ffn(embed_dims, mlp_ratio, drop_rate, drop_path_rate):
    return FFN(
        embed_dims=embed_dims,
        feedforward_channels=int(embed_dims * mlp_ratio),
        num_fcs=2,
        ffn_drop=drop_rate,
        dropout_layer=dict(type='DropPath', drop_prob=drop_path_rate),
        act_cfg=dict(type='GELU'),
        add_identity=True)


class _Block(BaseModule):
    """Pre-norm residual block: ``x + dp(attn(norm1(x)))`` then the FFN."""

    def __init__(self, embed_dims, mlp_ratio, drop_rate, drop_path_rate,
                 norm_cfg, with_cp, init_cfg):
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.drop_path = build_dropout(
            dict(type='DropPath', drop_prob=drop_path_rate))
        self.ffn = _ffn(embed_dims, mlp_ratio, drop_rate, drop_path_rate)

    def _attn(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        raise NotImplementedError

    def _forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        x = x + self.drop_path(self._attn(self.norm1(x), hw_shape))
        return self.ffn(self.norm2(x), identity=x)

    def forward(self, x: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        if self.with_cp and x.requires_grad and torch.is_grad_enabled():
            return cp.checkpoint(
                self._forward, x, hw_shape, use_reentrant=False)
        return self._forward(x, hw_shape)


class ELSABlock(_Block):
    """ELSA block on ``(B, H * W, C)`` tokens."""

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 kernel_size: int = 7,
                 group_width: int = 8,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 lam: float = 0.,
                 gamma: float = 1.,
                 dilation: int = 1,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: Dict = dict(type='LN'),
                 impl: str = 'auto',
                 with_cp: bool = False,
                 init_cfg=None):
        super().__init__(embed_dims, mlp_ratio, drop_rate, drop_path_rate,
                         norm_cfg, with_cp, init_cfg)
        self.attn = ELSAttention(
            embed_dims,
            num_heads,
            kernel_size=kernel_size,
            group_width=group_width,
            dilation=dilation,
            qkv_bias=qkv_bias,
            qk_scale=1.,
            lam=lam,
            gamma=gamma,
            attn_drop_rate=attn_drop_rate,
            proj_drop_rate=drop_rate,
            impl=impl)

    def _attn(self, x, hw_shape):
        b, _, c = x.shape
        return self.attn(x.view(b, *hw_shape, c)).view(b, -1, c)


class SwinBlock(_Block):
    """Swin block ((shifted) window attention) on ``(B, H * W, C)`` tokens."""

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 window_size: int = 7,
                 shift: bool = False,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: Dict = dict(type='LN'),
                 with_cp: bool = False,
                 init_cfg=None):
        super().__init__(embed_dims, mlp_ratio, drop_rate, drop_path_rate,
                         norm_cfg, with_cp, init_cfg)
        self.attn = ShiftWindowMSA(
            embed_dims,
            num_heads,
            window_size=window_size,
            shift_size=window_size // 2 if shift else 0,
            qkv_bias=qkv_bias,
            qk_scale=qk_scale,
            attn_drop_rate=attn_drop_rate,
            proj_drop_rate=drop_rate)

    def _attn(self, x, hw_shape):
        return self.attn(x, hw_shape)


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
        return x_down, down_shape, x, hw_shape


@MODELS.register_module()
class ELSASwin(BackboneMixin, BaseModule):
    """ELSA-Swin backbone.

    Args:
        arch (str | dict): ``'t'``/``'tiny'``, ``'s'``/``'small'``,
            ``'b'``/``'base'``, or a dict with keys ``embed_dims``,
            ``depths``, ``num_heads`` and ``group_width``.
        in_channels (int): input channels. Default 3.
        patch_size (int): patch embedding stride. Default 4.
        window_size (int): window of the last (Swin) stage. Default 7.
        elsa_kernel (int): ELSA neighbourhood size. Default 7.
        mlp_ratio (float): FFN expansion. Default 4.
        qkv_bias (bool): bias in the q/k/v projections. Default True.
        qk_scale (float, optional): scale of the window attention in the last
            stage; defaults to ``head_dim ** -0.5``. (ELSA stages use 1.)
        lam (float), gamma (float): ghost-head exponents, see
            :class:`ELSAttention`. Defaults 0 and 1 (the released models).
        dilation (int): ELSA neighbourhood dilation. Default 1.
        drop_rate, attn_drop_rate (float): dropout rates. Default 0.
        drop_path_rate (float): stochastic depth, increasing linearly over
            all blocks from 0. Default 0.1.
        out_indices (Sequence[int]): stages to output. Default (0, 1, 2, 3).
        frozen_stages (int): ``-1``: nothing frozen; ``0``: patch embedding;
            ``i >= 1``: also stages ``0 .. i-1`` and their output norms
            (kept frozen and in eval mode across ``train()``).
        norm_eval (bool): keep BatchNorm layers (if any were configured) in
            eval mode during training. Default False.
        norm_cfg (dict): norm of blocks, patch embed/merging and outputs.
        with_cp (bool): gradient checkpointing per block. Default False.
        elsa_impl (str): ELSA filter implementation ('auto', 'carafe',
            'pytorch'). Default 'auto'.
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained',
            checkpoint=PATH)`` with a converted checkpoint.
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
    _arch_keys = ('embed_dims', 'depths', 'num_heads', 'group_width')

    def __init__(self,
                 arch: Union[str, Dict] = 't',
                 in_channels: int = 3,
                 patch_size: int = 4,
                 window_size: int = 7,
                 elsa_kernel: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 lam: float = 0.,
                 gamma: float = 1.,
                 dilation: int = 1,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Dict = dict(type='LN'),
                 with_cp: bool = False,
                 elsa_impl: str = 'auto',
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        self.embed_dims = self.arch_settings['embed_dims']
        self.depths = list(self.arch_settings['depths'])
        self.num_heads = list(self.arch_settings['num_heads'])
        self.group_width = self.arch_settings['group_width']
        self.num_stages = len(self.depths)
        if len(self.num_heads) != self.num_stages:
            raise ValueError(
                f'arch: depths {self.depths} and num_heads {self.num_heads} '
                'must have the same length (one entry per stage)')
        if self.num_stages < 1:
            raise ValueError('arch: need at least one stage')
        if elsa_impl not in ELSA_IMPLS:
            raise ValueError(
                f'elsa_impl must be one of {ELSA_IMPLS}, got {elsa_impl!r}')
        out_indices = normalize_out_indices(out_indices, self.num_stages)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be in [-1, '
                             f'{self.num_stages}], got {frozen_stages}')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.in_channels = in_channels

        self.patch_embed = PatchEmbed(
            in_channels=in_channels,
            embed_dims=self.embed_dims,
            conv_type='Conv2d',
            kernel_size=patch_size,
            stride=patch_size,
            padding='corner',
            norm_cfg=norm_cfg)
        self.drop_after_pos = nn.Dropout(p=drop_rate)

        total = sum(self.depths)
        dpr = torch.linspace(0, drop_path_rate, total, device='cpu').tolist()
        self.stages = ModuleList()
        self.num_features = []
        dims = self.embed_dims
        for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            rates = dpr[sum(self.depths[:i]):sum(self.depths[:i + 1])]
            last = i == self.num_stages - 1
            if last:
                blocks = [
                    SwinBlock(
                        dims,
                        heads,
                        window_size=window_size,
                        shift=j % 2 == 1,
                        mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias,
                        qk_scale=qk_scale,
                        drop_rate=drop_rate,
                        attn_drop_rate=attn_drop_rate,
                        drop_path_rate=rates[j],
                        norm_cfg=norm_cfg,
                        with_cp=with_cp) for j in range(depth)
                ]
                downsample = None
            else:
                blocks = [
                    ELSABlock(
                        dims,
                        heads,
                        kernel_size=elsa_kernel,
                        group_width=self.group_width,
                        mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias,
                        lam=lam,
                        gamma=gamma,
                        dilation=dilation,
                        drop_rate=drop_rate,
                        attn_drop_rate=attn_drop_rate,
                        drop_path_rate=rates[j],
                        norm_cfg=norm_cfg,
                        impl=elsa_impl,
                        with_cp=with_cp) for j in range(depth)
                ]
                downsample = PatchMerging(
                    in_channels=dims,
                    out_channels=2 * dims,
                    kernel_size=2,
                    stride=2,
                    padding='corner',
                    norm_cfg=norm_cfg,
                    bias=False)
            self.stages.append(ELSASwinStage(blocks, downsample))
            self.num_features.append(dims)
            if not last:
                dims *= 2

        self.add_out_norms(self.num_features, self.out_indices, norm_cfg)
        self._freeze_stages()

    # ------------------------------------------------------------------
    @classmethod
    def _parse_arch(cls, arch) -> Dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(
                    f'unknown ELSASwin arch {arch!r}; use one of '
                    f'{sorted(cls.arch_zoo)} or a dict with keys '
                    f'{list(cls._arch_keys)}')
            return dict(cls.arch_zoo[key])
        if isinstance(arch, dict):
            missing = [k for k in cls._arch_keys if k not in arch]
            extra = [k for k in arch if k not in cls._arch_keys]
            if missing or extra:
                raise ValueError(
                    f'custom ELSASwin arch must have exactly the keys '
                    f'{list(cls._arch_keys)}; missing {missing}, '
                    f'unexpected {extra}')
            arch = dict(arch)
            ok = isinstance(arch['embed_dims'], int) and \
                isinstance(arch['group_width'], int) and \
                arch['embed_dims'] > 0 and arch['group_width'] > 0
            for key in ('depths', 'num_heads'):
                ok = ok and isinstance(arch[key], (list, tuple)) and all(
                    isinstance(n, int) and n > 0 for n in arch[key])
            if not ok:
                raise ValueError(
                    'custom ELSASwin arch: embed_dims and group_width must be '
                    'positive ints and depths / num_heads lists of positive '
                    f'ints (one per stage), got {arch}')
            arch['depths'] = list(arch['depths'])
            arch['num_heads'] = list(arch['num_heads'])
            return arch
        raise TypeError(f'arch must be a str or a dict, got {type(arch)}')

    def init_weights(self):
        """Pretrained weights via ``init_cfg``; otherwise truncated-normal
        linear layers, unit norms and a truncated-normal position table
        (convolutions keep PyTorch's default init, as officially)."""
        super().init_weights()
        if self.init_cfg is None:
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=.02)
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.constant_(m.weight, 1.0)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'ELSASwin expects a (B, {self.in_channels}, H, W) tensor, '
                f'got shape {tuple(x.shape)}; set in_channels to match the '
                'input')
        x, hw_shape = self.patch_embed(x)
        x = self.drop_after_pos(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x, next_shape, out, out_shape = stage(x, hw_shape)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(out)
                out = out.view(-1, *out_shape, self.num_features[i])
                outs.append(out.permute(0, 3, 1, 2).contiguous())
            hw_shape = next_shape
        return tuple(outs)
