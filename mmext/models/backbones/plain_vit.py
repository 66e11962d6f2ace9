"""What the plain ViTs (A-ViT, Shuffle DeiT) share: an arch of
``embed_dims, depth, num_heads, patch_size``, every block a stage, one
stride-``patch_size`` token grid with a class token and a learned position
embedding (resized to any input's grid), and the two output types."""
import math
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor

from ..layers.pos_embed import resize_pos_embed
from ..layers.tokens import build_patch_embed
from .base import BaseBackbone


class PlainViTBackbone(BaseBackbone):
    """Base of the plain-ViT families (see the module docstring).

    A family calls :meth:`build_embeddings` in its constructor, builds
    ``self.blocks`` and runs :meth:`embed` first in its forward.
    ``out_type='featmap'`` gives stride-``patch_size`` NCHW maps of the
    patch tokens, ``'cls_token'`` the ``(B, C)`` class token.
    """
    arch_keys = ('embed_dims', 'depth', 'num_heads', 'patch_size')
    stem_names = ('patch_embed', 'cls_token', 'pos_embed')
    out_types = ('featmap', 'cls_token')
    num_extra_tokens = 1

    @classmethod
    def attended_dims(cls, settings: dict) -> Tuple[int, str]:
        """The width the heads split, and how it follows from the arch."""
        return settings['embed_dims'], 'embed_dims'

    @classmethod
    def check_arch(cls, settings: dict) -> None:
        for key in cls.arch_keys:
            if not (isinstance(settings[key], int) and settings[key] > 0):
                raise ValueError(f'{cls.__name__} arch: {key} must be a '
                                 f'positive int, got {settings[key]!r}')
        dims, what = cls.attended_dims(settings)
        if dims % settings['num_heads']:
            raise ValueError(
                f'{cls.__name__} arch: the attended width {what} = {dims} '
                f'must be divisible by num_heads ({settings["num_heads"]})')

    @classmethod
    def stage_depths(cls, settings: dict) -> List[int]:
        return [1] * settings['depth']

    def check_out_type(self, out_type: str) -> str:
        if out_type not in self.out_types:
            raise ValueError(f'{type(self).__name__} out_type must be one of '
                             f'{self.out_types}, got {out_type!r}')
        return out_type

    def build_embeddings(self, in_channels: int,
                         img_size: Union[int, Sequence[int]]) -> None:
        """``patch_embed`` (padded to the patch grid: any input size),
        ``cls_token`` and ``pos_embed`` for the ``img_size`` grid it was
        (pre)trained at."""
        dims = self.embed_dims = self.arch_settings['embed_dims']
        patch = self.patch_size = self.arch_settings['patch_size']
        self.in_channels = in_channels
        img_size = (img_size, img_size) if isinstance(img_size, int) \
            else tuple(img_size)
        self.pos_grid = (img_size[0] // patch, img_size[1] // patch)
        self.patch_embed = build_patch_embed(in_channels, dims, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.num_extra_tokens + math.prod(self.pos_grid),
                        dims))

    def embed(self,
              x: Tensor,
              with_cls_token: bool = True) -> Tuple[Tensor, Tuple[int, int]]:
        """Patch tokens (after the class token) plus the position embedding
        resized to their grid, and the grid."""
        self.check_input(x)
        x, hw = self.patch_embed(x)
        pos = resize_pos_embed(self.pos_embed, self.pos_grid, hw,
                               self.num_extra_tokens)
        if not with_cls_token:
            return x + pos[:, self.num_extra_tokens:], hw
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + pos, hw

    def stage_modules(self, index: int) -> list:
        parts = [self.blocks[index]]
        norm = getattr(self, f'norm{index}', None)
        if norm is not None:
            parts.append(norm)
        return parts

    def stage_channels(self) -> List[int]:
        return [self.embed_dims] * self.num_stages

    def stage_strides(self) -> List[int]:
        return [self.patch_size] * self.num_stages

    def init_from_scratch(self) -> None:
        super().init_from_scratch()
        trunc_normal_(self.pos_embed, std=.02)
        trunc_normal_(self.cls_token, std=.02)
