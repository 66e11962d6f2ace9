"""Official ELSA-Swin checkpoints (damo-cv/ELSA) -> ``mmext.ELSASwin``.

Reads the ImageNet classifiers of ``cls/`` (timm) and the detection /
segmentation models of ``det/`` and ``seg/`` (their ``backbone.`` keys) or
bare backbones. Besides the names:

* last-stage (Swin) attention: the official qkv rows are ``[v; q; k]``,
  ours ``[q; k; v]``; its relative-position table is ``(heads, L)`` indexed
  by key minus query, ours Swin's ``(L, heads)`` by query minus key (the
  table flipped along ``L`` and transposed);
* patch merging: the official layer concatenates the 2x2 neighbours
  position-major in the order (0,0), (1,0), (0,1), (1,1); mmcv's
  ``PatchMerging`` unfolds channel-major in the order (0,0), (0,1), (1,0),
  (1,1): the norm and the reduction's input columns are permuted;
* the ghost head ``(1, C, K, K)`` becomes ``ghost_add`` ``(C, K, K)``;
  ``(2, 1, C, K, K)`` (lambda != 0) becomes ``ghost_mul`` and ``ghost_add``.

Layouts: ``backbone`` (default) drops the classifier's ``norm`` / ``head``;
the per-stage output norms an ImageNet classifier lacks start fresh, as in
the official fine-tuning. ``classifier`` (``keep_head``): mmpretrain
``ImageClassifier`` with ``ELSASwin(out_indices=(3,))`` (the final ``norm``
is ``norm3``), ``GlobalAveragePooling`` and ``LinearClsHead``.
"""
from typing import List

import torch

from mmext.models.backbones.elsa_swin import ELSASwin
from .base import (ConversionError, Converter, Rule, Transform, count_indexed,
                   fresh_out_norms, with_prefix)
from .registry import register_converter


def _merge_to_unfold(t):
    c4 = t.shape[-1]
    t = t.reshape(*t.shape[:-1], 2, 2, c4 // 4)  # (dx, dy, C)
    n = t.dim()
    t = t.permute(*range(n - 3), n - 1, n - 2, n - 3)  # (C, dy, dx)
    return t.reshape(*t.shape[:-3], c4).contiguous()


def _unfold_to_merge(t):
    c4 = t.shape[-1]
    t = t.reshape(*t.shape[:-1], c4 // 4, 2, 2)  # (C, dy, dx)
    n = t.dim()
    t = t.permute(*range(n - 3), n - 1, n - 2, n - 3)  # (dx, dy, C)
    return t.reshape(*t.shape[:-3], c4).contiguous()


def _rotate_chunks(t, shift):
    chunks = t.chunk(3, dim=0)
    return torch.cat(chunks[shift:] + chunks[:shift], dim=0)


def _ghost_pair(t):
    if t.dim() != 5 or t.shape[:2] != (2, 1):
        return t  # not this rule's shape: a single tensor, rule skipped
    return t[0, 0].clone(), t[1, 0].clone()


def _ghost_single(t):
    if t.dim() != 4 or t.shape[0] != 1:
        raise ConversionError(
            f'unexpected ghost head shape {tuple(t.shape)}; expected '
            '(1, C, K, K) or (2, 1, C, K, K)')
    return t[0].clone()


PATCH_MERGE = Transform(_merge_to_unfold, _unfold_to_merge, 'patch merge')
VQK_TO_QKV = Transform(lambda t: _rotate_chunks(t, 1),
                       lambda t: _rotate_chunks(t, 2), '[v;q;k] -> [q;k;v]')
FLIP_TABLE = Transform(lambda t: t.flip(-1).t().contiguous(),
                       lambda t: t.t().flip(-1).contiguous(),
                       'key-query (heads, L) -> query-key (L, heads)')
GHOST_PAIR = Transform(_ghost_pair,
                       lambda mul, add: torch.stack([mul, add])[:, None],
                       'ghost (2, 1, C, K, K) -> mul, add')
GHOST_SINGLE = Transform(_ghost_single, lambda t: t[None],
                         'ghost (1, C, K, K) -> add')


@register_converter('elsa_swin')
class ELSASwinConverter(Converter):
    backbone = ELSASwin
    signature = ('patch_embed.proj.weight', 'layers.0.blocks.0.norm1.weight')
    drop = (r'.*attn\.relative_id$', r'.*attn_mask$')
    head_keys = (r'norm\.', r'head\.')

    def infer_arch(self, state) -> dict:
        depths, heads, group_width = [], [], None
        for i in range(count_indexed(state, r'layers\.')):
            depths.append(count_indexed(state, rf'layers\.{i}\.blocks\.'))
            p = f'layers.{i}.blocks.0.attn.'
            if p + 'attn.2.weight' in state:
                ks = state[p + 'attn.0.weight'].shape[-1]
                heads.append(
                    int(state[p + 'attn.2.weight'].shape[0] // (ks * ks)))
                group_width = group_width or int(
                    state[p + 'attn.0.weight'].shape[1])
            else:
                heads.append(int(state[p + 'rb'].shape[0]))
        return dict(embed_dims=int(state['patch_embed.proj.weight'].shape[0]),
                    depths=depths,
                    num_heads=heads,
                    group_width=int(group_width or 8))

    def rules(self, settings: dict, keep_head: bool) -> List[Rule]:
        last = len(settings['depths']) - 1
        block = 'layers.{i}.blocks.{j}.'
        ours = 'stages.{i}.blocks.{j}.'
        rules = [
            Rule('patch_embed.proj.', 'patch_embed.projection.'),
            Rule('patch_embed.norm.', 'patch_embed.norm.'),
            Rule('layers.{i}.downsample.norm.', 'stages.{i}.downsample.norm.',
                 PATCH_MERGE),
            Rule('layers.{i}.downsample.reduction.',
                 'stages.{i}.downsample.reduction.', PATCH_MERGE),
            Rule(block + 'norm1.', ours + 'norm1.'),
            Rule(block + 'norm2.', ours + 'norm2.'),
            Rule(block + 'mlp.fc1.', ours + 'ffn.layers.0.0.'),
            Rule(block + 'mlp.fc2.', ours + 'ffn.layers.1.'),
        ]
        swin = f'layers.{last}.blocks.{{j}}.attn.'
        ours_swin = f'stages.{last}.blocks.{{j}}.attn.w_msa.'
        rules += [
            Rule(swin + 'pre_proj.', ours_swin + 'qkv.', VQK_TO_QKV),
            Rule(swin + 'post_proj.', ours_swin + 'proj.'),
            Rule(swin + 'rb', ours_swin + 'relative_position_bias_table',
                 FLIP_TABLE),
        ]
        for i in range(last):
            src = f'layers.{i}.blocks.{{j}}.attn.'
            dst = f'stages.{i}.blocks.{{j}}.attn.'
            rules += [
                Rule(src + 'pre_proj.', dst + 'qkv.'),
                Rule(src + 'attn.0.', dst + 'attn_gen.0.'),
                Rule(src + 'attn.2.', dst + 'attn_gen.2.'),
                Rule(src + 'post_proj.', dst + 'proj.'),
                Rule(src + 'ghost_head',
                     (dst + 'ghost_mul', dst + 'ghost_add'), GHOST_PAIR),
                Rule(src + 'ghost_head', dst + 'ghost_add', GHOST_SINGLE),
            ]
        if not keep_head:
            return rules + [Rule('norm{i}.', 'norm{i}.')]
        return [
            Rule('norm.', f'backbone.norm{last}.'),
            Rule('head.', 'head.fc.')
        ] + with_prefix(rules, 'backbone.')

    def extra_meta(self, state, converted, settings, keep_head) -> dict:
        # lambda itself is not stored: a multiplicative ghost means lam=1
        has_mul = any(k.endswith('attn.ghost_mul') for k in converted)
        has_add = any(k.endswith('attn.ghost_add') for k in converted)
        meta = dict(lam_gamma=(1. if has_mul else 0., 1. if has_add else 0.))
        if not keep_head:
            # an ImageNet classifier has no per-stage output norms: they
            # start fresh, as in the official fine-tuning
            meta['fresh_out_norms'] = fresh_out_norms(
                converted, range(len(settings['depths'])))
        return meta

    def backbone_kwargs(self, meta: dict) -> dict:
        lam, gamma = meta.get('lam_gamma', (0., 1.))
        return dict(elsa_cfg=dict(lam=lam, gamma=gamma))

    def classifier_cfg(self, arch, num_classes: int, meta: dict) -> dict:
        settings = ELSASwin.parse_arch(arch)
        lam, gamma = meta.get('lam_gamma', (0., 1.))
        return dict(type='ImageClassifier',
                    backbone=dict(type='mmext.ELSASwin',
                                  arch=arch,
                                  out_indices=(3, ),
                                  drop_path_rate=0.,
                                  elsa_cfg=dict(lam=lam, gamma=gamma)),
                    neck=dict(type='GlobalAveragePooling'),
                    head=dict(type='LinearClsHead',
                              num_classes=num_classes,
                              in_channels=settings['embed_dims'] *
                              2**(len(settings['depths']) - 1)))
