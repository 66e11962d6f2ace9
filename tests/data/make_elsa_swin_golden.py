#!/usr/bin/env python
"""Make ``elsa_swin_golden64.pth``: float64 forward and gradient goldens of
the OFFICIAL ELSA-Swin detection backbone (a tiny arch, random weights).

    PYTHONPATH=/path/to/timm-0.4.x python tests/data/make_elsa_swin_golden.py \
        /path/to/ELSA tests/data/elsa_swin_golden64.pth

``/path/to/ELSA`` is a checkout of github.com/damo-cv/ELSA; its
``det/mmdet/models/backbones/elsa_swin.py`` and ``elsa/elsa.py`` run from
there, unmodified, on CPU (the official op then takes its unfold path, with
plain autograd). Their mmcv / mmdet 2.x imports and the unbuilt CUDA
extension get stand-ins; timm 0.4.x must be importable (``Mlp``,
``DropPath``...). Needs no mmext.

Stored (weights as fp16, exactly representable, everything else float64),
for a 2x3x53x29 input (:func:`golden64.smooth_input`): the output maps
and the gradients of :func:`golden64.weighted_sum` of them with respect to
the input and every parameter (official names).
"""
import contextlib
import io
import os.path as osp
import sys


sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import golden64  # noqa: E402

#: small enough to store every parameter's gradient: three stages (the
#: width doubles per stage, a fourth would hold most of the parameters),
#: still both kinds (ELSA, then shifted-window Swin in the last one), two
#: blocks in a row of each, several heads, ELSA's default 7x7 kernel and
#: 7x7 windows
ARCH = dict(embed_dims=4, depths=[1, 2, 2], num_heads=[1, 2, 2],
            group_width=4)
OUT_INDICES = (0, 1, 2)
MLP_RATIO = 2.
# stage maps 14x8, 7x4 and 4x2 (one 7x7 window, padded, shifted, masked)
INPUT = dict(b=2, h=53, w=29, phase=0.3)


def load_official(official_dir):
    root = osp.join(official_dir, 'det', 'mmdet', 'models', 'backbones')
    golden64.stand_in('mmcv_custom', load_checkpoint=None)
    golden64.stand_in('mmdet')
    golden64.stand_in('mmdet.utils', get_root_logger=None)
    golden64.stand_in('elsa_official')
    golden64.stand_in('elsa_official.builder', BACKBONES=golden64.Registry())
    golden64.stand_in('elsa_official.backbones')
    # the CUDA extension is not built: the op runs its CPU (unfold) path
    golden64.stand_in('elsa_official.backbones.elsa.elsa_ext')
    golden64.stand_in('elsa_official.backbones.elsa.elsa_faster_ext')
    # ``backbones/elsa/`` is a package re-exporting ``elsa.py``
    golden64.exec_file(osp.join(root, 'elsa', 'elsa.py'),
                       'elsa_official.backbones.elsa',
                       'elsa_official.backbones.elsa')
    return golden64.exec_file(osp.join(root, 'elsa_swin.py'),
                              'elsa_official.backbones.elsa_swin',
                              'elsa_official.backbones')


def main(official_dir, out):
    module = load_official(official_dir)
    with contextlib.redirect_stdout(io.StringIO()):  # its print() per layer
        model = module.ELSASwin(
            embed_dim=ARCH['embed_dims'], depths=ARCH['depths'],
            num_heads=ARCH['num_heads'], group_width=ARCH['group_width'],
            mlp_ratio=MLP_RATIO, out_indices=OUT_INDICES,
            drop_path_rate=0.)
    golden64.randomize_(model, seed=64)
    model.double()
    model.eval()  # (no dropout, no BatchNorm: train mode would be the same)
    state = {k: v.half() for k, v in model.state_dict().items()
             if v.is_floating_point()}

    x = golden64.smooth_input(**INPUT).double().requires_grad_()
    outputs = model(x)
    golden64.weighted_sum(outputs).backward()
    grads = golden64.param_grads(model)

    golden64.save(
        dict(
            arch=ARCH,
            mlp_ratio=MLP_RATIO,
            out_indices=OUT_INDICES,
            official_state_dict_fp16=golden64.pack(state),
            input=INPUT,
            outputs=[o.detach().clone() for o in outputs],
            input_grad=x.grad.clone(),
            param_grads=golden64.pack(grads)),
        out, 'the official damo-cv/ELSA det/ backbone')


if __name__ == '__main__':
    golden64.cli(main, __doc__)
