"""Dual Vision Transformer (Dual-ViT).

Yao et al., "Dual Vision Transformer", arXiv:2207.04976. Reference code:
https://github.com/YehLi/ImageNetModel (``classification/``,
``object_detection/`` and ``semantic_segmentation/`` ``dualvit.py``). This is
an independent implementation that reproduces the reference numerically
(see ``tests/models/test_dualvit.py``); checkpoints are converted with
``tools/convert_imagenet.py dualvit``.

Structure: a conv stem (stride 4) and four stages. Stages 0-1 are *dual*:
pixel tokens and a small set of global *semantic* tokens are updated side by
side (the semantic tokens attend to themselves and gather from the pixels;
the pixels then attend to the semantic tokens only, which keeps the cost
linear in the number of pixels). Stages 2-3 *merge* both sets into one
sequence with plain self-attention. The first semantic tokens are learned
queries (an 8x8 grid, resized to the input) attending over 7x7-pooled stage-0
tokens.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmext.registry import MODELS
from ..layers import (MLP, ConvFFN, LayerNorm, SelfAttention, attend,
                      build_norm, map_to_tokens, maybe_checkpoint,
                      scaled_residual, softmax, split_heads,
                      to_channels_last, tokens_to_map)
from .base import BaseBackbone

# The reference builds block, stage-output and semantic-output norms with
# eps=1e-6 but leaves every other LayerNorm (stem, downsampling, semantic
# embeddings and the norms inside the dual attention) at torch's default.
BLOCK_LN_EPS = 1e-6
INNER_LN_EPS = 1e-5

NUM_SEMANTIC_QUERIES = (8, 8)  # learned grid, resized to the pooled grid
SEMANTIC_POOL = 7  # stage-0 tokens are 7x7 average-pooled for the queries


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> norm -> ReLU, with fixed child names so checkpoint
    keys do not depend on the norm type.

    A BatchNorm in eval mode is folded into the conv on the fly: one pass
    over the (large, stride-2) stem activations instead of two.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride,
                 norm_cfg):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              kernel_size // 2, bias=False)
        self.norm = build_norm(norm_cfg, out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        bn = self.norm
        if self.training or not isinstance(bn, _BatchNorm) or \
                bn.running_var is None:
            return super().forward(x)
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.affine:
            scale = scale * bn.weight
        bias = -bn.running_mean * scale
        if bn.affine:
            bias = bias + bn.bias
        weight = self.conv.weight * scale.view(-1, 1, 1, 1)
        x = F.conv2d(x, weight, bias, self.conv.stride, self.conv.padding)
        return self.act(x)


class DualViTStem(nn.Module):
    """7x7/2, 3x3, 3x3 conv-norm-ReLU, then a 3x3/2 conv and LayerNorm:
    image -> stride-4 tokens."""

    def __init__(self, in_channels: int, stem_width: int, embed_dims: int,
                 norm_cfg: dict):
        super().__init__()
        self.convs = nn.Sequential(
            ConvNormAct(in_channels, stem_width, 7, 2, norm_cfg),
            ConvNormAct(stem_width, stem_width, 3, 1, norm_cfg),
            ConvNormAct(stem_width, stem_width, 3, 1, norm_cfg))
        self.proj = nn.Conv2d(stem_width, embed_dims, 3, 2, 1)
        self.norm = LayerNorm(embed_dims, eps=INNER_LN_EPS)

    def forward(self, x: Tensor):
        x = self.proj(self.convs(to_channels_last(x)))
        return self.norm(map_to_tokens(x)), tuple(x.shape[2:])

    @staticmethod
    def out_size(size: int) -> int:
        return _conv_out(_conv_out(size, 7, 2, 3), 3, 2, 1)


class TokenDownsample(nn.Module):
    """3x3/2 conv + LayerNorm between stages, token sequence to token
    sequence."""

    def __init__(self, in_dims: int, out_dims: int):
        super().__init__()
        self.proj = nn.Conv2d(in_dims, out_dims, 3, 2, 1)
        self.norm = LayerNorm(out_dims, eps=INNER_LN_EPS)

    def forward(self, x: Tensor, hw: Tuple[int, int]):
        x = self.proj(tokens_to_map(x, hw))
        return self.norm(map_to_tokens(x)), tuple(x.shape[2:])

    @staticmethod
    def out_size(size: int) -> int:
        return _conv_out(size, 3, 2, 1)


class SemanticQueryInit(nn.Module):
    """First semantic tokens: learned queries attend over 7x7-pooled stage-0
    tokens; a two-way softmax gate (from the mean of both) mixes the result
    with the pooled tokens.

    The query grid (8x8) is resized bicubically to the pooled grid, so the
    number of semantic tokens follows the input size.
    """

    def __init__(self, embed_dims: int):
        super().__init__()
        self.queries = nn.Parameter(
            torch.zeros(math.prod(NUM_SEMANTIC_QUERIES), embed_dims))
        self.query_norm = LayerNorm(embed_dims, eps=INNER_LN_EPS)
        self.query_proj = nn.Linear(embed_dims, embed_dims)
        self.kv = nn.Linear(embed_dims, 2 * embed_dims)
        self.gate = MLP(embed_dims, embed_dims, nn.ReLU, 2 * embed_dims)
        self.norm = LayerNorm(embed_dims, eps=INNER_LN_EPS)

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        if min(hw) < SEMANTIC_POOL:
            raise ValueError(
                f'DualViT: the stride-4 grid is {hw[0]}x{hw[1]}, smaller than '
                f'the {SEMANTIC_POOL}x{SEMANTIC_POOL} pooling of its semantic '
                'tokens; inputs must be at least 25x25 pixels (resize or pad '
                'the image)')
        b, _, c = x.shape
        pooled = F.avg_pool2d(tokens_to_map(x, hw), SEMANTIC_POOL)
        grid = pooled.shape[2:]
        pooled = map_to_tokens(pooled)  # (B, M, C)

        queries = self.queries.view(*NUM_SEMANTIC_QUERIES, c).permute(2, 0, 1)
        queries = F.interpolate(queries[None], size=grid, mode='bicubic',
                                align_corners=False)
        queries = self.query_proj(self.query_norm(map_to_tokens(queries)))
        k, v = split_heads(self.kv(pooled), 2, 1)  # one head
        gathered = attend(queries.expand(b, -1, -1)[:, None], k, v)

        weights = self.gate((gathered + pooled).mean(1)).view(b, 2, 1, c)
        weights = softmax(weights, 1)
        return self.norm(gathered * weights[:, 0] + pooled * weights[:, 1])


class SemanticEmbed(nn.Sequential):
    """Linear + LayerNorm taking the semantic tokens to the next width."""

    def __init__(self, in_dims: int, out_dims: int):
        super().__init__()
        self.proj = nn.Linear(in_dims, out_dims)
        self.norm = LayerNorm(out_dims, eps=INNER_LN_EPS)


class DualAttention(nn.Module):
    """Attention of a dual block.

    In order: the semantic tokens attend to themselves, then gather from the
    pixel tokens, then go through their own FFN (each step a layer-scaled
    residual); finally the pixel tokens attend to the updated semantic
    tokens. Returns the pixel update (before the block's layer scale) and
    the new semantic tokens.
    """

    def __init__(self, embed_dims: int, num_heads: int, drop_path: float,
                 layer_scale_init: float):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} must be divisible by '
                             f'num_heads {num_heads}')
        self.num_heads = num_heads
        self.drop_path = drop_path
        # one GEMM over the (many) pixel tokens: pixel queries plus the keys
        # and values the semantic queries read
        self.pixel_qkv = nn.Linear(embed_dims, 3 * embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)

        def ln():
            return LayerNorm(embed_dims, eps=INNER_LN_EPS)

        self.sem_self_norm = ln()
        self.sem_self_qkv = nn.Linear(embed_dims, 3 * embed_dims)
        self.sem_query_norm = ln()
        self.sem_query = nn.Linear(embed_dims, embed_dims)
        self.sem_ffn_norm = ln()
        self.sem_ffn = MLP(embed_dims, 4 * embed_dims, nn.ReLU)
        self.sem_kv_norm = ln()
        self.sem_kv = nn.Linear(embed_dims, 2 * embed_dims)
        for name in ('gamma_self', 'gamma_cross', 'gamma_ffn'):
            self.register_parameter(
                name,
                nn.Parameter(torch.full((embed_dims, ), layer_scale_init)))

    def forward(self, x: Tensor, sem: Tensor):
        heads, p, train = self.num_heads, self.drop_path, self.training

        q, k, v = split_heads(self.sem_self_qkv(self.sem_self_norm(sem)), 3,
                              heads)
        sem = scaled_residual(sem, attend(q, k, v), self.gamma_self, p, train)

        q_pix, k_pix, v_pix = split_heads(self.pixel_qkv(x), 3, heads)
        q_sem, = split_heads(self.sem_query(self.sem_query_norm(sem)), 1,
                             heads)
        sem = scaled_residual(sem, attend(q_sem, k_pix, v_pix),
                              self.gamma_cross, p, train)
        sem = scaled_residual(sem, self.sem_ffn(self.sem_ffn_norm(sem)),
                              self.gamma_ffn, p, train)

        k_sem, v_sem = split_heads(self.sem_kv(self.sem_kv_norm(sem)), 2,
                                   heads)
        return self.proj(attend(q_pix, k_sem, v_sem)), sem


class DualBlock(nn.Module):
    """Block of the dual stages: pixel and semantic tokens kept apart."""

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: float,
                 drop_path: float, layer_scale_init: float,
                 with_cp: bool = False):
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = LayerNorm(embed_dims, eps=BLOCK_LN_EPS)
        self.attn = DualAttention(embed_dims, num_heads, drop_path,
                                  layer_scale_init)
        self.gamma1 = nn.Parameter(torch.full((embed_dims, ),
                                              layer_scale_init))
        self.norm2 = LayerNorm(embed_dims, eps=BLOCK_LN_EPS)
        self.ffn = ConvFFN(embed_dims, int(embed_dims * mlp_ratio),
                           recompute_hidden=not with_cp)
        self.gamma2 = nn.Parameter(torch.full((embed_dims, ),
                                              layer_scale_init))

    def forward(self, x: Tensor, hw: Tuple[int, int], sem: Tensor):
        p, train = self.drop_path, self.training
        update, sem = self.attn(self.norm1(x), sem)
        x = scaled_residual(x, update, self.gamma1, p, train)
        x = scaled_residual(x, self.ffn(self.norm2(x), hw), self.gamma2, p,
                            train)
        return x, sem


class MergeBlock(nn.Module):
    """Block of the merged stages on ``[pixel tokens, semantic tokens]``.

    Self-attention runs over both; the FFN is a conv-FFN for the pixels and
    a plain MLP for the semantic tokens. Without ``semantic_ffn`` (the very
    last block of a dense backbone) the semantic tokens are dropped after
    the attention and only the pixel tokens are returned.
    """

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: float,
                 drop_path: float, layer_scale_init: float,
                 semantic_ffn: bool = True, with_cp: bool = False):
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = LayerNorm(embed_dims, eps=BLOCK_LN_EPS)
        self.attn = SelfAttention(embed_dims, num_heads)
        self.gamma1 = nn.Parameter(torch.full((embed_dims, ),
                                              layer_scale_init))
        self.norm2 = LayerNorm(embed_dims, eps=BLOCK_LN_EPS)
        self.ffn = ConvFFN(embed_dims, int(embed_dims * mlp_ratio),
                           recompute_hidden=not with_cp)
        self.semantic_ffn = MLP(embed_dims, 2 * embed_dims) \
            if semantic_ffn else None
        self.gamma2 = nn.Parameter(torch.full((embed_dims, ),
                                              layer_scale_init))

    def forward(self, x: Tensor, hw: Tuple[int, int]) -> Tensor:
        p, train = self.drop_path, self.training
        n = hw[0] * hw[1]
        m = x.shape[1] - n
        # (split, not slicing: its backward is a cat, not zero-fill + copy)
        if self.semantic_ffn is None:
            # the semantic tokens are dropped after this attention: only the
            # pixel tokens need to query
            pixels = x.split([n, m], dim=1)[0]
            x = scaled_residual(pixels, self.attn(self.norm1(x), n),
                                self.gamma1, p, train)
            return scaled_residual(x, self.ffn(self.norm2(x), hw),
                                   self.gamma2, p, train)
        x = scaled_residual(x, self.attn(self.norm1(x)), self.gamma1, p,
                            train)
        pixels, semantics = self.norm2(x).split([n, m], dim=1)
        y = torch.cat([self.ffn(pixels, hw), self.semantic_ffn(semantics)],
                      dim=1)
        return scaled_residual(x, y, self.gamma2, p, train)


class DualViTStage(nn.Module):
    """One stage: ``downsample`` (absent in stage 0, which follows the stem),
    ``semantic_embed`` (query init in stage 0, a projection later),
    ``blocks``, then the output ``norm`` and ``semantic_norm`` (either may be
    absent where nothing consumes it)."""

    def __init__(self, downsample, semantic_embed, blocks, merge: bool,
                 norm: Optional[nn.Module], semantic_norm: Optional[nn.Module],
                 with_cp: bool):
        super().__init__()
        self.downsample = downsample
        self.semantic_embed = semantic_embed
        self.blocks = nn.ModuleList(blocks)
        self.norm = norm
        self.semantic_norm = semantic_norm
        self.merge = merge
        self.with_cp = with_cp

    def _run(self, block, *args):
        return maybe_checkpoint(block, *args, enabled=self.with_cp)

    def forward(self, x: Tensor, hw: Tuple[int, int], sem: Optional[Tensor]):
        if self.downsample is not None:
            x, hw = self.downsample(x, hw)
        if isinstance(self.semantic_embed, SemanticQueryInit):
            sem = self.semantic_embed(x, hw)
        else:
            sem = self.semantic_embed(sem)

        if self.merge:
            n = hw[0] * hw[1]
            x = torch.cat([x, sem], dim=1)
            for block in self.blocks:
                x = self._run(block, x, hw)
            x, sem = x.split([n, x.shape[1] - n], dim=1) \
                if x.shape[1] > n else (x, None)
        else:
            for block in self.blocks:
                x, sem = self._run(block, x, hw, sem)

        if self.norm is not None:
            x = self.norm(x)
        if self.semantic_norm is not None:
            sem = self.semantic_norm(sem)
        return x, hw, sem


@MODELS.register_module()
class DualViT(BaseBackbone):
    """Dual Vision Transformer backbone.

    A reimplementation of the official Dual-ViT with the same weights and
    outputs (official checkpoints: ``tools/convert_imagenet.py dualvit``),
    with attention through ``scaled_dot_product_attention``.

    Args:
        arch (str | dict): ``'s'``, ``'b'``, ``'l'`` (or ``'small'``,
            ``'base'``, ``'large'``), or a dict with keys ``stem_width``,
            ``embed_dims``, ``num_heads``, ``mlp_ratios`` and ``depths`` (four
            entries each except ``stem_width``). In stage 2 every odd block
            uses ``mlp_ratios[2] - 1``, as in the reference.
        in_channels (int): input channels. Default 3.
        out_indices (Sequence[int], optional): stages whose feature maps are
            returned. Default ``(0, 1, 2, 3)``; must be ``(3,)`` (the
            default there) when ``out_type='tokens'``.
        out_type (str): ``'featmap'``: a tuple of NCHW maps with strides
            4/8/16/32 (for detection/segmentation). ``'tokens'``: the ImageNet
            classifier's trunk, returning ``((pixel_tokens,
            semantic_tokens),)`` of the last stage, un-normalised, for
            :class:`~mmext.models.heads.DualViTClsHead`. The last block then
            keeps its semantic FFN and the last output norm belongs to the
            head, as in the official classifier.
        drop_path_rate (float): stochastic depth, rising linearly over all
            blocks from 0. Default 0.1 (the reference used 0.15 for
            detection, 0 for segmentation).
        layer_scale_init (float): initial layer scale. Default 1e-6.
        stem_norm_cfg (dict): norm of the three stem convs. Default
            ``dict(type='BN', requires_grad=True)``. The reference detector
            froze them (``requires_grad=False``), the segmentor trained them
            as ``SyncBN``.
        frozen_stages, norm_eval, with_cp: see
            :class:`~mmext.models.backbones.base.BaseBackbone` (``norm_eval``
            concerns the stem's BatchNorms).
        test_tile_size (int, optional): in eval mode, inputs larger than
            this are cut into ``test_tile_size`` squares (the last row and
            column aligned to the border), each run separately and the
            feature maps stitched, as the official segmentation backbone did
            (its ADE20K mIoU depends on it: 768 there). Default None (off).
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained',
            checkpoint=PATH)`` with a converted checkpoint.
    """
    arch_zoo = {
        **dict.fromkeys(['s', 'small'], dict(
            stem_width=32, embed_dims=[64, 128, 320, 448],
            num_heads=[2, 4, 10, 14], mlp_ratios=[8, 8, 4, 3],
            depths=[3, 4, 6, 3])),
        **dict.fromkeys(['b', 'base'], dict(
            stem_width=64, embed_dims=[64, 128, 320, 512],
            num_heads=[2, 4, 10, 16], mlp_ratios=[8, 8, 4, 3],
            depths=[3, 4, 15, 3])),
        **dict.fromkeys(['l', 'large'], dict(
            stem_width=64, embed_dims=[96, 192, 384, 512],
            num_heads=[3, 6, 12, 16], mlp_ratios=[8, 8, 4, 3],
            depths=[3, 6, 21, 3])),
    }  # yapf: disable
    arch_keys = ('stem_width', 'embed_dims', 'num_heads', 'mlp_ratios',
                 'depths')
    num_dual_stages = 2  # stages 0-1 dual, 2-3 merged
    out_types = ('featmap', 'tokens')
    stem_names = ('stem', )
    layer_depth_rules = (
        (r'stem\.', 'stem'),
        (r'stages\.(?P<stage>\d+)\.blocks\.(?P<block>\d+)\.', 'block'),
        (r'stages\.(?P<stage>\d+)\.(downsample|semantic_embed)\.',
         'stage_first'),
        (r'stages\.(?P<stage>\d+)\.', 'stage_last'),
    )

    def __init__(self,
                 arch: Union[str, Dict] = 's',
                 in_channels: int = 3,
                 out_indices: Optional[Sequence[int]] = None,
                 out_type: str = 'featmap',
                 drop_path_rate: float = 0.1,
                 layer_scale_init: float = 1e-6,
                 stem_norm_cfg: Dict = dict(type='BN', requires_grad=True),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 test_tile_size: Optional[int] = None,
                 init_cfg: Optional[Dict] = None):
        if out_type not in self.out_types:
            raise ValueError(f'out_type must be one of {self.out_types}, '
                             f'got {out_type!r}')
        if out_indices is None:
            out_indices = (0, 1, 2, 3) if out_type == 'featmap' else (3, )
        super().__init__(arch, out_indices, frozen_stages, norm_eval, with_cp,
                         init_cfg)
        s = self.arch_settings
        self.embed_dims = list(s['embed_dims'])
        self.num_heads = list(s['num_heads'])
        self.out_type = out_type
        if out_type == 'tokens' and self.out_indices != (3, ):
            raise ValueError("out_type='tokens' returns the last stage's "
                             'tokens only: leave out_indices unset or use '
                             f'(3,), got {tuple(out_indices)}')
        if test_tile_size is not None and (out_type == 'tokens'
                                           or test_tile_size < 32):
            raise ValueError('test_tile_size needs out_type="featmap" and a '
                             f'tile of at least 32 pixels, got '
                             f'{test_tile_size} with {out_type!r}')
        self.test_tile_size = test_tile_size

        dims = self.embed_dims
        self.stem = DualViTStem(in_channels, s['stem_width'], dims[0],
                                stem_norm_cfg)
        stage_rates = self.drop_path_rates(drop_path_rate)
        self.stages = nn.ModuleList()
        # stages past the last output are not built: they would hold unused
        # parameters (an error under DDP) and cost nothing to skip
        for i in range(max(self.out_indices) + 1):
            self.stages.append(
                self._make_stage(i, stage_rates[i], layer_scale_init))
        self.freeze_stages()

    # -- construction ------------------------------------------------------
    @classmethod
    def check_arch(cls, arch: Dict) -> None:
        for k in cls.arch_keys[1:]:
            if not isinstance(arch[k], list) or len(arch[k]) != 4:
                raise ValueError(f'DualViT arch[{k!r}] needs 4 entries (one '
                                 f'per stage), got {arch[k]}')
        for i, (d, h) in enumerate(zip(arch['embed_dims'], arch['num_heads'])):
            if d % h:
                raise ValueError(f'DualViT arch: stage {i} embed_dims {d} is '
                                 f'not divisible by num_heads {h}')
        if arch['mlp_ratios'][2] <= 1 and arch['depths'][2] > 1:
            raise ValueError('DualViT arch: mlp_ratios[2] must exceed 1 '
                             '(odd blocks of stage 2 use mlp_ratios[2] - 1)')

    def _make_stage(self, i: int, rates: List[float],
                    layer_scale_init: float) -> DualViTStage:
        s = self.arch_settings
        dims, heads, ratio = self.embed_dims[i], self.num_heads[i], \
            s['mlp_ratios'][i]
        merge = i >= self.num_dual_stages
        last = i == self.num_stages - 1
        if i == 0:
            downsample, semantic_embed = None, SemanticQueryInit(dims)
        else:
            downsample = TokenDownsample(self.embed_dims[i - 1], dims)
            semantic_embed = SemanticEmbed(self.embed_dims[i - 1], dims)

        blocks = []
        for j, rate in enumerate(rates):
            if merge:
                block_ratio = ratio - 1 if (i == 2 and j % 2) else ratio
                # a dense backbone has no use for the semantic tokens after
                # the last attention; the classifier trunk keeps them
                keep_sem = not (last and j == len(rates) - 1
                                and self.out_type == 'featmap')
                blocks.append(
                    MergeBlock(dims, heads, block_ratio, rate,
                               layer_scale_init, semantic_ffn=keep_sem,
                               with_cp=self.with_cp))
            else:
                blocks.append(
                    DualBlock(dims, heads, ratio, rate, layer_scale_init,
                              with_cp=self.with_cp))

        def ln():
            return LayerNorm(dims, eps=BLOCK_LN_EPS)

        norm = ln() if (not last or self.out_type == 'featmap') else None
        semantic_norm = ln() if not last else None
        return DualViTStage(downsample, semantic_embed, blocks, merge, norm,
                            semantic_norm, self.with_cp)

    def init_module(self, m: nn.Module) -> None:
        """The reference initialisation: the base's linear and norm init
        and He-normal (fan-out) convolutions."""
        super().init_module(m)
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * \
                m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def init_from_scratch(self):
        super().init_from_scratch()
        trunc_normal_(self.stages[0].semantic_embed.queries, std=.02)

    def stage_channels(self) -> List[int]:
        return list(self.embed_dims)

    def stage_strides(self) -> List[int]:
        return [4 * 2**i for i in range(self.num_stages)]  # a stride-4 stem

    # -- forward -----------------------------------------------------------
    def output_shapes(self, height: int, width: int) -> List[Tuple[int]]:
        """``(C, H, W)`` of each output for an input of the given size."""
        h, w = DualViTStem.out_size(height), DualViTStem.out_size(width)
        shapes = []
        for i in range(self.num_stages):
            if i:
                h, w = TokenDownsample.out_size(h), \
                    TokenDownsample.out_size(w)
            if i in self.out_indices:
                shapes.append((self.embed_dims[i], h, w))
        return shapes

    def forward_single(self, x: Tensor) -> tuple:
        """Forward without tiling."""
        if x.ndim != 4:
            raise ValueError(f'DualViT expects (B, C, H, W) images, got '
                             f'shape {tuple(x.shape)}')
        x, hw = self.stem(x)
        sem = None
        outs = []
        for i, stage in enumerate(self.stages):
            x, hw, sem = stage(x, hw, sem)
            if self.out_type == 'tokens':
                continue
            if i in self.out_indices:
                outs.append(tokens_to_map(x, hw).contiguous())
        if self.out_type == 'tokens':
            return ((x, sem), )
        return tuple(outs)

    def forward(self, x: Tensor) -> tuple:
        tile = self.test_tile_size
        if tile and not self.training and max(x.shape[2:]) > tile:
            return self.forward_tiled(x)
        return self.forward_single(x)

    def forward_tiled(self, x: Tensor) -> tuple:
        """Tile-and-stitch inference of the official segmentation backbone:
        ``test_tile_size`` squares, the last row/column of tiles aligned to
        the image border (overlapping the previous one, and written last),
        placed at the matching offsets of the full-image feature maps."""
        tile = self.test_tile_size
        b, _, height, width = x.shape
        outs = [
            x.new_zeros(b, c, h, w)
            for c, h, w in self.output_shapes(height, width)
        ]
        rows, cols = _tile_starts(height, tile), _tile_starts(width, tile)
        for r, top in enumerate(rows):
            for c, left in enumerate(cols):
                feats = self.forward_single(x[:, :, top:top + tile,
                                              left:left + tile])
                for out, feat in zip(outs, feats):
                    fh, fw = feat.shape[2:]
                    y0 = out.shape[2] - fh if r == len(rows) - 1 else r * fh
                    x0 = out.shape[3] - fw if c == len(cols) - 1 else c * fw
                    out[:, :, y0:y0 + fh, x0:x0 + fw] = feat
        return tuple(outs)


def _tile_starts(size: int, tile: int) -> List[int]:
    """Tile offsets along one axis: ``0, tile, 2*tile, ...`` with the last
    tile ending at the border."""
    count = math.ceil(size / tile)
    return [i * tile for i in range(count - 1)] + [max(0, size - tile)]
