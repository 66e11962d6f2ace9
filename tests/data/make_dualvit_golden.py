#!/usr/bin/env python
"""Make ``dualvit_golden64.pth``: float64 goldens of the OFFICIAL Dual-ViT
(a tiny arch, random weights): forward and gradients of the detection
backbone, the ImageNet classifier's logits, the segmentation backbone's
tiled inference.

    PYTHONPATH=/path/to/timm-0.4.x python tests/data/make_dualvit_golden.py \
        /path/to/ImageNetModel tests/data/dualvit_golden64.pth

``/path/to/ImageNetModel`` is a checkout of github.com/YehLi/ImageNetModel;
its ``classification/``, ``object_detection/`` and
``semantic_segmentation/.../backbones/`` ``dualvit.py`` run from there
(the segmentation backbone's hard-coded 768-pixel tile lowered to
``TILE``, in memory). Their mmcv 1.x / mmdet 2.x / mmseg 0.x imports get
stand-ins (``build_norm_layer`` gives a plain ``BatchNorm2d``, as 'BN'
does on one device); timm 0.4.x must be importable. Needs no mmext.

Stored (weights as fp16, exactly representable, everything else float64);
inputs are :func:`golden64.smooth_input`, recreated by the tests:

* ``official_state_dict_fp16``: the classifier's weights, which the two
  dense backbones load as well;
* ``eval``: the detection backbone's four maps of a 1x3x61x83 input;
* ``train``: in train mode (BatchNorm on batch statistics), its outputs for
  a 2x3x53x29 input and the gradients of :func:`golden64.weighted_sum` of
  them with respect to the input and to every parameter (official names;
  the stem BatchNorm, frozen in the reference detector, is trained here);
* ``cls``: classifier logits (eval, token-labeling inference) of the eval
  input and of a 1x3x224x224 one;
* ``tiled``: the segmentation backbone's maps of a 1x3x100x150 input in
  ``TILE`` x ``TILE`` tiles.
"""
import os.path as osp
import sys
from functools import partial

import torch
import torch.nn as nn

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import golden64  # noqa: E402

#: small (every parameter's gradient is stored), still a distinct width per
#: stage and the odd-block / last-block special cases of stages 2 and 3
ARCH = dict(stem_width=4, embed_dims=[4, 8, 12, 16], num_heads=[1, 2, 2, 2],
            mlp_ratios=[2, 2, 3, 2], depths=[1, 2, 2, 2])
NUM_CLASSES = 10
TILE = 64
EVAL_INPUT = dict(b=1, h=61, w=83, phase=0.)
# the smallest height giving two semantic tokens (14 rows at stride 4,
# pooled by 7)
TRAIN_INPUT = dict(b=2, h=53, w=29, phase=0.7)
CLS_INPUT = dict(b=1, h=224, w=224, phase=0.5)
TILED_INPUT = dict(b=1, h=100, w=150, phase=1.)  # 2x3 overlapping tiles


def _build_norm_layer(cfg, num_features):
    bn = nn.BatchNorm2d(num_features)
    bn.requires_grad_(cfg.get('requires_grad', True))
    return 'bn', bn


def load_official(official_dir):
    """The official classification, detection and segmentation modules."""
    for name in ('mmdet', 'mmdet.models', 'mmcv', 'mmseg', 'official_seg',
                 'official_seg.backbones'):
        golden64.stand_in(name)
    registry = golden64.Registry()
    golden64.stand_in('mmdet.models.builder', BACKBONES=registry)
    golden64.stand_in('official_seg.builder', BACKBONES=registry)
    for name in ('mmdet.utils', 'mmseg.utils'):
        golden64.stand_in(name, get_root_logger=lambda: None)
    golden64.stand_in('mmcv.runner', load_checkpoint=lambda *a, **k: None)
    golden64.stand_in('mmcv_custom', load_checkpoint=lambda *a, **k: None)
    golden64.stand_in('mmcv.cnn', build_norm_layer=_build_norm_layer)
    cls = golden64.exec_file(
        osp.join(official_dir, 'classification', 'dualvit.py'),
        'official_dualvit_cls', None)
    det = golden64.exec_file(
        osp.join(official_dir, 'object_detection', 'dualvit.py'),
        'official_dualvit_det', None)
    seg = golden64.exec_file(
        osp.join(official_dir, 'semantic_segmentation', 'mmseg', 'models',
                 'backbones', 'dualvit.py'),
        'official_seg.backbones.dualvit', 'official_seg.backbones',
        replace=[('H_size = 768', f'H_size = {TILE}'),
                 ('W_size = 768', f'W_size = {TILE}')])
    return cls, det, seg


def _inputs(spec):
    return golden64.smooth_input(**spec).double()


def main(official_dir, out):
    cls_mod, det_mod, seg_mod = load_official(official_dir)
    a = ARCH
    ln = partial(nn.LayerNorm, eps=1e-6)
    common = dict(embed_dims=a['embed_dims'], num_heads=a['num_heads'],
                  depths=a['depths'])
    # (the classifier's fifth ratio is that of its class-attention block)
    cls = cls_mod.DualViT(stem_hidden_dim=a['stem_width'],
                          mlp_ratios=a['mlp_ratios'] + [2],
                          num_classes=NUM_CLASSES, norm_layer=ln, **common)
    golden64.randomize_(cls, seed=64)
    cls.double().eval()
    full_state = cls.state_dict()

    det = det_mod.DualVit(stem_width=a['stem_width'],
                          mlp_ratios=a['mlp_ratios'], drop_path_rate=0.,
                          norm_layer=ln, **common)
    seg = seg_mod.DualVit(stem_hidden_dim=a['stem_width'],
                          mlp_ratios=a['mlp_ratios'], drop_path_rate=0.,
                          **common)
    for model in (det, seg):
        model.double()
        assert not model.load_state_dict(full_state,
                                         strict=False).missing_keys
    det.requires_grad_(True)  # the stand-in froze the stem BN as asked

    with torch.no_grad():
        x = _inputs(EVAL_INPUT)
        eval_outputs = [o.clone() for o in det.eval()(x)]
        logits = cls(x)
        logits_224 = cls(_inputs(CLS_INPUT))
        tiled = [o.clone() for o in seg.eval()(_inputs(TILED_INPUT))]

    det.train()  # (updates the BN statistics of `det` only)
    x = _inputs(TRAIN_INPUT).requires_grad_()
    train_outputs = det(x)
    golden64.weighted_sum(train_outputs).backward()
    grads = golden64.param_grads(det)

    # fp16 holds the weights exactly; the BN step counters are not needed
    state = {k: v.half() for k, v in full_state.items()
             if v.is_floating_point()}
    golden64.save(
        dict(
            arch=ARCH,
            official_state_dict_fp16=golden64.pack(state),
            eval=dict(input=EVAL_INPUT, outputs=eval_outputs),
            train=dict(input=TRAIN_INPUT,
                       outputs=[o.detach().clone() for o in train_outputs],
                       input_grad=x.grad.clone(),
                       param_grads=golden64.pack(grads)),
            cls=dict(num_classes=NUM_CLASSES, inputs=[EVAL_INPUT, CLS_INPUT],
                     logits=[logits, logits_224]),
            tiled=dict(tile=TILE, input=TILED_INPUT, outputs=tiled)),
        out, 'the official YehLi/ImageNetModel code')


if __name__ == '__main__':
    golden64.cli(main, __doc__)
