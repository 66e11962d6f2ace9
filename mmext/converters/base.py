"""The converter contract: a family declares, the base does the rest.

A family subclasses :class:`Converter`, registers it with
:func:`~mmext.converters.registry.register_converter` and declares

* ``backbone``: the backbone class (its ``arch_zoo`` names the variants);
* ``signature``: official keys every checkpoint of the family has;
* :meth:`Converter.infer_arch`: the settings readable from tensor shapes;
* :meth:`Converter.rules`: :class:`Rule` s renaming official keys (templates
  with indices such as ``'block{s+1}.{b}.'``), each with an optional
  invertible tensor :class:`Transform`; several rules may fuse into one
  tensor (:class:`Fuse`).

The base unwraps the file (``model`` / ``state_dict``, ``module.`` and a
detector's ``backbone.``), refuses already-converted and foreign files,
infers and checks the arch against the zoo, renames, builds the target on
the meta device and checks that every key and shape fits, and derives the
inverse renaming (:meth:`Converter.to_official`) that the tests use.
"""
import re
from typing import (Callable, Dict, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import torch
import torch.nn as nn
from torch import Tensor

from mmext.errors import ConversionError  # noqa: F401
from mmext.utils.checkpoint import state_dict_from


class Transform:
    """An invertible change of one tensor (or of a tuple of tensors when a
    rule has several targets)."""

    def __init__(self, forward: Callable, inverse: Callable, name: str = ''):
        self.forward, self.inverse, self.name = forward, inverse, name

    def __repr__(self):
        return f'Transform({self.name})'


class Fuse(Transform):
    """Part ``index`` of a target concatenated along dim 0 from parts of
    relative sizes ``shares`` (e.g. q + kv -> qkv: ``shares=(1, 2)``)."""

    def __init__(self, index: int, shares: Sequence[int]):
        self.index, self.shares = index, tuple(shares)
        super().__init__(lambda t: t, lambda t: t, f'fuse {index}/{shares}')

    def split(self, tensor: Tensor) -> Tensor:
        unit = tensor.shape[0] // sum(self.shares)
        sizes = [unit * s for s in self.shares]
        return tensor.split(sizes, dim=0)[self.index]


class Rule(NamedTuple):
    """``official`` -> ``mmext`` key template (one or a tuple of targets).

    Templates hold literal text and indices ``{name}``, ``{name+k}`` or
    ``{name-k}``. A template ending in ``.`` matches a module: the key is the
    template plus one parameter or buffer name (kept as it is); otherwise
    the template matches the whole key.
    """
    official: str
    mmext: Union[str, Tuple[str, ...]]
    transform: Optional[Transform] = None


_PLACEHOLDER = re.compile(r'\{(\w+)([+-]\d+)?\}')


def _compile(template: str) -> Tuple['re.Pattern', Dict[str, int]]:
    """Regex of a template and the offset of each index (value in the key
    minus the index's value)."""
    regex, offsets, pos = '', {}, 0
    for m in _PLACEHOLDER.finditer(template):
        regex += re.escape(template[pos:m.start()])
        name = m.group(1)
        offsets[name] = int(m.group(2) or 0)
        regex += rf'(?P<{name}>\d+)'
        pos = m.end()
    regex += re.escape(template[pos:])
    return re.compile(regex), offsets


def _match(template: str, key: str) -> Optional[Tuple[Dict[str, int], str]]:
    """The index values and the remainder of ``key`` under ``template``."""
    pattern, offsets = _compile(template)
    m = pattern.match(key) if template.endswith('.') else \
        pattern.fullmatch(key)
    if m is None or not re.fullmatch(r'\w*', key[m.end():]):
        return None
    values = {n: int(v) - offsets[n] for n, v in m.groupdict().items()}
    return values, key[m.end():]


def _fill(template: str, values: Dict[str, int], rest: str) -> str:
    return _PLACEHOLDER.sub(
        lambda m: str(values[m.group(1)] + int(m.group(2) or 0)),
        template) + rest


def _targets(rule: Rule) -> Tuple[str, ...]:
    return rule.mmext if isinstance(rule.mmext, tuple) else (rule.mmext, )


def count_indexed(state: Dict[str, Tensor], prefix: str) -> int:
    """How many ``{prefix}N.`` groups ``state`` has (``prefix`` is a regex),
    checking that they are numbered ``0..n-1`` without gaps."""
    ids = {
        int(m.group(1))
        for k in state if (m := re.match(rf'{prefix}(\d+)\.', k))
    }
    if not ids or ids != set(range(max(ids) + 1)):
        raise ConversionError(
            f'{prefix.replace(chr(92), "")}N: missing or not numbered '
            f'0..n-1: {sorted(ids)}')
    return len(ids)


def fresh_out_norms(converted: Dict[str, Tensor],
                    indices: Sequence[int]) -> List[str]:
    """The output norms ``norm{i}`` (``i`` in ``indices``) that
    ``converted`` lacks: an ImageNet classifier has none of them (or only its
    final norm), so they start fresh, as in the official fine-tuning. Store
    the list as ``meta['fresh_out_norms']``; :meth:`Converter.
    allowed_missing` lets them be missing."""
    return [f'norm{i}' for i in indices if f'norm{i}.weight' not in converted]


def timm_block_rules(official: str,
                     ours: str,
                     attn: str = 'attn.') -> List[Rule]:
    """A timm ViT / Swin block (``norm1``, ``attn.qkv``, ``attn.proj``,
    ``norm2``, ``mlp.fc1/fc2``) -> a :class:`PreNormBlock` (mmcv FFN keys);
    ``attn`` is the prefix of our attention's projections."""
    return [
        Rule(official + 'norm1.', ours + 'norm1.'),
        Rule(official + 'attn.qkv.', ours + attn + 'qkv.'),
        Rule(official + 'attn.proj.', ours + attn + 'proj.'),
        Rule(official + 'norm2.', ours + 'norm2.'),
        Rule(official + 'mlp.fc1.', ours + 'ffn.layers.0.0.'),
        Rule(official + 'mlp.fc2.', ours + 'ffn.layers.1.'),
    ]


def timm_vit_rules() -> List[Rule]:
    """A timm ViT's embeddings and blocks -> mmext's plain-ViT keys."""
    return [
        Rule('cls_token', 'cls_token'),
        Rule('pos_embed', 'pos_embed'),
        Rule('patch_embed.proj.', 'patch_embed.projection.'),
        *timm_block_rules('blocks.{i}.', 'blocks.{i}.'),
    ]


def timm_vit_shapes(state: Dict[str, Tensor]) -> dict:
    """``embed_dims``, ``depth`` and ``patch_size`` of a timm ViT state
    dict (the number of heads leaves no trace in the shapes)."""
    return dict(embed_dims=int(state['cls_token'].shape[-1]),
                depth=count_indexed(state, r'blocks\.'),
                patch_size=int(state['patch_embed.proj.weight'].shape[-1]))


def with_prefix(rules: Sequence[Rule], prefix: str) -> List[Rule]:
    """``rules`` with ``prefix`` before every mmext target."""
    return [
        Rule(
            r.official,
            tuple(prefix + t for t in _targets(r)) if isinstance(
                r.mmext, tuple) else prefix + r.mmext, r.transform)
        for r in rules
    ]


def unwrap(checkpoint, source: str) -> Dict[str, Tensor]:
    """Flat tensor dict of a loaded checkpoint (see
    :func:`~mmext.utils.checkpoint.state_dict_from`)."""
    try:
        state = state_dict_from(checkpoint)
    except ValueError as err:
        raise ConversionError(f'{source}: {err}') from None
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise ConversionError(f'{source} holds no tensors')
    return tensors


class Converter:
    """Base of the declarative converters (see the module docstring).

    ``options`` are the family's own settings (its command-line options, see
    :meth:`add_arguments`) plus ``source``, the path of the file read.
    """
    name: str = ''
    backbone: type = None
    signature: Tuple[str, ...] = ()
    #: regexes of official keys never converted (recomputed buffers)
    drop: Tuple[str, ...] = ()
    #: regexes of official keys of the classifier only (kept with
    #: ``keep_head``, dropped otherwise); see :meth:`head_key_patterns`
    head_keys: Tuple[str, ...] = ()

    def __init__(self, **options):
        self.options = options

    @classmethod
    def add_arguments(cls, parser) -> None:
        """Family options of ``tools/convert_imagenet.py NAME``."""

    # -- what a family declares -----------------------------------------------
    def infer_arch(self, state: Dict[str, Tensor]) -> dict:
        """Arch settings readable from the shapes (a subset of the keys is
        fine: the rest must then come from ``--arch``)."""
        raise NotImplementedError

    def rules(self, settings: dict, keep_head: bool) -> List[Rule]:
        """Renaming rules for this arch; with ``keep_head`` the targets are
        those of an mmpretrain ``ImageClassifier`` (``backbone.`` /
        ``head.``)."""
        raise NotImplementedError

    def head_key_patterns(self, settings: dict) -> Tuple[str, ...]:
        """``head_keys`` plus any that depend on the arch."""
        return self.head_keys

    def backbone_kwargs(self, meta: dict) -> dict:
        """Extra backbone arguments the converted weights need."""
        return {}

    def classifier_cfg(self, arch, num_classes: int, meta: dict) -> dict:
        """mmpretrain ``ImageClassifier`` config for ``keep_head``."""
        raise NotImplementedError

    def num_classes(self, state: Dict[str, Tensor]) -> int:
        return int(state['head.weight'].shape[0])

    def extra_meta(self, state: Dict[str, Tensor], converted: Dict[str,
                                                                   Tensor],
                   settings: dict, keep_head: bool) -> dict:
        """Family facts to store in ``meta`` (read by backbone_kwargs)."""
        return {}

    def allowed_missing(self, meta: dict) -> Tuple[str, ...]:
        """Key prefixes the target may lack (they start fresh); by default
        the output norms listed in ``meta['fresh_out_norms']``."""
        return tuple(n + '.' for n in meta.get('fresh_out_norms', ()))

    # -- reading --------------------------------------------------------------
    def official_subset(
            self, state: Dict[str,
                              Tensor]) -> Tuple[Dict[str, Tensor], List[str]]:
        """The family's keys (under ``backbone.`` in a downstream model)
        and the other keys; refuses converted and foreign checkpoints."""
        if all(k in state for k in self.signature):
            return state, []
        inner = {
            k[9:]: v
            for k, v in state.items() if k.startswith('backbone.')
        }
        if inner and all(k in inner for k in self.signature):
            return inner, [k for k in state if not k.startswith('backbone.')]
        if self._is_converted(inner or state):
            raise ConversionError(
                f'this checkpoint is already in mmext {self.backbone.__name__}'
                ' layout; load it directly (init_cfg=dict(type=\'Pretrained\''
                ', ...) or load_from), no conversion needed')
        missing = [k for k in self.signature if k not in state]
        raise ConversionError(
            f'not an official {self.name} checkpoint: it lacks {missing} '
            f'(first keys: {", ".join(list(state)[:5])}). Pass the official '
            'checkpoint of this family, or the converter of the right one '
            f'(tools/convert_imagenet.py --help lists them)')

    def _is_converted(self, state: Dict[str, Tensor]) -> bool:
        name = next(iter(self.backbone.arch_zoo))
        with torch.device('meta'):
            expected = self.backbone(arch=name).state_dict().keys()
        keys = {k[9:] if k.startswith('backbone.') else k for k in state}
        return len(keys & expected) >= 0.5 * len(keys)

    def resolve_arch(self,
                     found: dict,
                     arch=None) -> Tuple[Optional[str], dict]:
        """``(zoo name or None, settings)`` for shapes ``found``; ``arch``
        (name or dict) is checked against them."""
        zoo = self.backbone
        if arch is None:
            for name in sorted(zoo.arch_zoo, key=len):
                settings = zoo.parse_arch(name)
                if all(settings[k] == v for k, v in found.items()):
                    return name, settings
            if set(found) == set(zoo.arch_keys):  # fully known: custom
                try:
                    return None, zoo.parse_arch(found)
                except (TypeError, ValueError) as err:
                    raise ConversionError(f'inferred arch: {err}') from None
            raise ConversionError(
                f'the shapes {found} match none of the released '
                f'{zoo.__name__} variants {sorted(zoo.arch_zoo)}; give the '
                'architecture explicitly (--arch with a JSON dict of keys '
                f'{list(zoo.arch_keys)})')
        try:
            settings = zoo.parse_arch(arch)
        except (TypeError, ValueError) as err:
            raise ConversionError(f'--arch: {err}') from None
        wrong = {
            k: (settings[k], v)
            for k, v in found.items() if settings[k] != v
        }
        if wrong:
            raise ConversionError(
                'the checkpoint does not fit the given arch: ' +
                '; '.join(f'{k}: arch {a}, checkpoint {c}'
                          for k, (a, c) in wrong.items()))
        return zoo.arch_name(settings), settings

    # -- converting -----------------------------------------------------------
    def convert(self,
                state: Dict[str, Tensor],
                keep_head: bool = False,
                arch=None) -> Tuple[Dict[str, Tensor], dict, List[str]]:
        """Official state dict -> ``(mmext state dict, meta, dropped)``."""
        official, dropped = self.official_subset(state)
        try:
            found = self.infer_arch(official)
        except KeyError as err:
            raise ConversionError(
                f'incomplete {self.name} checkpoint: no {err}') from None
        name, settings = self.resolve_arch(found, arch)
        head_keys = self.head_key_patterns(settings)
        is_head = re.compile('|'.join(head_keys)) if head_keys else None
        if keep_head and not (is_head
                              and any(is_head.match(k) for k in official)):
            raise ConversionError(
                'keep_head: this checkpoint has no classifier head (it is a '
                'detection/segmentation backbone); convert without '
                '--keep-head')
        rules = self.rules(settings, keep_head)
        never = re.compile('|'.join(self.drop)) if self.drop else None
        parts: Dict[str, Dict[int, Tensor]] = {}
        unknown = []
        for key, value in official.items():
            if never is not None and never.match(key):
                continue
            if not keep_head and is_head is not None and is_head.match(key):
                dropped.append(key)
                continue
            if not self._apply(rules, key, value, parts):
                unknown.append(key)
        if unknown:
            raise ConversionError(
                f'{len(unknown)} key(s) of no known {self.name} layer, e.g. '
                f'{unknown[:5]}: the checkpoint is from a modified model; '
                'refusing to guess')
        converted = {}
        for target, pieces in parts.items():
            if -1 in pieces:
                converted[target] = pieces[-1]
            elif sorted(pieces) == list(range(len(pieces))) and \
                    len(pieces) > 1:
                converted[target] = torch.cat(
                    [pieces[i] for i in range(len(pieces))], dim=0)
            else:
                raise ConversionError(f'{target}: found only part of a fused '
                                      f'projection ({sorted(pieces)})')
        meta = dict(converter=self.name,
                    arch=name,
                    arch_settings=settings,
                    layout='classifier' if keep_head else 'backbone')
        meta.update(self.extra_meta(official, converted, settings, keep_head))
        if keep_head:
            meta['num_classes'] = self.num_classes(official)
            meta['model_cfg'] = self.classifier_cfg(name or settings,
                                                    meta['num_classes'], meta)
        return converted, meta, dropped

    @staticmethod
    def _apply(rules, key, value, parts) -> bool:
        for rule in rules:
            hit = _match(rule.official, key)
            if hit is None:
                continue
            values, rest = hit
            targets = [_fill(t, values, rest) for t in _targets(rule)]
            t = rule.transform
            if isinstance(t, Fuse):
                parts.setdefault(targets[0], {})[t.index] = value
                return True
            out = value if t is None else t.forward(value)
            outs = out if isinstance(out, tuple) else (out, )
            if len(outs) != len(targets):
                continue  # the transform does not apply to this shape
            for target, tensor in zip(targets, outs):
                parts.setdefault(target, {})[-1] = tensor
            return True
        return False

    # -- checking -------------------------------------------------------------
    def build_target(self, meta: dict) -> nn.Module:
        """The module a converted state dict is meant for (on the current
        default device): the backbone, or the mmpretrain classifier."""
        arch = meta['arch'] or meta['arch_settings']
        if meta['layout'] == 'backbone':
            return self.backbone(arch=arch, **self.backbone_kwargs(meta))
        import mmext.models  # noqa: F401  (registers the heads)
        from mmpretrain.registry import MODELS
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return MODELS.build(meta['model_cfg'])

    def verify(self, converted: Dict[str, Tensor], meta: dict) -> None:
        """Every key and shape of the target is there (built on the meta
        device: no memory, no init). Raises ConversionError."""
        with torch.device('meta'):
            model = self.build_target(meta)
        expected = {k: v.shape for k, v in model.state_dict().items()}
        fresh = self.allowed_missing(meta)
        # BatchNorm fills in a missing step counter itself when loading
        missing = sorted(k for k in expected.keys() - converted.keys()
                         if not (fresh and k.startswith(fresh))
                         and not k.endswith('.num_batches_tracked'))
        unexpected = sorted(converted.keys() - expected.keys())
        wrong = [
            f'{k} {tuple(v.shape)} vs {tuple(expected[k])}'
            for k, v in converted.items()
            if k in expected and v.shape != expected[k]
        ]
        problems = [
            f'{what} {keys[:8]}'
            for what, keys in (('missing', missing),
                               ('unexpected', unexpected), ('shape mismatch',
                                                            wrong)) if keys
        ]
        if problems:
            raise ConversionError(
                f'converted checkpoint does not match {self.backbone.__name__}'
                f' arch {meta["arch"] or meta["arch_settings"]} '
                f'({meta["layout"]}): ' + '; '.join(problems))

    # -- the inverse (tests, export) ------------------------------------------
    def to_official(self,
                    converted: Dict[str, Tensor],
                    settings: dict,
                    keep_head: bool = False) -> Dict[str, Tensor]:
        """mmext state dict -> official keys, by running :meth:`rules`
        backwards (fused targets are split again)."""
        rules = self.rules(settings, keep_head)
        out, used = {}, set()
        for rule in rules:
            targets, t = _targets(rule), rule.transform
            fused = isinstance(t, Fuse)
            for key in converted:
                if key in used and not fused:
                    continue
                hit = _match(targets[0], key)
                if hit is None:
                    continue
                values, rest = hit
                names = [_fill(n, values, rest) for n in targets]
                if not all(n in converted for n in names):
                    continue
                tensors = [converted[n] for n in names]
                if fused:
                    value = t.split(tensors[0])
                elif t is None:
                    value = tensors[0]
                else:
                    value = t.inverse(*tensors)
                out[_fill(rule.official, values, rest)] = value
                used.update(names)
        left = sorted(set(converted) - used)
        if left:
            raise ConversionError(f'no rule maps back {left[:5]}')
        return out
