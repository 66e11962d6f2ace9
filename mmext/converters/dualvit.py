"""Official Dual-ViT checkpoints (YehLi/ImageNetModel) -> mmext.

Reads the ImageNet classifier (token labelling: class-attention block,
``head``, ``aux_head``) and the detection / segmentation backbones, also
inside a downstream checkpoint (``backbone.`` keys).

* ``backbone`` layout (default): ``mmext.DualViT`` keys (``out_type=
  'featmap'``); the class attention, both heads and the semantic FFN of the
  very last block are dropped.
* ``classifier`` layout (``keep_head``): an mmpretrain ``ImageClassifier``
  with ``DualViT(out_type='tokens')`` and ``mmext.DualViTClsHead``; the last
  stage norm normalises the class-attended tokens, so it is the head's.

Two pairs of projections are fused: ``attn.q`` + ``attn.kv_proxy`` of a dual
block (both read the pixel tokens) into ``attn.pixel_qkv``, and ``attn.q`` +
``attn.kv`` of a merge block into ``attn.qkv``.
"""
from typing import Dict, List

from mmext.models.backbones.dualvit import DualViT
from .base import Converter, Fuse, Rule, count_indexed, with_prefix
from .registry import register_converter

NUM_STAGES = 4

_SEMANTIC_INIT = {
    'q_embed.0.': 'query_norm.',
    'q_embed.1.': 'query_proj.',
    'kv.': 'kv.',
    'proxy_ln.': 'norm.',
    'se.0.': 'gate.0.',
    'se.2.': 'gate.2.',
}
_BLOCK = {
    'norm1.': 'norm1.',
    'norm2.': 'norm2.',
    'gamma1': 'gamma1',
    'gamma2': 'gamma2',
    'mlp.fc1.': 'ffn.fc1.',
    'mlp.fc2.': 'ffn.fc2.',
    'mlp.dwconv.dwconv.': 'ffn.dwconv.',
    'mlp.fc_proxy.0.': 'semantic_ffn.0.',
    'mlp.fc_proxy.2.': 'semantic_ffn.2.',
}
_DUAL_ATTN = {
    'proj.': 'proj.',
    'kv.': 'sem_kv.',
    'proxy_ln.': 'sem_kv_norm.',
    'q_proxy.': 'sem_query.',
    'q_proxy_ln.': 'sem_query_norm.',
    'p_ln.': 'sem_ffn_norm.',
    'mlp_proxy.0.': 'sem_ffn.0.',
    'mlp_proxy.2.': 'sem_ffn.2.',
    'qkv_proxy.0.': 'sem_self_norm.',
    'qkv_proxy.1.': 'sem_self_qkv.',
    'gamma1': 'gamma_self',
    'gamma2': 'gamma_cross',
    'gamma3': 'gamma_ffn',
}
_CLS_BLOCK = {
    'norm1.': 'norm1.',
    'norm2.': 'norm2.',
    'attn.q.': 'q.',
    'attn.kv.': 'kv.',
    'attn.proj.': 'proj.',
    'mlp.fc1.': 'ffn.0.',
    'mlp.fc2.': 'ffn.2.',
}


@register_converter('dualvit')
class DualViTConverter(Converter):
    backbone = DualViT
    signature = ('q', 'patch_embed1.conv.0.weight',
                 'proxy_embed2.proj_proxy.0.weight',
                 'block1.0.attn.q_proxy.weight')
    head_keys = (r'post_network\.', r'head\.', r'aux_head\.')

    def head_key_patterns(self, settings):
        last = settings['depths'][-1] - 1
        return self.head_keys + (
            rf'block{NUM_STAGES}\.{last}\.mlp\.fc_proxy\.', )

    def infer_arch(self, state) -> dict:
        dims = [
            state[f'patch_embed{i + 1}.norm.weight'].shape[0]
            for i in range(NUM_STAGES)
        ]
        depths = [
            count_indexed(state, rf'block{i + 1}\.') for i in range(NUM_STAGES)
        ]
        ratios = []
        for i in range(NUM_STAGES):
            ratio = state[f'block{i + 1}.0.mlp.fc1.weight'].shape[0] / dims[i]
            ratios.append(int(ratio) if ratio == int(ratio) else ratio)
        return dict(stem_width=state['patch_embed1.conv.0.weight'].shape[0],
                    embed_dims=dims,
                    mlp_ratios=ratios,
                    depths=depths)

    def rules(self, settings: dict, keep_head: bool) -> List[Rule]:
        rules = [Rule('q', 'stages.0.semantic_embed.queries')]
        rules += [
            Rule(o, 'stages.0.semantic_embed.' + m)
            for o, m in _SEMANTIC_INIT.items()
        ]
        for idx in (0, 1, 3, 4, 6, 7):  # conv, BN, ReLU per stem layer
            part = 'conv' if idx % 3 == 0 else 'norm'
            rules.append(
                Rule(f'patch_embed1.conv.{idx}.',
                     f'stem.convs.{idx // 3}.{part}.'))
        rules += [
            Rule('patch_embed1.proj.', 'stem.proj.'),
            Rule('patch_embed1.norm.', 'stem.norm.'),
            Rule('patch_embed{s+1}.proj.', 'stages.{s}.downsample.proj.'),
            Rule('patch_embed{s+1}.norm.', 'stages.{s}.downsample.norm.'),
            Rule('proxy_embed{s+1}.proj_proxy.0.',
                 'stages.{s}.semantic_embed.proj.'),
            Rule('proxy_embed{s+1}.proj_proxy.1.',
                 'stages.{s}.semantic_embed.norm.'),
            Rule('norm_proxy{s+1}.', 'stages.{s}.semantic_norm.'),
        ]
        block = 'stages.{s}.blocks.{b}.'
        rules += [
            Rule('block{s+1}.{b}.' + o, block + m) for o, m in _BLOCK.items()
        ]
        for s in range(NUM_STAGES):
            src = f'block{s + 1}.{{b}}.attn.'
            dst = f'stages.{s}.blocks.{{b}}.attn.'
            if s < DualViT.num_dual_stages:
                rules += [
                    Rule(src + 'q.', dst + 'pixel_qkv.', Fuse(0, (1, 2))),
                    Rule(src + 'kv_proxy.', dst + 'pixel_qkv.',
                         Fuse(1, (1, 2)))
                ]
                rules += [
                    Rule(src + o, dst + m) for o, m in _DUAL_ATTN.items()
                ]
            else:
                rules += [
                    Rule(src + 'q.', dst + 'qkv.', Fuse(0, (1, 2))),
                    Rule(src + 'kv.', dst + 'qkv.', Fuse(1, (1, 2))),
                    Rule(src + 'proj.', dst + 'proj.'),
                ]
        if not keep_head:
            return [Rule('norm{s+1}.', 'stages.{s}.norm.')] + rules
        head = [
            Rule(f'norm{NUM_STAGES}.', 'head.norm.'),
            Rule('head.', 'head.fc.'),
            Rule('aux_head.', 'head.aux_fc.'),
        ]
        head += [
            Rule('post_network.0.' + o, 'head.cls_block.' + m)
            for o, m in _CLS_BLOCK.items()
        ]
        norms = Rule('norm{s+1}.', 'stages.{s}.norm.')
        return head + with_prefix([norms] + rules, 'backbone.')

    def classifier_cfg(self, arch, num_classes: int, meta: dict) -> dict:
        settings = DualViT.parse_arch(arch)
        return dict(type='ImageClassifier',
                    backbone=dict(type='mmext.DualViT',
                                  arch=arch,
                                  out_type='tokens',
                                  drop_path_rate=0.),
                    head=dict(type='mmext.DualViTClsHead',
                              num_classes=num_classes,
                              in_channels=settings['embed_dims'][-1],
                              num_heads=settings['num_heads'][-1]))


def classifier_cfg(arch, num_classes: int = 1000) -> Dict:
    """mmpretrain ``ImageClassifier`` config of the official classifier."""
    return DualViTConverter().classifier_cfg(arch, num_classes, {})
