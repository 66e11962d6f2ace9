"""Official A-ViT checkpoints (NVlabs/A-ViT) -> ``mmext.AViT``.

The official files are timm DeiT state dicts under ``model`` (the halting
adds no parameters): besides the names nothing changes. What a checkpoint
does not hold is the halting gate: the official code parses it from the
file name (``tiny-10-30.pth``: scale 10, center 30). Here it comes from
``--gate-scale`` / ``--gate-center``, else from such a name, else from the
released model of the inferred size (tiny 10/30, small 10/75); ``meta``
records the values and where they came from (``gate_source``). The size of
the position embedding (``img_size``) is read from its shape (a square
grid) or given with ``--img-size``.

Layouts: ``backbone`` (default) drops the classifier ``head``; the final
``norm`` stays (every A-ViT output goes through it). ``classifier``
(``keep_head``): mmpretrain ``ImageClassifier`` with ``AViT(out_type=
'cls_token')`` and ``VisionTransformerClsHead`` (``head.layers.head``).
"""
import math
import os.path as osp
import re
from typing import List, Optional, Tuple

from mmext.models.backbones.avit import AViT
from .base import ConversionError, Rule
from .plain_vit import PlainViTConverter
from .registry import register_converter

#: gate (scale, center) of the released models
RELEASED_GATES = {'tiny': (10., 30.), 'small': (10., 75.)}
_NUMBER = r'(\d+(?:\.\d+)?)'


def gates_from_name(path: Optional[str]) -> Optional[Tuple[float, float]]:
    """``(scale, center)`` from an official file name ``*-S-C.pth``."""
    if not path:
        return None
    m = re.search(rf'-{_NUMBER}-{_NUMBER}\.pth$', osp.basename(path))
    return (float(m.group(1)), float(m.group(2))) if m else None


@register_converter('avit')
class AViTConverter(PlainViTConverter):
    backbone = AViT
    signature = ('cls_token', 'pos_embed', 'patch_embed.proj.weight',
                 'blocks.0.mlp.fc1.weight')

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument(
            '--gate-scale',
            type=float,
            help='halting gate scale (default: from a file name like '
            'tiny-10-30.pth, else the released value of the size)')
        parser.add_argument(
            '--gate-center',
            type=float,
            help='halting gate center (same defaults; tiny 30, small 75)')
        parser.add_argument(
            '--img-size',
            type=int,
            nargs='+',
            metavar='SIZE',
            help='input size the position embedding was trained at: one '
            'int or H W (default: the square its entries make, 224)')

    def vit_rules(self, settings: dict) -> List[Rule]:
        return [Rule('norm.', 'norm.')]

    def extra_meta(self, state, converted, settings, keep_head) -> dict:
        scale, center, source = self._gates(settings)
        return dict(img_size=self._img_size(state, settings),
                    gate_scale=scale,
                    gate_center=center,
                    gate_source=source)

    def _img_size(self, state, settings) -> Tuple[int, int]:
        """Input size of the position embedding: ``--img-size``, else the
        square its entries make."""
        patches = state['pos_embed'].shape[1] - AViT.num_extra_tokens
        patch = settings['patch_size']
        size = self.options.get('img_size')
        if size is None:
            side = math.isqrt(patches)
            if side * side != patches:
                raise ConversionError(
                    f'pos_embed has {patches} patch entries, not a square '
                    'grid: give the input size it was trained at '
                    '(--img-size H W)')
            return (side * patch, side * patch)
        size = (size, size) if isinstance(size, int) else tuple(size)
        if (size[0] // patch) * (size[1] // patch) != patches:
            raise ConversionError(
                f'--img-size {size}: a {size[0] // patch}x{size[1] // patch} '
                f'grid of {patch}-pixel patches, but pos_embed has {patches} '
                'patch entries')
        return size

    def _gates(self, settings: dict) -> Tuple[float, float, str]:
        """Gate values: options, else the file name, else the release of
        this size (the backbone's default for a custom size)."""
        scale = self.options.get('gate_scale')
        center = self.options.get('gate_center')
        if scale is not None and center is not None:
            return float(scale), float(center), 'options'
        named = gates_from_name(self.options.get('source'))
        size = {'t': 'tiny', 's': 'small'}.get(AViT.arch_name(settings))
        if named:
            fallback, source = named, 'file name'
        elif size:
            fallback, source = RELEASED_GATES[size], f'released {size} model'
        else:
            fallback, source = RELEASED_GATES['tiny'], 'default (tiny)'
        if scale is not None or center is not None:
            source = f'options + {source}'
        return (float(fallback[0] if scale is None else scale),
                float(fallback[1] if center is None else center), source)

    def backbone_kwargs(self, meta: dict) -> dict:
        return dict(img_size=list(meta['img_size']),
                    gate_scale=meta['gate_scale'],
                    gate_center=meta['gate_center'])

    def classifier_backbone_kwargs(self, meta: dict) -> dict:
        return self.backbone_kwargs(meta)
