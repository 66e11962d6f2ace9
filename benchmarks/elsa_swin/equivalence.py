"""Check mmext.ELSASwin against the official ELSA-Swin code, and make goldens.

The official code (github.com/damo-cv/ELSA) is read from a checkout or a bare
git directory and copied into a temporary package with its unbuildable CUDA
extension and its mmdet/mmcv 1.x imports stubbed out; the ELSA op then runs
its own pure-PyTorch unfold formulation. Nothing of it is imported into
mmext. ``cls/models/elsa_swin.py`` needs timm 0.4.x (pass ``--timm-path`` to
a directory holding it, e.g. ``pip install --target DIR timm==0.4.9
--no-deps``); the detection backbone works with it too.

Subcommands:

``compare``
    Official detection backbones T/S/B with random weights -> converter ->
    mmext.ELSASwin, on several input sizes (odd ones, batch 1 and 2), plus
    the ImageNet classifier (T) through ``keep_head`` conversion. Writes the
    max relative errors (``max|ours - official| / max|official|`` per
    output) as JSON.
``golden``
    Writes ``tests/data/elsa_swin_golden.pth``: a tiny official backbone's
    weights, small seeds of the inputs and the official outputs (float64),
    used by the unit tests without the official code.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

FILES = {
    'elsa_official/backbones/elsa_swin.py':
    'det/mmdet/models/backbones/elsa_swin.py',
    'elsa_official/backbones/elsa/elsa.py':
    'det/mmdet/models/backbones/elsa/elsa.py',
    'elsa_cls/elsa_swin.py': 'cls/models/elsa_swin.py',
    'elsa_cls/elsa/elsa.py': 'cls/models/elsa/elsa.py',
}
STUBS = {
    'from mmcv_custom import load_checkpoint': 'load_checkpoint = None',
    'from mmdet.utils import get_root_logger': 'get_root_logger = None',
    'from . import elsa_ext, elsa_faster_ext':
    'elsa_ext = elsa_faster_ext = None  # CUDA extension not built',
}

TINY_ARCH = dict(
    embed_dims=8, depths=[1, 1, 1, 2], num_heads=[1, 2, 2, 4], group_width=4)


def official_arch(variant: str) -> dict:
    """The official constructor's arguments of a released variant (the
    official code calls the width ``embed_dim``)."""
    from mmext.models.backbones.elsa_swin import ELSASwin
    arch = ELSASwin.parse_arch(variant)
    arch['embed_dim'] = arch.pop('embed_dims')
    return arch


def _read(src: str, rel: str) -> str:
    if osp.isfile(osp.join(src, rel)):
        with open(osp.join(src, rel)) as f:
            return f.read()
    return subprocess.run(['git', f'--git-dir={src}', 'show', f'HEAD:{rel}'],
                          check=True, capture_output=True,
                          text=True).stdout


def build_harness(src: str) -> str:
    """Copy the official model files into a temp dir; return its path."""
    root = tempfile.mkdtemp(prefix='elsa_official_')
    for dst, rel in FILES.items():
        text = _read(src, rel)
        for old, new in STUBS.items():
            text = text.replace(old, new)
        path = osp.join(root, dst)
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
    for pkg in ('elsa_official', 'elsa_official/backbones', 'elsa_cls'):
        open(osp.join(root, pkg, '__init__.py'), 'w').close()
    for pkg in ('elsa_official/backbones/elsa', 'elsa_cls/elsa'):
        with open(osp.join(root, pkg, '__init__.py'), 'w') as f:
            f.write('from .elsa import *\n')
    with open(osp.join(root, 'elsa_official', 'builder.py'), 'w') as f:
        f.write('class _Registry:\n'
                '    def register_module(self, *args, **kwargs):\n'
                '        return lambda cls: cls\n\n\n'
                'BACKBONES = _Registry()\n')
    return root


def randomize_(model: torch.nn.Module, seed: int):
    """Variance-preserving random weights everywhere (norms and biases
    included), so that every tensor matters for the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith('.rb'):
                p.copy_(r * 0.5)
            elif 'ghost_head' in name:
                p.copy_(r * 0.1)
            elif p.dim() == 1:
                base = 1. if ('norm' in name and name.endswith('weight')) \
                    else 0.
                p.copy_(base + 0.1 * r)
            else:
                fan_in = p[0].numel()
                p.copy_(r / fan_in**0.5)


def official_det(arch: dict):
    from elsa_official.backbones.elsa_swin import ELSASwin as Official
    kw = dict(arch)
    if 'embed_dims' in kw:
        kw['embed_dim'] = kw.pop('embed_dims')
    model = Official(drop_path_rate=0., **kw)
    model.eval()  # (the official train() override returns None)
    return model


def official_cls(arch: dict, img_size: int, num_classes: int):
    from elsa_cls.elsa_swin import ELSASwin as OfficialCls
    kw = dict(arch)
    if 'embed_dims' in kw:
        kw['embed_dim'] = kw.pop('embed_dims')
    model = OfficialCls(
        img_size=img_size, num_classes=num_classes, drop_path_rate=0., **kw)
    model.eval()
    return model


def ours_from(official_sd, arch, keep_head=False):
    """mmext.ELSASwin holding the converted weights (+ the classifier head's
    tensors when ``keep_head``)."""
    from mmext.converters import get_converter
    from mmext.models.backbones.elsa_swin import ELSASwin
    sd, meta, _ = get_converter('elsa_swin').convert(official_sd,
                                                     keep_head=keep_head)
    head = None
    if keep_head:
        head = {k[len('head.fc.'):]: v for k, v in sd.items()
                if k.startswith('head.fc.')}
        sd = {k[len('backbone.'):]: v for k, v in sd.items()
              if k.startswith('backbone.')}
        model = ELSASwin(arch=arch, out_indices=(3, ), drop_path_rate=0.)
    else:
        model = ELSASwin(arch=arch, drop_path_rate=0.)
    model.load_state_dict(sd, strict=True)
    return model.eval(), head


def rel_err(a, b) -> float:
    return ((a.double() - b.double()).abs().max() /
            b.double().abs().max()).item()


def _quiet(fn, *args, **kwargs):
    """Run the official constructors without their print() noise."""
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def cmd_compare(args):
    torch.set_num_threads(args.threads)
    results = []
    sizes = [tuple(s) for s in args.sizes]
    for variant in args.variants:
        arch = official_arch(variant)
        off = _quiet(official_det, arch)
        randomize_(off, seed=1)
        ours_arch = dict(arch)
        ours_arch['embed_dims'] = ours_arch.pop('embed_dim')
        ours, _ = ours_from(off.state_dict(), ours_arch)
        n_off = sum(p.numel() for p in off.parameters())
        n_ours = sum(p.numel() for p in ours.parameters())
        for size in sizes:
            if variant != 't' and size[2] * size[3] > 400 * 400:
                continue  # large inputs only for T (CPU time)
            x = torch.randn(*size, generator=torch.Generator().manual_seed(
                sum(size)))
            t0 = time.time()
            with torch.no_grad():
                ref = off(x)
                out = ours(x)
            errs = [rel_err(o, r) for o, r in zip(out, ref)]
            shapes_ok = all(o.shape == r.shape for o, r in zip(out, ref))
            row = dict(model=f'det-backbone-{variant}', input=list(size),
                       max_rel_err=max(errs), per_output=errs,
                       shapes_equal=shapes_ok, params_official=n_off,
                       params_mmext=n_ours, seconds=time.time() - t0)
            print(json.dumps(row))
            results.append(row)
    # ImageNet classifier (timm model from cls/), through keep_head.
    if args.cls:
        arch = official_arch('t')
        img = 448  # stage 4 is 14x14: shifted windows as in the backbone
        cls_model = _quiet(official_cls, arch, img, 1000)
        randomize_(cls_model, seed=2)
        ours_arch = dict(arch)
        ours_arch['embed_dims'] = ours_arch.pop('embed_dim')
        ours, head = ours_from(cls_model.state_dict(), ours_arch,
                               keep_head=True)
        x = torch.randn(2, 3, img, img,
                        generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            feats = cls_model.norm(cls_model.layers(
                cls_model.pos_drop(cls_model.patch_embed(x))))
            ref_logits = cls_model.head(feats.mean(1))
            out = ours(x)[-1]
            logits = F.linear(out.mean((2, 3)), head['weight'], head['bias'])
        row = dict(
            model='imagenet-classifier-t', input=[2, 3, img, img],
            max_rel_err_features=rel_err(
                out.flatten(2).transpose(1, 2), feats),
            max_rel_err_logits=rel_err(logits, ref_logits))
        print(json.dumps(row))
        results.append(row)
    if args.out:
        meta = dict(torch=torch.__version__, dtype='float32',
                    threads=args.threads,
                    metric='max|ours - official| / max|official| per output')
        with open(args.out, 'w') as f:
            json.dump(dict(meta=meta, results=results), f, indent=2)
        print(f'wrote {args.out}')


def _upsample_input(seed_img, size):
    return F.interpolate(seed_img, size=size, mode='bilinear',
                         align_corners=False)


def cmd_golden(args):
    torch.manual_seed(0)
    off = _quiet(official_det, TINY_ARCH)
    randomize_(off, seed=10)
    with torch.no_grad():  # fp16-representable weights: stored as fp16
        for prm in off.parameters():
            prm.copy_(prm.half().float())
    off = off.double()
    g = torch.Generator().manual_seed(11)
    # small seeds, upsampled (bilinear) to the test sizes by both sides
    cases = [((1, 3, 9, 13), (61, 83)), ((2, 3, 13, 7), (235, 45))]
    inputs, outputs = [], []
    for seed_shape, size in cases:
        seed_img = torch.randn(*seed_shape, generator=g)
        with torch.no_grad():
            outs = off(_upsample_input(seed_img.double(), size))
        inputs.append(dict(seed=seed_img, size=list(size)))
        outputs.append([o.clone() for o in outs])
    # The ImageNet classifier with the same backbone weights: the timm model
    # has no per-stage norms; its final norm plays norm3's role.
    num_classes = 10
    cls_model = _quiet(official_cls, TINY_ARCH, 448, num_classes).double()
    det_sd = off.state_dict()
    cls_sd = {k: v for k, v in det_sd.items() if not k.startswith('norm')}
    cls_sd.update({'norm.' + k[len('norm3.'):]: v
                   for k, v in det_sd.items() if k.startswith('norm3.')})
    head_w = torch.randn(num_classes, 64, generator=g, dtype=torch.float64)
    head_b = torch.randn(num_classes, generator=g, dtype=torch.float64)
    cls_sd['head.weight'], cls_sd['head.bias'] = head_w / 8, head_b * .1
    missing, unexpected = cls_model.load_state_dict(cls_sd, strict=False)
    assert not [k for k in missing if not k.endswith(('relative_id',
                                                      'attn_mask'))], missing
    assert not unexpected, unexpected
    cls_seed = torch.randn(1, 3, 14, 14, generator=g)
    with torch.no_grad():
        cls_logits = cls_model(_upsample_input(cls_seed.double(), (448, 448)))
    state = {k: v.half() for k, v in det_sd.items()
             if not k.endswith('relative_id')}
    golden = dict(
        arch=TINY_ARCH,
        official_state_dict=state,
        inputs=inputs,
        outputs=outputs,
        cls_head=dict(weight=cls_sd['head.weight'],
                      bias=cls_sd['head.bias']),
        cls_input=dict(seed=cls_seed, size=[448, 448]),
        cls_logits=cls_logits,
        note=('made by benchmarks/elsa_swin/equivalence.py golden from the '
              'official damo-cv/ELSA code (det backbone + cls classifier), '
              'float64, random weights'))
    torch.save(golden, args.out)
    print(f'wrote {args.out} ({osp.getsize(args.out) / 1024:.0f} KiB)')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--elsa-src', required=True,
                   help='damo-cv/ELSA checkout or bare git directory')
    p.add_argument('--timm-path', default=None,
                   help='directory to put first on sys.path (timm 0.4.x)')
    sub = p.add_subparsers(dest='cmd', required=True)
    c = sub.add_parser('compare')
    c.add_argument('--variants', nargs='+', default=['t', 's', 'b'])
    c.add_argument('--sizes', type=int, nargs=4, action='append',
                   metavar=('B', 'C', 'H', 'W'))
    c.add_argument('--no-cls', dest='cls', action='store_false')
    c.add_argument('--threads', type=int, default=2)
    c.add_argument('--out', default=None)
    gd = sub.add_parser('golden')
    gd.add_argument('--out', default='tests/data/elsa_swin_golden.pth')
    args = p.parse_args()
    if args.cmd == 'compare' and not args.sizes:
        args.sizes = [[2, 3, 224, 224], [1, 3, 197, 263], [1, 3, 800, 1344]]
    root = build_harness(args.elsa_src)
    sys.path.insert(0, root)
    if args.timm_path:
        sys.path.insert(0, args.timm_path)
    import warnings
    warnings.filterwarnings('ignore')
    {'compare': cmd_compare, 'golden': cmd_golden}[args.cmd](args)


if __name__ == '__main__':
    main()
