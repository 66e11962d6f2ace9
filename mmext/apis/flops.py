"""MACs (multiply-accumulates) and parameters of a backbone at a given
input size, counted from the ops actually run (``mmext.utils.complexity``;
``tools/get_flops.py``).

The model is given as in ``tools/benchmark.py``: a registered type
(``DualViT --arch s``), a config snippet, a config file with ``--cfg-key``,
or ``--factory FILE.py:FUNCTION`` for code outside mmext::

    python tools/get_flops.py DualViT --arch s --shape 1x3x800x1344
    python tools/get_flops.py configs/detection/dualvit_b_maskrcnn_1x.py
    python tools/get_flops.py ELSASwin --arch t --backward --mode train

Matrix products, convolutions and attention (``scaled_dot_product_attention``
and mmext's ELSA filter) are counted; element-wise ops, norms and softmax
are not. mmdet/mmseg "FLOPs" tables are MAC counts: compare GMACs with them.
"""
import argparse
import json
import os.path as osp

from .model_spec import (add_model_arguments, build_model, model_cfg,
                         model_name, parse_shape)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument('--shape', type=parse_shape,
                        default='1x3x800x1344', help='input BxCxHxW')
    parser.add_argument('--mode', choices=['eval', 'train'], default='eval',
                        help='module mode while counting (drop path and '
                        'tiling differ between them)')
    parser.add_argument('--backward', action='store_true',
                        help='also count the backward pass')
    parser.add_argument('--depth', type=int, default=2,
                        help='depth of the per-module breakdown')
    parser.add_argument('--out', help='write the report as JSON here '
                        '(atomically)')
    args = parser.parse_args(argv)
    if not args.factory and not args.model:
        parser.error('give a model (type, config snippet or file) or '
                     '--factory FILE:FUNCTION')
    if args.out and osp.isdir(args.out):
        parser.error(f'--out {args.out} is a folder; give a .json file')

    import torch

    from mmext.utils.complexity import count_macs
    cfg = None if args.factory else model_cfg(args)
    name = model_name(args, cfg)
    try:
        model = build_model(dict(cfg=cfg, factory=args.factory))
    except Exception as err:  # noqa: BLE001 - unknown type, arch, argument
        text = ' '.join(str(err).split())
        raise SystemExit(f'error: cannot build {name}: '
                         f'{type(err).__name__}: {text}')
    model.train(args.mode == 'train')
    torch.manual_seed(0)
    x = torch.randn(*args.shape)
    try:
        report = count_macs(model, x, backward=args.backward,
                            depth=args.depth)
    except ValueError as err:  # e.g. an input below the network stride
        raise SystemExit(f'error: {name} at {args.shape}: {err}')

    shape = 'x'.join(map(str, args.shape))
    passes = 'forward + backward' if args.backward else 'forward'
    print(f'{name}, input {shape}, {args.mode} mode, {passes}')
    print(f"  params      {report['params'] / 1e6:10.2f} M")
    print(f'  total       {report.gmacs():10.2f} GMACs')
    for kind, macs in report['macs_by_kind'].items():
        print(f'  {kind:<11} {macs / 1e9:10.2f} GMACs')
    if report['macs_by_module']:
        print('  by module:')
        for module, macs in sorted(report['macs_by_module'].items()):
            print(f'    {module:<30} {macs / 1e9:10.2f} GMACs')
    if args.out:
        record = dict(name=name, shape=shape, mode=args.mode,
                      backward=args.backward, model=cfg or args.factory,
                      **report)
        from mmext.utils.fileio import atomic_write
        with atomic_write(args.out, 'w', force=True) as f:
            json.dump(record, f, indent=1)
        print(f'written to {args.out}')

