"""``tools/export_onnx.py``: a config and its checkpoint to an ONNX file.

Examples::

    python tools/export_onnx.py CONFIG CKPT model.onnx               # 512x512
    python tools/export_onnx.py CONFIG CKPT model.onnx --shape 800 1344
    python tools/export_onnx.py CONFIG CKPT backbone.onnx --backbone-only
    python tools/export_onnx.py CONFIG CKPT model.onnx --simplify --force

What is exported follows the config's ``default_scope``: a segmentor
(mmseg) becomes its whole-image inference (normalised images in, class
scores at the input size out); a detector (mmdet) goes through
``mmext.deploy.detector`` where that module exists, else its backbone and
neck are exported and the tool says so. ``--backbone-only`` exports the
backbone alone. Batch, height and width stay dynamic (``--static-hw`` fixes
height and width). Before the file is written, onnxruntime is compared with
PyTorch at the export size and at a second, smaller size; a difference
above ``1e-4`` (relative to the largest output) is an error. The file is
written atomically, never over an existing one without ``--force``.
"""
import argparse
import importlib
import os.path as osp
from typing import List, Sequence, Tuple

import torch

from .backbone import IMAGE_AXES, exportable_copy, feature_graph, \
    probe_example
from .onnx_export import (DEFAULT_OPSET, ExportError, check_onnx,
                          export_onnx, onnx_input_shapes, ort_session,
                          save_onnx, simplify_onnx)
from .segmentor import SegmentorGraph, test_mode_note

TOOL = 'tools/export_onnx.py'
#: largest accepted onnxruntime-vs-PyTorch error (relative to the largest
#: output; float32 graphs measure ~1e-6, see docs/deploy.md)
VERIFY_TOL = 1e-4
#: smallest export side: the stride-32 stage keeps two tokens per side
MIN_SIDE = 64


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=TOOL,
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument('checkpoint', help='checkpoint trained with it')
    parser.add_argument('out', help='ONNX file to write (.onnx)')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512),
                        metavar=('H', 'W'),
                        help='height and width of the example input the '
                        'graph is traced with (default 512 512)')
    parser.add_argument('--static-hw', action='store_true',
                        help='fix height and width to --shape (the batch '
                        'stays dynamic)')
    parser.add_argument('--opset', type=int,
                        help=f'ONNX opset (default {DEFAULT_OPSET}; the '
                        'detector export has its own default)')
    parser.add_argument('--simplify', action='store_true',
                        help='simplify the graph with onnxsim')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export the backbone alone')
    parser.add_argument('--no-verify', action='store_true',
                        help='skip the onnxruntime-vs-PyTorch check')
    parser.add_argument('--force', action='store_true',
                        help='overwrite OUT if it exists')
    parser.add_argument('--debug', action='store_true',
                        help='show the full traceback of an error')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from mmext.apis.launch import user_errors
    args = parse_args(argv)
    try:
        with user_errors(TOOL, debug=args.debug, extra=(ExportError, )):
            for line in run(args):
                print(line)
    except SystemExit as failed:
        return failed.code
    return 0


def check_args(args) -> None:
    """Every check that needs no model, before anything is built."""
    from mmext.apis.config_check import check_output_path
    from mmext.errors import ConfigError
    if not args.out.lower().endswith('.onnx'):
        raise ConfigError(f'output {args.out!r}: give a file name ending in '
                          '.onnx')
    check_output_path(args.out, 'output')
    if osp.exists(args.out) and not args.force:
        raise FileExistsError(f'{args.out} exists; pass --force to '
                              'overwrite it')
    if min(args.shape) < MIN_SIDE:
        raise ConfigError(f'--shape {args.shape[0]} {args.shape[1]}: export '
                          f'at {MIN_SIDE} pixels per side or more (the '
                          'graph runs smaller inputs too)')


def load_model(cfg, scope: str, checkpoint: str) -> torch.nn.Module:
    """The config's model with the checkpoint's weights, which must fit it
    exactly (keys and shapes)."""
    from mmengine.registry import DefaultScope
    from mmext.utils.checkpoint import (check_state_dict_fits,
                                        load_checkpoint_file,
                                        state_dict_from)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    state = state_dict_from(load_checkpoint_file(checkpoint, 'cpu'))
    check_state_dict_fits(
        model, state, f'checkpoint {checkpoint}',
        'Give the checkpoint trained with this config (or the config it was '
        'trained with).')
    model.load_state_dict(state, strict=False)  # fits: counters aside
    return model.eval()


def check_sizes(shape: Sequence[int], static: bool) -> List[Tuple[int, ...]]:
    """Input shapes of the onnxruntime check: the example (batch 2) and,
    with dynamic sizes, batch 1 at about 3/4 of it, off the example's
    multiples of 2 and 7 (padding and window counts differ)."""
    h, w = shape
    sizes = [(2, 3, h, w)]
    if static:
        sizes.append((1, 3, h, w))
    else:
        sizes.append((1, 3, max(MIN_SIDE, h * 3 // 4 + 5),
                      max(MIN_SIDE, w * 3 // 4 + 3)))
    return sizes


def run(args) -> List[str]:
    """Export as the arguments say; returns the lines to print."""
    from mmext.apis.config_check import (check_checkpoint, config_task,
                                         load_config)
    from mmext.errors import ConfigError
    check_args(args)
    cfg = load_config(args.config)
    scope = config_task(cfg, TOOL)
    check_checkpoint(args.checkpoint)
    detector = _detector_module() if scope == 'mmdet' and \
        not args.backbone_only else None
    if detector is None and args.opset is not None and args.opset < 18:
        raise ConfigError(f'--opset {args.opset}: torch.onnx (torch.export) '
                          'writes opset 18 or later')
    model = load_model(cfg, scope, args.checkpoint)
    if detector is not None:
        return _export_detector(detector, model, args)

    notes = []
    if scope == 'mmdet' and not args.backbone_only:
        notes.append('mmext.deploy.detector is not in this build: exported '
                     "the detector's backbone and neck only (no heads, NMS, "
                     'RoIAlign or masks)')
    model, changes = exportable_copy(model)
    notes += changes
    if args.backbone_only:
        graph, kind, out_name = feature_graph(model, with_neck=False), \
            'backbone', 'feat'
    elif scope == 'mmdet':
        graph, kind, out_name = feature_graph(model), 'backbone+neck', 'feat'
    else:
        graph, kind, out_name = SegmentorGraph(model), 'segmentor', 'scores'
        notes += test_mode_note(model)

    torch.manual_seed(0)
    sizes = check_sizes(args.shape, args.static_hw)
    example = torch.randn(*sizes[0])
    outputs = probe_example(graph, (example, ))
    names = [out_name] if len(outputs) == 1 else \
        [f'{out_name}{i}' for i in range(len(outputs))]
    axes = {0: 'batch'} if args.static_hw else IMAGE_AXES
    proto = export_onnx(graph, (example, ), ['image'], names,
                        dict(image=axes), opset=args.opset or DEFAULT_OPSET)
    if args.simplify:
        proto = simplify_onnx(proto)

    errors = []
    if not args.no_verify:
        session = ort_session(proto)
        inputs = [(torch.randn(*s), ) for s in sizes]
        errors = check_onnx(session, graph, inputs)
        for size, err in zip(sizes, errors):
            if err > VERIFY_TOL:
                raise ExportError(
                    f'onnxruntime differs from PyTorch by {err:.2g} '
                    f'(relative) at input {"x".join(map(str, size))}: the '
                    'graph is wrong there and was not written; rerun with '
                    '--debug and report it')
    meta = dict(mmext_config=osp.basename(args.config),
                mmext_checkpoint=osp.basename(args.checkpoint),
                mmext_graph=kind,
                mmext_export_shape=f'{args.shape[0]}x{args.shape[1]}',
                mmext_input='normalised image (the config data_preprocessor'
                '\'s mean/std, RGB)',
                mmext_preprocess=_preprocess_meta(cfg))
    save_onnx(proto, args.out, force=args.force, meta=meta)

    dims = onnx_input_shapes(proto)['image']
    lines = [
        f'wrote {args.out} ({osp.getsize(args.out) / 2**20:.1f} MiB): '
        f'{kind} graph, input image {dims} -> {", ".join(names)}'
    ]
    if errors:
        lines.append('onnxruntime vs PyTorch (max. relative error): ' +
                     ', '.join(f'{e:.1e} at {"x".join(map(str, s))}'
                               for s, e in zip(sizes, errors)))
    return lines + [f'note: {n}' for n in notes]


def _preprocess_meta(cfg) -> str:
    pre = cfg.model.get('data_preprocessor') or {}
    keys = ('mean', 'std', 'bgr_to_rgb')
    return str({k: pre.get(k) for k in keys if k in pre})


def _detector_module():
    """``mmext.deploy.detector`` (the Mask R-CNN export), if present."""
    try:
        module = importlib.import_module('mmext.deploy.detector')
    except ImportError:
        return None
    return module if hasattr(module, 'export_detector') else None


def _export_detector(detector, model, args) -> List[str]:
    h, w = args.shape
    torch.manual_seed(0)
    image = torch.rand(1, 3, h, w) * 255
    detector.export_detector(model, image, args.out, opset=args.opset,
                             dynamic=not args.static_hw,
                             overwrite=args.force)
    return [f'wrote {args.out} ({osp.getsize(args.out) / 2**20:.1f} MiB): '
            'detector graph (mmext.deploy.detector)']
