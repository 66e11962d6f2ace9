"""ImageNet head of the official Dual-ViT classifier (token-labeling model),
for mmpretrain's ``ImageClassifier`` with ``DualViT(out_type='tokens')``."""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead
from torch import Tensor

from mmext.registry import MODELS
from ..layers import MLP, LayerNorm, attend, split_heads


class ClassAttentionBlock(nn.Module):
    """A class token (the mean of all tokens) attends to ``[cls, tokens]``
    and goes through an MLP; only the class token is updated (CaiT-style
    class attention, no layer scale)."""

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: float,
                 norm_eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = LayerNorm(embed_dims, eps=norm_eps)
        self.q = nn.Linear(embed_dims, embed_dims)
        self.kv = nn.Linear(embed_dims, 2 * embed_dims)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.norm2 = LayerNorm(embed_dims, eps=norm_eps)
        self.ffn = MLP(embed_dims, int(embed_dims * mlp_ratio))

    def forward(self, tokens: Tensor) -> Tensor:
        cls = tokens.mean(1, keepdim=True)
        x = self.norm1(torch.cat([cls, tokens], dim=1))
        q, = split_heads(self.q(x[:, :1]), 1, self.num_heads)
        k, v = split_heads(self.kv(x), 2, self.num_heads)
        cls = cls + self.proj(attend(q, k, v))
        return cls + self.ffn(self.norm2(cls))  # (B, 1, C)


@MODELS.register_module()
class DualViTClsHead(ClsHead):
    """Token-labeling classifier head of Dual-ViT.

    Input: the output of ``DualViT(out_type='tokens')``, whose last element
    is ``(pixel_tokens, semantic_tokens)``. A class-attention block pools all
    tokens into a class token; after a shared LayerNorm, logits are
    ``fc(cls) + aux_weight * max_over_pixels(aux_fc(pixel_tokens))``, the
    official inference rule. Training uses these logits with ``loss`` (dense
    token-label targets and MixToken are not implemented).

    Args:
        num_classes (int): number of classes.
        in_channels (int): token width (the last ``embed_dims``).
        num_heads (int): heads of the class attention (the last stage's).
        mlp_ratio (float): MLP ratio of the class-attention block. Default 2.
        aux_weight (float): weight of the aux (token) logits. Default 0.5.
        norm_eps (float): LayerNorm eps. Default 1e-6.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 num_heads: int,
                 mlp_ratio: float = 2.,
                 aux_weight: float = 0.5,
                 norm_eps: float = 1e-6,
                 init_cfg: Optional[Dict] = dict(
                     type='TruncNormal', layer='Linear', std=.02),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive, got '
                             f'{num_classes}')
        self.num_classes = num_classes
        self.aux_weight = aux_weight
        self.cls_block = ClassAttentionBlock(in_channels, num_heads,
                                             mlp_ratio, norm_eps)
        self.norm = LayerNorm(in_channels, eps=norm_eps)
        self.fc = nn.Linear(in_channels, num_classes)
        self.aux_fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Sequence) -> Tuple[Tensor, Tensor]:
        """``(class_token (B, C), pixel_tokens (B, N, C))``, normalised."""
        last = feats[-1]
        if not (isinstance(last, (tuple, list)) and len(last) == 2):
            raise TypeError(
                'DualViTClsHead needs (pixel_tokens, semantic_tokens) from '
                "DualViT(out_type='tokens'); got "
                f'{type(last).__name__} (is the backbone in featmap mode?)')
        pixels, semantics = last
        cls = self.cls_block(torch.cat([pixels, semantics], dim=1))
        return self.norm(cls[:, 0]), self.norm(pixels)

    def forward(self, feats: Sequence) -> Tensor:
        cls, pixels = self.pre_logits(feats)
        aux = self.aux_fc(pixels).amax(dim=1)
        return torch.add(self.fc(cls), aux, alpha=self.aux_weight)
