#!/usr/bin/env python
"""Make ``dualvit_golden64.pth``: float64 forward and gradient goldens of
the OFFICIAL Dual-ViT detection backbone (a tiny arch, random weights).

    PYTHONPATH=/path/to/timm-0.4.x python tests/data/make_dualvit_golden.py \
        /path/to/ImageNetModel tests/data/dualvit_golden64.pth

``/path/to/ImageNetModel`` is a checkout of github.com/YehLi/ImageNetModel;
its ``object_detection/dualvit.py`` runs from there, unmodified. Its mmcv
1.x / mmdet 2.x imports get stand-ins (``build_norm_layer`` gives a plain
``BatchNorm2d``, as 'BN' does on one device); timm must be importable
(0.4.x, only its small helpers are used). Needs no mmext.

Stored (weights as fp16, exactly representable, everything else float64):

* ``eval``: the four feature maps of a 1x3x61x83 input in eval mode;
* ``train``: in train mode (BatchNorm on batch statistics), the outputs for
  a 2x3x53x29 input and the gradients of :func:`golden64.weighted_sum` of
  them with respect to the input and to every parameter (official names;
  the stem BatchNorm, frozen in the reference detector, is trained here).

Inputs are :func:`golden64.smooth_input`, recreated by the test.
"""
import os.path as osp
import sys
from functools import partial

import torch
import torch.nn as nn

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import golden64  # noqa: E402

#: smaller than the float32 golden's arch (the gradients of every parameter
#: are stored), still a distinct width per stage and the odd-block / last-
#: block special cases of stages 2 and 3
ARCH = dict(stem_width=4, embed_dims=[4, 8, 12, 16], num_heads=[1, 2, 2, 2],
            mlp_ratios=[2, 2, 3, 2], depths=[1, 2, 2, 2])
EVAL_INPUT = dict(b=1, h=61, w=83, phase=0.)
# the smallest height giving two semantic tokens (14 rows at stride 4,
# pooled by 7)
TRAIN_INPUT = dict(b=2, h=53, w=29, phase=0.7)


def _build_norm_layer(cfg, num_features):
    bn = nn.BatchNorm2d(num_features)
    bn.requires_grad_(cfg.get('requires_grad', True))
    return 'bn', bn


def load_official(official_dir):
    for name in ('mmdet', 'mmdet.models', 'mmcv'):
        golden64.stand_in(name)
    golden64.stand_in('mmdet.models.builder', BACKBONES=golden64.Registry())
    golden64.stand_in('mmdet.utils', get_root_logger=lambda: None)
    golden64.stand_in('mmcv.runner', load_checkpoint=lambda *a, **k: None)
    golden64.stand_in('mmcv.cnn', build_norm_layer=_build_norm_layer)
    return golden64.exec_file(
        osp.join(official_dir, 'object_detection', 'dualvit.py'),
        'official_dualvit', None)


def main(official_dir, out):
    module = load_official(official_dir)
    a = ARCH
    model = module.DualVit(
        stem_width=a['stem_width'], embed_dims=a['embed_dims'],
        num_heads=a['num_heads'], mlp_ratios=a['mlp_ratios'],
        depths=a['depths'], drop_path_rate=0.,
        norm_layer=partial(nn.LayerNorm, eps=1e-6))
    golden64.randomize_(model, seed=64)
    model.requires_grad_(True)
    model.double()
    # fp16 holds the weights exactly; the BN step counters are not needed
    state = {k: v.half() for k, v in model.state_dict().items()
             if v.is_floating_point()}

    model.eval()
    with torch.no_grad():
        x = golden64.smooth_input(**EVAL_INPUT).double()
        eval_outputs = [o.clone() for o in model(x)]

    model.train()  # (updates the BN statistics: `state` was taken before)
    x = golden64.smooth_input(**TRAIN_INPUT).double().requires_grad_()
    train_outputs = model(x)
    golden64.weighted_sum(train_outputs).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    missing = [n for n, g in grads.items() if not g.abs().sum()]
    assert not missing, f'parameters without gradient: {missing}'

    torch.save(
        dict(
            arch=ARCH,
            official_state_dict_fp16=golden64.pack(state),
            eval=dict(input=EVAL_INPUT, outputs=eval_outputs),
            train=dict(input=TRAIN_INPUT,
                       outputs=[o.detach().clone() for o in train_outputs],
                       input_grad=x.grad.clone(),
                       param_grads=golden64.pack(grads)),
            note='made by tests/data/make_dualvit_golden.py from the '
                 'official YehLi/ImageNetModel object_detection/dualvit.py'),
        out)
    print(f'wrote {out} ({osp.getsize(out) / 1024:.0f} KiB)')


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:3])
