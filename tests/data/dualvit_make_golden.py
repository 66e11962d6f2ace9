#!/usr/bin/env python
"""Regenerate ``dualvit_golden.pth`` from the OFFICIAL Dual-ViT code.

    python tests/data/dualvit_make_golden.py /path/to/ImageNetModel OUT.pth

``/path/to/ImageNetModel`` is a checkout of github.com/YehLi/ImageNetModel.
Its files import mmcv 1.x / mmdet 2.x / timm; those imports are replaced by
small stand-ins here (import plumbing only, the model code runs as is). The
segmentation backbone's hard-coded 768 tile is lowered to ``TILE`` so that
tiling can be tested on a small image. Needs no mmext.
"""
import math
import os.path as osp
import sys
import types
from functools import partial

import torch
import torch.nn as nn

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from dualvit_golden import TINY, smooth_input  # noqa: E402

NUM_CLASSES = 10
TILE = 96


class _Registry:

    def register_module(self, *args, **kwargs):
        return args[0] if args and callable(args[0]) else (lambda cls: cls)


class _DropPath(nn.Module):

    def __init__(self, p=0.):
        super().__init__()
        self.p = p

    def forward(self, x):
        return x  # goldens are computed in eval mode


def _build_norm_layer(cfg, num_features):
    bn = nn.BatchNorm2d(num_features)  # BN / SyncBN alike on one CPU
    bn.requires_grad_(cfg.get('requires_grad', True))
    return 'bn', bn


def _stand_ins():
    mods = {}

    def mk(name, **attrs):
        mods[name] = types.ModuleType(name)
        mods[name].__dict__.update(attrs)

    for name in ('timm', 'timm.models', 'mmdet', 'mmdet.models', 'mmseg',
                 'mmcv'):
        mk(name)
    mk('timm.models.layers', DropPath=_DropPath, to_2tuple=lambda x: (x, x),
       trunc_normal_=lambda t, std=1.: nn.init.trunc_normal_(t, std=std))
    mk('timm.models.registry', register_model=lambda f: f)
    mk('timm.models.vision_transformer', _cfg=lambda **k: k)
    mk('mmdet.models.builder', BACKBONES=_Registry())
    mk('mmdet.utils', get_root_logger=lambda: None)
    mk('mmseg.utils', get_root_logger=lambda: None)
    mk('mmcv.runner', load_checkpoint=lambda *a, **k: None)
    mk('mmcv.cnn', build_norm_layer=_build_norm_layer)
    mk('mmcv_custom', load_checkpoint=lambda *a, **k: None)
    return mods


def load_official(path, replace=()):
    src = open(path).read().replace('from ..builder import BACKBONES',
                                    'from mmdet.models.builder import '
                                    'BACKBONES')
    for old, new in replace:
        assert src.count(old) == 1, old
        src = src.replace(old, new)
    stand_ins = _stand_ins()
    saved = {k: sys.modules.get(k) for k in stand_ins}
    sys.modules.update(stand_ins)
    try:
        module = types.ModuleType(osp.basename(path)[:-3])
        exec(compile(src, path, 'exec'), module.__dict__)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


@torch.no_grad()
def randomize_(model, seed):
    """Informative random values for every float tensor (layer scales too:
    at their 1e-6 init the blocks would be invisible), rounded to values
    exactly representable in fp16."""
    g = torch.Generator().manual_seed(seed)
    for name, t in sorted(model.state_dict(keep_vars=True).items()):
        if not t.dtype.is_floating_point:
            continue
        leaf = name.rsplit('.', 1)[-1]
        if leaf == 'running_var':
            value = torch.rand(t.shape, generator=g) + 0.5
        elif leaf.startswith('gamma'):
            value = torch.rand(t.shape, generator=g) * 0.5 + 0.25
        elif t.ndim == 1 and leaf == 'weight':
            value = 1 + 0.2 * torch.randn(t.shape, generator=g)
        elif t.ndim == 1:
            value = 0.1 * torch.randn(t.shape, generator=g)
        else:
            fan_in = t[0].numel()
            value = torch.randn(t.shape, generator=g) / math.sqrt(fan_in)
        t.copy_(value.half().float())


def main(official_dir, out):
    ln = partial(nn.LayerNorm, eps=1e-6)
    a = TINY
    cls_mod = load_official(osp.join(official_dir, 'classification',
                                     'dualvit.py'))
    cls = cls_mod.DualViT(stem_hidden_dim=a['stem_width'],
                          embed_dims=a['embed_dims'],
                          num_heads=a['num_heads'],
                          mlp_ratios=a['mlp_ratios'] + [2],
                          depths=a['depths'], num_classes=NUM_CLASSES,
                          norm_layer=ln)
    randomize_(cls, seed=1)
    cls.eval()
    state = {k: v.clone() for k, v in cls.state_dict().items()}

    det_mod = load_official(osp.join(official_dir, 'object_detection',
                                     'dualvit.py'))
    det = det_mod.DualVit(stem_width=a['stem_width'],
                          embed_dims=a['embed_dims'],
                          num_heads=a['num_heads'],
                          mlp_ratios=a['mlp_ratios'], depths=a['depths'],
                          drop_path_rate=0., norm_layer=ln)
    assert not det.load_state_dict(state, strict=False).missing_keys
    det.eval()

    seg_mod = load_official(
        osp.join(official_dir, 'semantic_segmentation', 'mmseg', 'models',
                 'backbones', 'dualvit.py'),
        replace=[('H_size = 768', f'H_size = {TILE}'),
                 ('W_size = 768', f'W_size = {TILE}')])
    seg = seg_mod.DualVit(stem_hidden_dim=a['stem_width'],
                          embed_dims=a['embed_dims'],
                          num_heads=a['num_heads'],
                          mlp_ratios=a['mlp_ratios'], depths=a['depths'],
                          drop_path_rate=0.)
    assert not seg.load_state_dict(state, strict=False).missing_keys
    seg.eval()

    x = smooth_input(2, 61, 83)
    x224 = smooth_input(1, 224, 224, phase=0.5)
    xt = smooth_input(1, 150, 230, phase=1.0)
    with torch.no_grad():
        golden = dict(
            arch=TINY, num_classes=NUM_CLASSES, tile=TILE,
            official_state_dict_fp16={
                k: (v.half() if v.is_floating_point() else v)
                for k, v in state.items()
            },
            input_shape=tuple(x.shape), input_phase=0.,
            feats=list(det(x)), logits=cls(x),
            input_224_phase=0.5, logits_224=cls(x224),
            tiled_input_shape=tuple(xt.shape), tiled_input_phase=1.0,
            tiled_feats=list(seg(xt)))
    torch.save(golden, out)


if __name__ == '__main__':
    main(*sys.argv[1:3])
