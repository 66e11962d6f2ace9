"""The Shuffle DeiT authors' checkpoints -> ``mmext.ShuffleViT``.

Reads the ImageNet classifiers of github.com/Ackesnal/deit (branch
``dense``, ``ShuffleVisionTransformer``; ``{'model': ...}``) or a
detector's ``backbone.`` keys. Only names change; the shared per-block norm
``norm`` becomes ``shared_norm``. The number of heads is not visible in the
weights: a checkpoint whose other shapes are those of DeiT-Ti is read as
'deit-tiny', any other needs ``--arch``. The position embedding must be a
square grid; its size is kept as ``img_size``.

Layouts: ``backbone`` (default) drops ``head``; the output norm starts
fresh. ``classifier`` (``keep_head``): mmpretrain ``ImageClassifier`` with
``ShuffleViT(out_type='cls_token')`` and ``VisionTransformerClsHead``.
"""
import math
from typing import List

from mmext.models.backbones.shuffle_vit import ShuffleViT
from .base import (ConversionError, Converter, Rule, fresh_out_norms,
                   timm_vit_rules, timm_vit_shapes, with_prefix)
from .registry import register_converter


@register_converter('shuffle_vit')
class ShuffleViTConverter(Converter):
    backbone = ShuffleViT
    signature = ('cls_token', 'embed_norm.weight', 'patch_embed.proj.weight',
                 'blocks.0.mlp.fc1.weight')
    head_keys = (r'head\.', )

    def infer_arch(self, state) -> dict:
        return timm_vit_shapes(state)

    def rules(self, settings: dict, keep_head: bool) -> List[Rule]:
        rules = timm_vit_rules() + [
            Rule('embed_norm.', 'embed_norm.'),
            Rule('norm.', 'shared_norm.'),
        ]
        if not keep_head:
            return rules + [Rule('norm{i}.', 'norm{i}.')]
        return [Rule('head.', 'head.layers.head.')] + with_prefix(
            rules, 'backbone.')

    def extra_meta(self, state, converted, settings, keep_head) -> dict:
        patches = state['pos_embed'].shape[1] - ShuffleViT.num_extra_tokens
        side = math.isqrt(patches)
        if side * side != patches:
            raise ConversionError(
                f'the position embedding has {patches} patch entries, not a '
                'square grid; only square pretraining sizes are supported')
        meta = dict(img_size=side * settings['patch_size'])
        if not keep_head:
            # output norms of a converted mmext detector say which blocks
            # it took outputs from; a classifier's start fresh
            normed = [i for i in range(settings['depth'])
                      if f'norm{i}.weight' in converted]
            meta['out_indices'] = normed or [settings['depth'] - 1]
            meta['fresh_out_norms'] = fresh_out_norms(
                converted, meta['out_indices'])
        return meta

    def backbone_kwargs(self, meta: dict) -> dict:
        kwargs = dict(img_size=meta.get('img_size', 224))
        if 'out_indices' in meta:
            kwargs['out_indices'] = tuple(meta['out_indices'])
        return kwargs

    def classifier_cfg(self, arch, num_classes: int, meta: dict) -> dict:
        settings = ShuffleViT.parse_arch(arch)
        return dict(
            type='ImageClassifier',
            backbone=dict(
                type='mmext.ShuffleViT',
                arch=arch,
                img_size=meta.get('img_size', 224),
                out_type='cls_token',
                drop_path_rate=0.),
            neck=None,
            head=dict(
                type='VisionTransformerClsHead',
                num_classes=num_classes,
                in_channels=settings['embed_dims']))
