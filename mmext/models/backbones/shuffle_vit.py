"""Shuffle DeiT: a plain ViT with the channel shuffle module.

"Plug'n Play Channel Shuffle Module for Enhancing Tiny Vision Transformers"
(Xu et al., arXiv:2310.05642); reimplemented from the authors' pre-release
code (github.com/Ackesnal/deit, branch ``dense``,
``ShuffleVisionTransformer``).
The patch embedding, class token and position embedding are twice as wide
as the DeiT blocks; ``embed_norm`` follows the position embedding. Each
block runs on the first half of every token (class token included), then
one LayerNorm shared by all blocks (``shared_norm``) normalises the full
token and the halves are interleaved. The class token goes through
``shared_norm`` once more before the classifier.

Authors' checkpoints load after ``tools/convert_imagenet.py shuffle_vit SRC
DST``.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import ModuleList
from torch import Tensor

from mmext.registry import MODELS
from mmext.utils.precision import layer_norm
from ..layers.attention import SelfAttention
from ..layers.blocks import PreNormBlock
from ..layers.channel_shuffle import (ChannelShuffleMixin, channel_shuffle,
                                      learnable_rescale_keys)
from ..layers.norm import LayerNorm
from .plain_vit import PlainViTBackbone

__all__ = ['ShuffleViT', 'ShuffleViTBlock']


class ShuffleViTBlock(ChannelShuffleMixin, PreNormBlock):
    """A ViT block (global self-attention) on the attended half of
    ``embed_dims`` tokens, then the channel shuffle (see
    :class:`ChannelShuffleMixin`; ``rescale`` None as released, or
    'fixed' / 'learnable' starting at 1)."""

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 rescale: Optional[str] = None,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 **block_kwargs):
        half = embed_dims // 2
        super().__init__(half, SelfAttention(half, num_heads, qkv_bias),
                         norm_cfg=norm_cfg, **block_kwargs)
        self.init_rescale(rescale, 1.)

    def _mix(self, x: Tensor, hw_shape) -> Tensor:
        return self.attn(x)  # global attention: the map shape is not used


@MODELS.register_module()
class ShuffleViT(PlainViTBackbone):
    """Shuffle DeiT (plain ViT) backbone.

    Every block is a stage: ``out_indices`` and ``frozen_stages`` count
    blocks. Outputs are stride-``patch_size`` maps (``out_type='featmap'``,
    each through its own norm ``norm{i}``) or the class token after the
    shared norm (``out_type='cls_token'``, for the classifier).

    Args:
        arch (str | dict): 'deit-tiny' (384-wide tokens, 12 blocks of 192
            channels with 3 heads, patch 16) or a dict with keys
            ``embed_dims`` (full token width), ``depth``, ``num_heads`` and
            ``patch_size``.
        img_size (int | tuple): image size of the (pretrained) position
            embedding; other sizes resize it (bicubic). Default 224.
        in_channels (int): image channels. Default 3.
        mlp_ratio (float): FFN hidden width over the attended width.
        qkv_bias (bool): bias of the qkv projections. Default True.
        rescale (str | None): shortcut factors: None (as released),
            'fixed' (1/2) or 'learnable' (two coefficients per block,
            starting at 1).
        drop_rate (float): dropout after the position embedding and in the
            FFNs.
        drop_path_rate (float): stochastic depth, increasing linearly.
        out_indices (Sequence[int]): blocks to output. Default: the last.
        out_type (str): 'featmap' or 'cls_token'.
        frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`~mmext.models.backbones.base.BaseBackbone`.
        norm_cfg (dict): norms inside the blocks (LayerNorm, eps 1e-6 as
            DeiT); ``embed_norm``, ``shared_norm`` and the output norms are
            LayerNorms with the default eps, as released.
    """
    arch_zoo = {
        'deit-tiny': dict(embed_dims=384, depth=12, num_heads=3,
                          patch_size=16),
    }
    stem_names = PlainViTBackbone.stem_names + ('embed_norm', )
    layer_depth_rules = (
        (r'(patch_embed|cls_token|pos_embed|embed_norm)', 'stem'),
        (r'blocks\.(?P<stage>\d+)\.', 'block'),
        (r'norm(?P<stage>\d+)\.', 'stage_last'),
        (r'shared_norm\.', 'last_block'),  # applied after every block
    )

    def __init__(self,
                 arch: Union[str, Dict] = 'deit-tiny',
                 img_size: Union[int, Sequence[int]] = 224,
                 in_channels: int = 3,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 rescale: Optional[str] = None,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 out_indices: Sequence[int] = (-1, ),
                 out_type: str = 'featmap',
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Dict = dict(type='LN', eps=1e-6),
                 with_cp: bool = False,
                 init_cfg=None):
        super().__init__(arch, out_indices, frozen_stages, norm_eval, with_cp,
                         init_cfg)
        self.out_type = self.check_out_type(out_type)
        s = self.arch_settings
        self.build_embeddings(in_channels, img_size)
        self.embed_norm = LayerNorm(self.embed_dims)
        self.drop_after_pos = nn.Dropout(p=drop_rate)

        dpr = torch.linspace(0, drop_path_rate, s['depth'],
                             device='cpu').tolist()
        ffn_cfg = dict(mlp_ratio=mlp_ratio, drop_rate=drop_rate)
        self.blocks = ModuleList([
            ShuffleViTBlock(
                self.embed_dims,
                s['num_heads'],
                qkv_bias=qkv_bias,
                rescale=rescale,
                ffn_cfg=ffn_cfg,
                drop_path_rate=dpr[i],
                norm_cfg=norm_cfg,
                with_cp=with_cp) for i in range(s['depth'])
        ])
        self.shared_norm = LayerNorm(self.embed_dims)
        if out_type == 'featmap':
            self.add_out_norms(self.stage_channels(), dict(type='LN'))
        self.freeze_stages()

    @classmethod
    def attended_dims(cls, settings: Dict) -> Tuple[int, str]:
        return settings['embed_dims'] // 2, 'embed_dims / 2'

    def stage_modules(self, index: int) -> list:
        parts = super().stage_modules(index)
        if index == self.num_stages - 1:
            parts.append(self.shared_norm)  # used by every block
        return parts

    def optional_pretrained_keys(self):
        return super().optional_pretrained_keys() + \
            learnable_rescale_keys(self)

    def _shared_norm_shuffled(self, x: Tensor) -> Tensor:
        """``shuffle(shared_norm(t))`` of the tokens ``x = shuffle(t)``: the
        norm's statistics do not depend on the channel order, so its affine
        parameters are shuffled instead of the activations."""
        norm = self.shared_norm
        return layer_norm(x, norm.normalized_shape,
                          channel_shuffle(norm.weight),
                          channel_shuffle(norm.bias), norm.eps)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x, hw_shape = self.embed(x)
        x = self.drop_after_pos(self.embed_norm(x))
        outs = []
        for i, block in enumerate(self.blocks):
            x = self._shared_norm_shuffled(block(x, hw_shape))
            if i not in self.out_indices:
                continue
            if self.out_type == 'cls_token':
                outs.append(self.shared_norm(x[:, 0]))
            else:
                outs.append(
                    self.to_output(i, x[:, self.num_extra_tokens:], hw_shape))
        return tuple(outs)
