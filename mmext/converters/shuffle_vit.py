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
from .base import ConversionError, Rule, fresh_out_norms
from .plain_vit import PlainViTConverter
from .registry import register_converter


@register_converter('shuffle_vit')
class ShuffleViTConverter(PlainViTConverter):
    backbone = ShuffleViT
    signature = ('cls_token', 'embed_norm.weight', 'patch_embed.proj.weight',
                 'blocks.0.mlp.fc1.weight')
    out_norms = True

    def vit_rules(self, settings: dict) -> List[Rule]:
        return [
            Rule('embed_norm.', 'embed_norm.'),
            Rule('norm.', 'shared_norm.'),
        ]

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

    def classifier_backbone_kwargs(self, meta: dict) -> dict:
        return dict(img_size=meta.get('img_size', 224))
