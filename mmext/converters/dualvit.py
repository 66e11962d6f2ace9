"""Official Dual-ViT checkpoints (YehLi/ImageNetModel) -> mmext.

Handles the ImageNet classifier (token labeling: class-attention block,
``head``, ``aux_head``) and the bare detection/segmentation backbones, also
inside a downstream checkpoint (``backbone.`` keys).

Layouts written:

* ``backbone`` (default): keys of ``mmext.DualViT`` (dense, ``out_type=
  'featmap'``), loadable with ``init_cfg=dict(type='Pretrained',
  checkpoint=...)``. The classifier-only keys are dropped: the class
  attention, both heads and the semantic FFN of the very last block.
* ``classifier`` (``keep_head=True``): ``backbone.*`` for ``DualViT(
  out_type='tokens')`` and ``head.*`` for ``mmext.DualViTClsHead``: an
  mmpretrain ``ImageClassifier`` checkpoint (``load_from=...``).

Beyond renaming, two pairs of projections are fused: ``attn.q`` +
``attn.kv_proxy`` of a dual block (both read the pixel tokens) into
``attn.pixel_qkv``, and ``attn.q`` + ``attn.kv`` of a merge block into
``attn.qkv``.
"""
import re
from typing import Dict, List, Optional, Tuple

import torch

from .core import ConversionError

Tensor = torch.Tensor
NUM_STAGES = 4
DUAL_STAGES = 2

# official dual-block attention -> ours (fused projections handled apart)
_DUAL_ATTN = {
    'proj': 'proj',
    'kv': 'sem_kv',
    'proxy_ln': 'sem_kv_norm',
    'q_proxy': 'sem_query',
    'q_proxy_ln': 'sem_query_norm',
    'p_ln': 'sem_ffn_norm',
    'mlp_proxy.0': 'sem_ffn.0',
    'mlp_proxy.2': 'sem_ffn.2',
    'qkv_proxy.0': 'sem_self_norm',
    'qkv_proxy.1': 'sem_self_qkv',
    'gamma1': 'gamma_self',
    'gamma2': 'gamma_cross',
    'gamma3': 'gamma_ffn',
}
_FFN = {
    'mlp.fc1': 'ffn.fc1',
    'mlp.fc2': 'ffn.fc2',
    'mlp.dwconv.dwconv': 'ffn.dwconv',
    'mlp.fc_proxy.0': 'semantic_ffn.0',
    'mlp.fc_proxy.2': 'semantic_ffn.2',
}
_SEMANTIC_INIT = {
    'q': 'queries',
    'q_embed.0': 'query_norm',
    'q_embed.1': 'query_proj',
    'kv': 'kv',
    'proxy_ln': 'norm',
    'se.0': 'gate.0',
    'se.2': 'gate.2',
}
_CLS_BLOCK = {
    'norm1': 'norm1',
    'norm2': 'norm2',
    'attn.q': 'q',
    'attn.kv': 'kv',
    'attn.proj': 'proj',
    'mlp.fc1': 'ffn.0',
    'mlp.fc2': 'ffn.2',
}
# keys every official Dual-ViT has: tells it apart from other models
_SIGNATURE = ('q', 'patch_embed1.conv.0.weight', 'proxy_embed2.proj_proxy.0'
              '.weight', 'block1.0.attn.q_proxy.weight')
_HEAD_PREFIXES = ('post_network.', 'head.', 'aux_head.')


def _split_param(key: str) -> Tuple[str, str]:
    """``'a.b.weight'`` -> ``('a.b', 'weight')``; bare parameters such as
    ``q`` or ``block1.0.gamma1`` keep an empty suffix."""
    module, _, leaf = key.rpartition('.')
    if leaf in ('weight', 'bias', 'running_mean', 'running_var',
                'num_batches_tracked'):
        return module, leaf
    return key, ''


def _join(module: str, leaf: str) -> str:
    return f'{module}.{leaf}' if leaf else module


# -- architecture inference ---------------------------------------------------
def _known_archs() -> Dict[str, dict]:
    from mmext.models.backbones.dualvit import DualViT
    return {n: DualViT.parse_arch(n) for n in ('s', 'b', 'l')}


def _official_subset(state: Dict[str, Tensor]) -> Tuple[Dict, List[str]]:
    """The Dual-ViT keys of ``state`` (under ``backbone.`` in downstream
    checkpoints) and the other keys."""
    if all(k in state for k in _SIGNATURE):
        return state, []
    if all('backbone.' + k in state for k in _SIGNATURE):
        inner = {k[9:]: v for k, v in state.items()
                 if k.startswith('backbone.')}
        return inner, [k for k in state if not k.startswith('backbone.')]
    if any(k.startswith(('stages.', 'backbone.stages.')) for k in state):
        raise ConversionError(
            'this checkpoint is already in mmext layout (keys like '
            "'stages.0...'); load it directly, no conversion needed")
    sample = ', '.join(list(state)[:5])
    raise ConversionError(
        'not an official Dual-ViT checkpoint: it lacks '
        f'{[k for k in _SIGNATURE if k not in state]} (first keys: {sample}). '
        'Pass the checkpoint released with YehLi/ImageNetModel, or the '
        'converter of the right family.')


def infer_arch(state: Dict[str, Tensor], arch=None) -> dict:
    """Architecture of an official state dict, from tensor shapes.

    Returns ``{'name': 's'|'b'|'l'|None, 'settings': {...}}``. Heads do not
    change any shape, so ``num_heads`` is only known for the released
    variants; other shapes need ``arch`` (a name or a settings dict), which
    is checked against the shapes.
    """
    state, _ = _official_subset(state)
    try:
        dims = [state[f'patch_embed{i + 1}.norm.weight'].shape[0]
                for i in range(NUM_STAGES)]
        depths = []
        for i in range(NUM_STAGES):
            ids = {int(m.group(1)) for k in state
                   if (m := re.match(rf'block{i + 1}\.(\d+)\.', k))}
            if not ids or ids != set(range(max(ids) + 1)):
                raise ConversionError(
                    f'stage {i + 1} blocks are missing or not numbered '
                    f'0..n-1: {sorted(ids)}')
            depths.append(len(ids))
        ratios = []
        for i in range(NUM_STAGES):
            hidden = state[f'block{i + 1}.0.mlp.fc1.weight'].shape[0]
            ratio = hidden / dims[i]
            ratios.append(int(ratio) if ratio == int(ratio) else ratio)
        found = dict(stem_width=state['patch_embed1.conv.0.weight'].shape[0],
                     embed_dims=dims, mlp_ratios=ratios, depths=depths)
    except KeyError as err:
        raise ConversionError(f'incomplete Dual-ViT checkpoint: no {err}') \
            from None

    known = _known_archs()
    if arch is None:
        for name, settings in known.items():
            if all(settings[k] == v for k, v in found.items()):
                return dict(name=name, settings=settings)
        raise ConversionError(
            f'the shapes {found} match none of the released Dual-ViT '
            f'variants {sorted(known)}; give the architecture explicitly '
            '(--arch with a JSON dict incl. num_heads, or arch=dict(...))')

    from mmext.models.backbones.dualvit import DualViT
    settings = DualViT.parse_arch(arch)  # validates names/keys
    wrong = {k: (settings[k], v) for k, v in found.items()
             if settings[k] != v}
    if wrong:
        raise ConversionError(
            'the checkpoint does not fit the given arch: ' + '; '.join(
                f'{k}: arch {a}, checkpoint {c}'
                for k, (a, c) in wrong.items()))
    name = arch.lower() if isinstance(arch, str) else next(
        (n for n, s in known.items() if s == settings), None)
    if name in known:
        name = {'small': 's', 'base': 'b', 'large': 'l'}.get(name, name)
    return dict(name=name, settings=settings)


# -- key mapping --------------------------------------------------------------
def _map_key(key: str) -> Optional[Tuple[str, int]]:
    """Our name for one official key, as ``(name, fuse_index)``, where
    ``fuse_index`` orders the parts of a fused projection (-1: not fused).
    None for a key we do not know."""
    module, leaf = _split_param(key)
    if module in _SEMANTIC_INIT:
        return _join('stages.0.semantic_embed.' + _SEMANTIC_INIT[module],
                     leaf), -1
    m = re.fullmatch(r'patch_embed1\.conv\.(\d)', module)
    if m and int(m.group(1)) in (0, 1, 3, 4, 6, 7):
        idx = int(m.group(1))
        part = 'conv' if idx % 3 == 0 else 'norm'
        return _join(f'stem.convs.{idx // 3}.{part}', leaf), -1
    m = re.fullmatch(r'patch_embed(\d)\.(proj|norm)', module)
    if m:
        stage = int(m.group(1)) - 1
        where = 'stem' if stage == 0 else f'stages.{stage}.downsample'
        return _join(f'{where}.{m.group(2)}', leaf), -1
    m = re.fullmatch(r'proxy_embed(\d)\.proj_proxy\.([01])', module)
    if m:
        part = ('proj', 'norm')[int(m.group(2))]
        return _join(f'stages.{int(m.group(1)) - 1}.semantic_embed.{part}',
                     leaf), -1
    m = re.fullmatch(r'norm(\d)', module)
    if m:
        return _join(f'stages.{int(m.group(1)) - 1}.norm', leaf), -1
    m = re.fullmatch(r'norm_proxy(\d)', module)
    if m:
        return _join(f'stages.{int(m.group(1)) - 1}.semantic_norm', leaf), -1
    m = re.fullmatch(r'block(\d)\.(\d+)\.(.+)', module)
    if m:
        stage, block, rest = int(m.group(1)) - 1, int(m.group(2)), m.group(3)
        prefix = f'stages.{stage}.blocks.{block}.'
        if rest in ('norm1', 'norm2', 'gamma1', 'gamma2'):
            return _join(prefix + rest, leaf), -1
        if rest in _FFN:
            return _join(prefix + _FFN[rest], leaf), -1
        if stage < DUAL_STAGES:
            if rest == 'attn.q':
                return _join(prefix + 'attn.pixel_qkv', leaf), 0
            if rest == 'attn.kv_proxy':
                return _join(prefix + 'attn.pixel_qkv', leaf), 1
            attn = rest[5:] if rest.startswith('attn.') else None
            if attn in _DUAL_ATTN:
                return _join(prefix + 'attn.' + _DUAL_ATTN[attn], leaf), -1
        else:
            if rest in ('attn.q', 'attn.kv'):
                return _join(prefix + 'attn.qkv', leaf), \
                    int(rest == 'attn.kv')
            if rest == 'attn.proj':
                return _join(prefix + 'attn.proj', leaf), -1
        return None
    m = re.fullmatch(r'post_network\.0\.(.+)', module)
    if m and m.group(1) in _CLS_BLOCK:
        return _join('head.cls_block.' + _CLS_BLOCK[m.group(1)], leaf), -1
    if module in ('head', 'aux_head'):
        return _join('head.' + ('fc' if module == 'head' else 'aux_fc'),
                     leaf), -1
    return None


def _is_classifier_only(key: str, last_block: int) -> bool:
    return key.startswith(_HEAD_PREFIXES) or key.startswith(
        f'block{NUM_STAGES}.{last_block}.mlp.fc_proxy.')


def convert(state: Dict[str, Tensor], keep_head: bool = False,
            arch=None) -> Tuple[Dict[str, Tensor], dict, List[str]]:
    """Official state dict -> ``(mmext state dict, meta, dropped keys)``.

    See the module docstring for the two layouts.
    """
    official, dropped = _official_subset(state)
    info = infer_arch(official, arch)
    last_block = info['settings']['depths'][-1] - 1
    has_head = any(k.startswith(_HEAD_PREFIXES) for k in official)
    if keep_head and not has_head:
        raise ConversionError(
            'keep_head: this checkpoint has no classifier head (it is a '
            'detection/segmentation backbone); convert without --keep-head')
    if keep_head and f'block4.{last_block}.mlp.fc_proxy.0.weight' \
            not in official:
        raise ConversionError('keep_head: the last block has no semantic '
                              'FFN (mlp.fc_proxy), so this is not the '
                              'official classifier')

    unknown, parts = [], {}
    for key, value in official.items():
        if not keep_head and _is_classifier_only(key, last_block):
            dropped.append(key)
            continue
        mapped = _map_key(key)
        if mapped is None:
            unknown.append(key)
            continue
        name, index = mapped
        if keep_head:
            # the official classifier normalises the class-attended tokens
            # with its last stage norm: in our layout that norm is the head's
            name = 'head.norm' + name[len('stages.3.norm'):] \
                if name.startswith('stages.3.norm.') else name
            name = name if name.startswith('head.') else 'backbone.' + name
        parts.setdefault(name, {})[index] = value
    if unknown:
        raise ConversionError(
            f'{len(unknown)} key(s) of no known Dual-ViT layer, e.g. '
            f'{unknown[:5]}: the checkpoint is from a modified model; '
            'refusing to guess')

    new_state = {}
    for name, pieces in parts.items():
        if -1 in pieces:
            new_state[name] = pieces[-1]
        elif sorted(pieces) == [0, 1]:
            new_state[name] = torch.cat([pieces[0], pieces[1]], dim=0)
        else:
            raise ConversionError(f'{name}: found only part of a fused '
                                  f'projection ({sorted(pieces)})')

    settings = info['settings']
    meta = dict(
        converter='dualvit',
        arch=info['name'],
        arch_settings=settings,
        layout='classifier' if keep_head else 'backbone')
    if keep_head:
        num_classes = official['head.weight'].shape[0]
        meta['num_classes'] = num_classes
        meta['model_cfg'] = classifier_cfg(info['name'] or settings,
                                           num_classes)
    return new_state, meta, dropped


def classifier_cfg(arch, num_classes: int = 1000) -> dict:
    """mmpretrain ``ImageClassifier`` config of the official classifier."""
    from mmext.models.backbones.dualvit import DualViT
    settings = DualViT.parse_arch(arch)
    return dict(
        type='ImageClassifier',
        backbone=dict(type='mmext.DualViT', arch=arch, out_type='tokens',
                      drop_path_rate=0.),
        head=dict(
            type='mmext.DualViTClsHead',
            num_classes=num_classes,
            in_channels=settings['embed_dims'][-1],
            num_heads=settings['num_heads'][-1]))


def build_model(meta: dict):
    """The module(s) a converted state dict is meant for: the backbone, or
    ``nn.ModuleDict(backbone=..., head=...)`` for the classifier layout."""
    import torch.nn as nn

    from mmext.models.backbones.dualvit import DualViT
    arch = meta['arch'] or meta['arch_settings']
    if meta['layout'] == 'backbone':
        return DualViT(arch=arch)
    from mmext.models.heads.dualvit_head import DualViTClsHead
    cfg = classifier_cfg(arch, meta['num_classes'])
    head_cfg = {k: v for k, v in cfg['head'].items() if k != 'type'}
    return nn.ModuleDict(
        dict(backbone=DualViT(arch=arch, out_type='tokens'),
             head=DualViTClsHead(**head_cfg)))


def verify(new_state: Dict[str, Tensor], meta: dict) -> None:
    """Check that ``new_state`` loads strictly into the architecture of
    ``meta``: same keys, same shapes (the model is built on the meta device,
    so this costs no memory or init time). Raises ConversionError."""
    with torch.device('meta'):
        model = build_model(meta)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = sorted(expected.keys() - new_state.keys())
    unexpected = sorted(new_state.keys() - expected.keys())
    wrong = [f'{k} {tuple(v.shape)} vs {tuple(expected[k])}'
             for k, v in new_state.items()
             if k in expected and v.shape != expected[k]]
    problems = [f'{what} {keys[:8]}' for what, keys in
                (('missing', missing), ('unexpected', unexpected),
                 ('shape mismatch', wrong)) if keys]
    if problems:
        raise ConversionError('converted checkpoint does not match DualViT '
                              f'arch {meta["arch"] or meta["arch_settings"]}'
                              f' ({meta["layout"]}): ' + '; '.join(problems))
