"""Convert official ELSA-Swin checkpoints (damo-cv/ELSA) to ``mmext.ELSASwin``.

Accepted inputs:

* ImageNet classifiers from ``cls/`` (timm checkpoints: a ``state_dict`` /
  ``state_dict_ema`` / ``model`` entry or a bare state dict, keys possibly
  prefixed by ``module.``);
* detection / segmentation models from ``det/`` and ``seg/`` (mmcv 1.x
  checkpoints; the backbone is taken from keys under ``backbone.``) or their
  bare backbones.

What changes besides the names:

* last-stage (Swin) attention: the official qkv projection stores its rows as
  ``[v; q; k]``; ours is ``[q; k; v]``;
* its relative-position table is ``(num_heads, L)`` indexed by key minus
  query; ours is Swin's ``(L, num_heads)`` indexed by query minus key, i.e.
  the table is flipped along ``L`` and transposed;
* patch merging: the official layer concatenates the 2x2 neighbours
  position-major in the order (0,0), (1,0), (0,1), (1,1); mmcv's
  ``PatchMerging`` unfolds channel-major in the order (0,0), (0,1), (1,0),
  (1,1), so the norm and the reduction's input columns are permuted;
* the ghost head ``(1, C, K, K)`` becomes ``ghost_add`` ``(C, K, K)``
  (``(2, 1, C, K, K)``, from models trained with lambda != 0, is split into
  ``ghost_mul`` and ``ghost_add``).

Layouts written (``convert(..., keep_head=...)``):

* ``backbone`` (default): bare ``mmext.ELSASwin`` keys for
  ``init_cfg=dict(type='Pretrained', checkpoint=...)``. The classifier's
  final ``norm`` and ``head`` are dropped and the per-stage output norms
  (``norm0..3``), which an ImageNet classifier does not have, start fresh:
  exactly what the official detection / segmentation code does when it
  starts from an ImageNet checkpoint. Downstream backbones keep their norms.
* ``classifier`` (``keep_head=True``): ``backbone.*`` for
  ``ELSASwin(out_indices=(3,))`` (the final ``norm`` is ``norm3``) and
  ``head.fc.*`` for mmpretrain's ``LinearClsHead`` after
  ``GlobalAveragePooling``: an mmpretrain ``ImageClassifier`` checkpoint.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from .core import ConversionError

FAMILY = 'elsa_swin'
ARCHS = {
    't': dict(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
              group_width=4),
    's': dict(embed_dims=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24],
              group_width=8),
    'b': dict(embed_dims=128, depths=[2, 2, 18, 2],
              num_heads=[4, 8, 16, 32], group_width=8),
}  # yapf: disable

__all__ = [
    'convert', 'verify', 'infer_arch', 'infer_variant', 'to_official',
    'extract_state_dict', 'is_official', 'classifier_cfg', 'FAMILY', 'ARCHS'
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _unwrap(ckpt: Mapping, ema: bool = False) -> Dict[str, Tensor]:
    """The flat tensor dict of a checkpoint (timm, mmcv or bare), without
    ``module.`` prefixes."""
    if not isinstance(ckpt, Mapping):
        raise ConversionError(
            f'expected a checkpoint dict, got {type(ckpt).__name__}')
    keys = ['state_dict_ema'] if ema else ['state_dict', 'model']
    for key in keys:
        if isinstance(ckpt.get(key), Mapping):
            sd = ckpt[key]
            break
    else:
        if ema:
            raise ConversionError(
                'ema=True but the checkpoint has no "state_dict_ema" entry '
                f'(top-level keys: {sorted(ckpt)[:10]})')
        sd = ckpt
    sd = {k: v for k, v in sd.items() if torch.is_tensor(v)}
    if not sd:
        raise ConversionError(
            'no tensors found in the checkpoint (top-level keys: '
            f'{sorted(ckpt)[:10]}); is it a model checkpoint?')
    return {(k[len('module.'):] if k.startswith('module.') else k): v
            for k, v in sd.items()}


def _split_backbone(sd: Dict[str, Tensor]):
    """``(backbone keys without the prefix, other keys)`` of a detection /
    segmentation model; ``(sd, [])`` for a bare model."""
    if any(k.startswith('backbone.') for k in sd):
        inner = {k[len('backbone.'):]: v for k, v in sd.items()
                 if k.startswith('backbone.')}
        return inner, [k for k in sd if not k.startswith('backbone.')]
    return sd, []


def extract_state_dict(ckpt: Mapping, ema: bool = False) -> Dict[str, Tensor]:
    """The (bare) ELSA-Swin state dict inside a checkpoint: unwrapped from
    ``state_dict`` / ``model`` (or timm's ``state_dict_ema`` with ``ema``),
    ``module.`` prefixes removed, and only the ``backbone.`` keys (prefix
    removed) of a detection / segmentation model."""
    return _split_backbone(_unwrap(ckpt, ema=ema))[0]


def is_official(state_dict: Mapping) -> bool:
    """True if the (bare) state dict uses the official ELSA-Swin names."""
    return 'patch_embed.proj.weight' in state_dict and any(
        k.startswith('layers.') for k in state_dict)


def _merge_official_to_unfold(t: Tensor) -> Tensor:
    """Permute the last dim (4C) from the official 2x2 concat order to
    mmcv's unfold order."""
    c4 = t.shape[-1]
    t = t.reshape(*t.shape[:-1], 2, 2, c4 // 4)  # (dx, dy, C)
    n = t.dim()
    t = t.permute(*range(n - 3), n - 1, n - 2, n - 3)  # (C, dy, dx)
    return t.reshape(*t.shape[:-3], c4).contiguous()


def _merge_unfold_to_official(t: Tensor) -> Tensor:
    c4 = t.shape[-1]
    t = t.reshape(*t.shape[:-1], c4 // 4, 2, 2)  # (C, dy, dx)
    n = t.dim()
    t = t.permute(*range(n - 3), n - 1, n - 2, n - 3)  # (dx, dy, C)
    return t.reshape(*t.shape[:-3], c4).contiguous()


def _vqk_to_qkv(t: Tensor) -> Tensor:
    v, q, k = t.chunk(3, dim=0)
    return torch.cat([q, k, v], dim=0)


def _qkv_to_vqk(t: Tensor) -> Tensor:
    q, k, v = t.chunk(3, dim=0)
    return torch.cat([v, q, k], dim=0)


def _flip_table(t: Tensor) -> Tensor:
    """Official ``(heads, L)`` (key - query) -> Swin ``(L, heads)``
    (query - key). Negating the offset reverses the flattened table."""
    return t.flip(-1).t().contiguous()


def _unflip_table(t: Tensor) -> Tensor:
    return t.t().flip(-1).contiguous()


def _num_stages(sd: Mapping, prefix: str) -> int:
    ids = {int(m.group(1)) for k in sd
           for m in [re.match(rf'{prefix}(\d+)\.', k)] if m}
    if not ids:
        raise ConversionError(f'no "{prefix}N." keys found')
    return max(ids) + 1


# --------------------------------------------------------------------------
# official -> mmext
# --------------------------------------------------------------------------
_BLOCK_COMMON = {
    'norm1': 'norm1',
    'norm2': 'norm2',
    'mlp.fc1': 'ffn.layers.0.0',
    'mlp.fc2': 'ffn.layers.1',
}
_ELSA_ATTN = {
    'attn.pre_proj': 'attn.qkv',
    'attn.attn.0': 'attn.attn_gen.0',
    'attn.attn.2': 'attn.attn_gen.2',
    'attn.post_proj': 'attn.proj',
}
_SWIN_ATTN = {
    'attn.pre_proj': 'attn.w_msa.qkv',
    'attn.post_proj': 'attn.w_msa.proj',
}
# buffers of the official model that are recomputed here
_DROP_SUFFIXES = ('attn.relative_id', 'attn_mask')
_HEAD_PREFIXES = ('norm.', 'head.')


def _official_subset(state: Mapping) -> Tuple[Dict[str, Tensor], List[str]]:
    """The backbone keys of an official checkpoint (bare, or under
    ``backbone.`` in a detection/segmentation model) and the other keys."""
    sd, dropped = _split_backbone(_unwrap(state))
    if any(k.startswith('stages.') for k in sd) or \
            'patch_embed.projection.weight' in sd:
        raise ConversionError(
            'this checkpoint is already in mmext ELSASwin layout (keys like '
            "'stages.0...'); load it directly, no conversion needed")
    if not is_official(sd):
        raise ConversionError(
            'not an official ELSA-Swin checkpoint: expected keys '
            '"patch_embed.proj.weight" and "layers.N.blocks.M...", got e.g. '
            f'{sorted(sd)[:5]}. Pass the damo-cv/ELSA classification, '
            'detection or segmentation checkpoint, or the converter of the '
            'right family.')
    return sd, dropped


def convert(state_dict: Mapping,
            keep_head: bool = False,
            arch=None) -> Tuple[Dict[str, Tensor], dict, List[str]]:
    """Official state dict -> ``(mmext state dict, meta, dropped keys)``.

    Args:
        state_dict: an official state dict (see the module docstring).
        keep_head (bool): write the ``classifier`` layout: ``backbone.*``
            for ``ELSASwin(out_indices=(3,))`` (the final ``norm`` becomes
            ``norm3``) and ``head.fc.*`` for mmpretrain's ``LinearClsHead``
            (after ``GlobalAveragePooling``): an mmpretrain ImageClassifier
            checkpoint. Default: the ``backbone`` layout (bare keys).
        arch: a variant name or settings dict to check the shapes against;
            inferred when None.
    """
    sd, dropped = _official_subset(state_dict)
    info = infer_arch(sd, arch)
    last = len(info['settings']['depths']) - 1
    has_head = 'head.weight' in sd and 'norm.weight' in sd
    if keep_head and not has_head:
        raise ConversionError(
            'keep_head: this checkpoint has no classifier ("norm.*" and '
            '"head.*"); it is a detection/segmentation backbone. Convert '
            'without --keep-head.')
    out = {}
    unknown = []
    for key, val in sd.items():
        if key.endswith(_DROP_SUFFIXES):
            continue
        if key.startswith(_HEAD_PREFIXES):
            if not keep_head:
                dropped.append(key)
            elif key.startswith('norm.'):
                out[f'norm{last}.' + key[len('norm.'):]] = val
            else:
                out['head.fc.' + key[len('head.'):]] = val
            continue
        if key.startswith('patch_embed.'):
            out[key.replace('patch_embed.proj.',
                            'patch_embed.projection.')] = val
            continue
        if re.match(r'norm\d+\.', key):
            if keep_head:  # per-stage norms of a downstream backbone
                dropped.append(key)
            else:
                out[key] = val
            continue
        m = re.match(r'layers\.(\d+)\.downsample\.(norm|reduction)\.(\w+)$',
                     key)
        if m:
            i, part, name = m.groups()
            new = f'stages.{i}.downsample.{part}.{name}'
            out[new] = _merge_official_to_unfold(val)
            continue
        m = re.match(r'layers\.(\d+)\.blocks\.(\d+)\.(.+)$', key)
        if not m:
            unknown.append(key)
            continue
        i, j, rest = int(m.group(1)), m.group(2), m.group(3)
        prefix = f'stages.{i}.blocks.{j}.'
        module, _, name = rest.rpartition('.')
        if module in _BLOCK_COMMON:
            out[prefix + f'{_BLOCK_COMMON[module]}.{name}'] = val
        elif i == last and module in _SWIN_ATTN:
            if module == 'attn.pre_proj':
                val = _vqk_to_qkv(val)
            out[prefix + f'{_SWIN_ATTN[module]}.{name}'] = val
        elif i == last and rest == 'attn.rb':
            out[prefix + 'attn.w_msa.relative_position_bias_table'] = \
                _flip_table(val)
        elif i != last and module in _ELSA_ATTN:
            out[prefix + f'{_ELSA_ATTN[module]}.{name}'] = val
        elif i != last and rest == 'attn.ghost_head':
            if val.dim() == 5 and val.shape[0] == 2:
                out[prefix + 'attn.ghost_mul'] = val[0, 0].clone()
                out[prefix + 'attn.ghost_add'] = val[1, 0].clone()
            elif val.dim() == 4 and val.shape[0] == 1:
                out[prefix + 'attn.ghost_add'] = val[0].clone()
            else:
                raise ConversionError(
                    f'{key}: unexpected ghost head shape {tuple(val.shape)}; '
                    'expected (1, C, K, K) or (2, 1, C, K, K)')
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(
            f'{len(unknown)} key(s) of no known ELSA-Swin layer, e.g. '
            f'{unknown[:5]}: the checkpoint is from a modified model; '
            'refusing to guess')
    if keep_head:
        out = {(k if k.startswith('head.') else 'backbone.' + k): v
               for k, v in out.items()}
    settings = info['settings']
    meta = dict(
        converter=FAMILY,
        arch=info['name'],
        arch_settings=settings,
        layout='classifier' if keep_head else 'backbone',
        lam_gamma=_lam_gamma(out))
    if not keep_head:
        missing_norms = [f'norm{i}' for i in range(last + 1)
                         if f'norm{i}.weight' not in out]
        # An ImageNet classifier has no per-stage output norms: they start
        # fresh, as in the official detection/segmentation fine-tuning.
        meta['fresh_out_norms'] = missing_norms
    else:
        meta['num_classes'] = int(sd['head.weight'].shape[0])
        meta['model_cfg'] = classifier_cfg(info['name'] or settings,
                                           meta['num_classes'])
    return out, meta, dropped


def _lam_gamma(state: Mapping) -> Tuple[float, float]:
    """(lam, gamma) the converted ghost heads need: ``lam=1`` where a
    multiplicative ghost matrix exists (the official lambda is not stored;
    the released models all use lam=0, gamma=1)."""
    has_mul = any(k.endswith('attn.ghost_mul') for k in state)
    has_add = any(k.endswith('attn.ghost_add') for k in state)
    return (1. if has_mul else 0., 1. if has_add else 0.)


def classifier_cfg(arch, num_classes: int = 1000) -> dict:
    """mmpretrain ``ImageClassifier`` config of the official classifier."""
    from mmext.models.backbones.elsa_swin import ELSASwin
    settings = ELSASwin._parse_arch(arch)
    return dict(
        type='ImageClassifier',
        backbone=dict(type='mmext.ELSASwin', arch=arch, out_indices=(3, ),
                      drop_path_rate=0.),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=num_classes,
            in_channels=settings['embed_dims'] *
            2**(len(settings['depths']) - 1)))


def build_model(meta: dict):
    """The module(s) a converted state dict is meant for: the backbone, or
    ``nn.ModuleDict(backbone=..., head=ModuleDict(fc=Linear))`` for the
    classifier layout."""
    import torch.nn as nn

    from mmext.models.backbones.elsa_swin import ELSASwin
    arch = meta['arch'] or meta['arch_settings']
    lam, gamma = meta.get('lam_gamma', (0., 1.))
    if meta['layout'] == 'backbone':
        return ELSASwin(arch=arch, lam=lam, gamma=gamma)
    head = classifier_cfg(arch, meta['num_classes'])['head']
    return nn.ModuleDict(
        dict(
            backbone=ELSASwin(
                arch=arch, out_indices=(3, ), lam=lam, gamma=gamma),
            head=nn.ModuleDict(
                dict(fc=nn.Linear(head['in_channels'],
                                  head['num_classes'])))))


def verify(new_state: Mapping, meta: dict) -> None:
    """Check that ``new_state`` loads into the architecture of ``meta``:
    same keys and shapes (built on the meta device: no memory, no init).
    Only the per-stage output norms of a backbone made from an ImageNet
    classifier may be missing (see ``meta['fresh_out_norms']``)."""
    with torch.device('meta'):
        model = build_model(meta)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    fresh = tuple(n + '.' for n in meta.get('fresh_out_norms', ()))
    missing = sorted(k for k in expected.keys() - new_state.keys()
                     if not k.startswith(fresh))
    unexpected = sorted(new_state.keys() - expected.keys())
    wrong = [f'{k} {tuple(v.shape)} vs {tuple(expected[k])}'
             for k, v in new_state.items()
             if k in expected and v.shape != expected[k]]
    problems = [f'{what} {keys[:8]}' for what, keys in
                (('missing', missing), ('unexpected', unexpected),
                 ('shape mismatch', wrong)) if keys]
    if problems:
        raise ConversionError(
            'converted checkpoint does not match ELSASwin arch '
            f'{meta["arch"] or meta["arch_settings"]} ({meta["layout"]}): ' +
            '; '.join(problems))


# --------------------------------------------------------------------------
# mmext -> official (used by tests and for exporting)
# --------------------------------------------------------------------------
def to_official(state_dict: Mapping) -> 'OrderedDict[str, Tensor]':
    """Inverse of :func:`convert` for a bare backbone state dict: returns the
    official detection-backbone layout (``norm{i}`` kept; no ``norm`` /
    ``head``; the ``relative_id`` buffers are not recreated)."""
    sd = dict(state_dict)
    num_stages = _num_stages(sd, 'stages.')
    last = num_stages - 1
    out = OrderedDict()
    inv_common = {v: k for k, v in _BLOCK_COMMON.items()}
    inv_elsa = {v: k for k, v in _ELSA_ATTN.items()}
    inv_swin = {v: k for k, v in _SWIN_ATTN.items()}
    pending_ghost = {}
    for key, val in sd.items():
        if key.startswith('patch_embed.'):
            out[key.replace('patch_embed.projection.',
                            'patch_embed.proj.')] = val
            continue
        if re.match(r'norm\d+\.', key):
            out[key] = val
            continue
        m = re.match(r'stages\.(\d+)\.downsample\.(norm|reduction)\.(\w+)$',
                     key)
        if m:
            i, part, name = m.groups()
            out[f'layers.{i}.downsample.{part}.{name}'] = \
                _merge_unfold_to_official(val)
            continue
        m = re.match(r'stages\.(\d+)\.blocks\.(\d+)\.(.+)$', key)
        if not m:
            raise ConversionError(f'unexpected key {key!r}')
        i, j, rest = int(m.group(1)), m.group(2), m.group(3)
        prefix = f'layers.{i}.blocks.{j}.'
        module, _, name = rest.rpartition('.')
        if module in inv_common:
            out[prefix + f'{inv_common[module]}.{name}'] = val
        elif i == last and module in inv_swin:
            if module == 'attn.w_msa.qkv':
                val = _qkv_to_vqk(val)
            out[prefix + f'{inv_swin[module]}.{name}'] = val
        elif rest == 'attn.w_msa.relative_position_bias_table':
            out[prefix + 'attn.rb'] = _unflip_table(val)
        elif module in inv_elsa:
            out[prefix + f'{inv_elsa[module]}.{name}'] = val
        elif rest in ('attn.ghost_add', 'attn.ghost_mul'):
            pending_ghost.setdefault(prefix, {})[rest] = val
        else:
            raise ConversionError(f'unexpected key {key!r}')
    for prefix, g in pending_ghost.items():
        if 'attn.ghost_mul' in g and 'attn.ghost_add' in g:
            out[prefix + 'attn.ghost_head'] = torch.stack(
                [g['attn.ghost_mul'], g['attn.ghost_add']])[:, None]
        else:
            (only, ) = g.values()
            out[prefix + 'attn.ghost_head'] = only[None]
    return out


# --------------------------------------------------------------------------
# variant inference
# --------------------------------------------------------------------------
def _shape_arch(sd: Mapping) -> Dict:
    """``dict(embed_dims, depths, num_heads, group_width)`` read from the
    shapes of an official or already-converted (bare) state dict."""
    official = is_official(sd)
    if official:
        stage_pre, embed_key = 'layers.', 'patch_embed.proj.weight'
        gen0, gen2, table = ('attn.attn.0.weight', 'attn.attn.2.weight',
                             'attn.rb')
    else:
        stage_pre, embed_key = 'stages.', 'patch_embed.projection.weight'
        gen0, gen2, table = ('attn.attn_gen.0.weight',
                             'attn.attn_gen.2.weight',
                             'attn.w_msa.relative_position_bias_table')
    if embed_key not in sd:
        raise ConversionError(
            f'cannot infer the ELSA-Swin variant: "{embed_key}" missing')
    num_stages = _num_stages(sd, stage_pre)
    depths, heads, group_width = [], [], None
    for i in range(num_stages):
        blocks = {
            int(m.group(1))
            for k in sd
            for m in [re.match(rf'{stage_pre}{i}\.blocks\.(\d+)\.', k)] if m
        }
        if not blocks or blocks != set(range(max(blocks) + 1)):
            raise ConversionError(
                f'stage {i} blocks are missing or not numbered 0..n-1: '
                f'{sorted(blocks)}')
        depths.append(len(blocks))
        p = f'{stage_pre}{i}.blocks.0.'
        if p + gen2 in sd:
            ks = sd[p + gen0].shape[-1]
            heads.append(int(sd[p + gen2].shape[0] // (ks * ks)))
            group_width = group_width or int(sd[p + gen0].shape[1])
        elif p + table in sd:
            t = sd[p + table]
            heads.append(int(t.shape[0] if official else t.shape[1]))
        else:
            raise ConversionError(f'cannot infer the heads of stage {i}')
    return dict(
        embed_dims=int(sd[embed_key].shape[0]),
        depths=depths,
        num_heads=heads,
        group_width=int(group_width or 8))


def infer_arch(state_dict: Mapping, arch=None) -> dict:
    """Architecture of an ELSA-Swin state dict, from tensor shapes.

    Returns ``{'name': 't'|'s'|'b'|None, 'settings': {...}}``. ``arch`` (a
    name or settings dict), if given, is checked against the shapes.
    """
    sd = extract_state_dict(state_dict)
    found = _shape_arch(sd)
    if arch is None:
        for name, ref in ARCHS.items():
            if ref == found:
                return dict(name=name, settings=dict(ref))
        return dict(name=None, settings=found)
    from mmext.models.backbones.elsa_swin import ELSASwin
    try:
        settings = ELSASwin._parse_arch(arch)
    except (ValueError, TypeError) as err:
        raise ConversionError(str(err)) from None
    settings = {k: (list(v) if isinstance(v, (list, tuple)) else v)
                for k, v in settings.items()}
    wrong = {k: (settings[k], v) for k, v in found.items()
             if settings[k] != v}
    if wrong:
        raise ConversionError(
            'the checkpoint does not fit the given arch: ' + '; '.join(
                f'{k}: arch {a}, checkpoint {c}'
                for k, (a, c) in wrong.items()))
    name = next((n for n, ref in ARCHS.items() if ref == settings), None)
    return dict(name=name, settings=settings)


def infer_variant(state_dict: Mapping) -> Tuple[Optional[str], Dict]:
    """``(name, settings)`` of a state dict; ``name`` is None for custom
    shapes (use ``settings`` as ``ELSASwin(arch=...)``)."""
    info = infer_arch(state_dict)
    return info['name'], info['settings']
