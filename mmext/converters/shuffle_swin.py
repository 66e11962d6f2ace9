"""The Shuffle Swin authors' checkpoints -> ``mmext.ShuffleSwin``.

Reads the ImageNet classifiers of github.com/Ackesnal/Swin-Transformer
(branch ``release``, ``SwinTransformer(shuffle=True)``; ``{'model': ...}``)
or a detector's ``backbone.`` keys. Only names change: the authors' 2x2
gather order is ours, and their relative-position table is Swin's. The
shift masks (``attn_mask`` buffers) are recomputed, not converted.

Layouts: ``backbone`` (default) maps the final ``norm`` to ``norm3`` (the
last stage's output norm) and drops ``head``; the other output norms start
fresh. ``classifier`` (``keep_head``): mmpretrain ``ImageClassifier`` with
``ShuffleSwin(out_indices=(3,))``, ``GlobalAveragePooling`` and
``LinearClsHead``.
"""
import math
from typing import List

from mmext.models.backbones.shuffle_swin import ShuffleSwin
from .base import (ConversionError, Converter, Rule, count_indexed,
                   fresh_out_norms, timm_block_rules, with_prefix)
from .registry import register_converter


@register_converter('shuffle_swin')
class ShuffleSwinConverter(Converter):
    backbone = ShuffleSwin
    signature = ('patch_embed.proj.weight', 'layers.0.blocks.0.norm1.weight',
                 'layers.0.downsample.reduction_1.weight')
    drop = (r'.*attn_mask$', r'.*relative_position_index$')
    head_keys = (r'head\.', )

    def infer_arch(self, state) -> dict:
        depths, heads = [], []
        for i in range(count_indexed(state, r'layers\.')):
            depths.append(count_indexed(state, rf'layers\.{i}\.blocks\.'))
            table = state[f'layers.{i}.blocks.0.attn.'
                          'relative_position_bias_table']
            heads.append(int(table.shape[1]))
        return dict(embed_dims=int(state['patch_embed.proj.weight'].shape[0]),
                    depths=depths, num_heads=heads)

    def rules(self, settings: dict, keep_head: bool) -> List[Rule]:
        last = len(settings['depths']) - 1
        block, ours = 'layers.{i}.blocks.{j}.', 'stages.{i}.blocks.{j}.'
        down, ours_down = 'layers.{i}.downsample.', 'stages.{i}.downsample.'
        rules = [
            Rule('patch_embed.proj.', 'patch_embed.projection.'),
            Rule('patch_embed.norm.', 'patch_embed.norm.'),
            *timm_block_rules(block, ours, attn='attn.w_msa.'),
            Rule(block + 'attn.relative_position_bias_table',
                 ours + 'attn.w_msa.relative_position_bias_table'),
            Rule(down + 'norm_1.', ours_down + 'norms.0.'),
            Rule(down + 'norm_2.', ours_down + 'norms.1.'),
            Rule(down + 'reduction_1.', ours_down + 'reductions.0.'),
            Rule(down + 'reduction_2.', ours_down + 'reductions.1.'),
            Rule('norm.', f'norm{last}.'),
        ]
        if not keep_head:
            return rules + [Rule('norm{i}.', 'norm{i}.')]
        return [Rule('head.', 'head.fc.')] + with_prefix(rules, 'backbone.')

    def extra_meta(self, state, converted, settings, keep_head) -> dict:
        table = state['layers.0.blocks.0.attn.relative_position_bias_table']
        window = (math.isqrt(table.shape[0]) + 1) // 2
        if (2 * window - 1)**2 != table.shape[0]:
            raise ConversionError(
                f'relative position table of {table.shape[0]} rows is not '
                'that of a square window ((2w - 1)**2 rows)')
        meta = dict(
            window_size=window,
            patch_size=int(state['patch_embed.proj.weight'].shape[-1]))
        if not keep_head:
            # a classifier has only the last stage's norm: the others start
            # fresh, as in mmdet's Swin fine-tuning
            meta['fresh_out_norms'] = fresh_out_norms(
                converted, range(len(settings['depths'])))
        return meta

    def backbone_kwargs(self, meta: dict) -> dict:
        return dict(window_size=meta.get('window_size', 7),
                    patch_size=meta.get('patch_size', 4))

    def classifier_cfg(self, arch, num_classes: int, meta: dict) -> dict:
        settings = ShuffleSwin.parse_arch(arch)
        last = len(settings['depths']) - 1
        return dict(
            type='ImageClassifier',
            backbone=dict(
                type='mmext.ShuffleSwin',
                arch=arch,
                patch_size=meta.get('patch_size', 4),
                window_size=meta.get('window_size', 7),
                out_indices=(last, ),
                drop_path_rate=0.),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=num_classes,
                in_channels=settings['embed_dims'] * 2**last))
