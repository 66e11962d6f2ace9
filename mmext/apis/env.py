"""Environment report for bug reports: ``python -m mmext.apis.env``.

``--check`` also proves the stack works (imports the downstream model zoos,
runs mmcv's compiled ops) and exits non-zero with a clear message if not.
"""
import argparse
import importlib
import platform
import sys
from collections import OrderedDict

PACKAGES = ('torch', 'torchvision', 'numpy', 'mmengine', 'mmcv', 'mmdet',
            'mmseg', 'mmpretrain', 'pycocotools', 'mmext')


def _version(name):
    try:
        module = importlib.import_module(name)
    except Exception as err:  # report, don't crash: this is a bug-report tool
        return f'not importable ({type(err).__name__}: {err})'
    return getattr(module, '__version__', 'installed')


def mmcv_ops_info():
    """Whether mmcv's compiled ops exist, and for which devices."""
    try:
        from mmcv.ops import get_compiler_version, get_compiling_cuda_version
    except Exception as err:
        return dict(compiled=False, error=f'{type(err).__name__}: {err}')
    cuda = get_compiling_cuda_version()
    return dict(
        compiled=True,
        compiler=get_compiler_version(),
        devices='cpu' + ('' if cuda == 'not available' else f', cuda {cuda}'))


def collect_env():
    info = OrderedDict()
    info['python'] = sys.version.split()[0]
    info['platform'] = platform.platform()
    for name in PACKAGES:
        info[name] = _version(name)
    try:
        import torch
        info['torch cuda build'] = torch.version.cuda or 'none'
        info['cuda available'] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info['gpus'] = ', '.join(
                torch.cuda.get_device_name(i)
                for i in range(torch.cuda.device_count()))
        info['torch threads'] = torch.get_num_threads()
    except Exception:
        pass
    ops = mmcv_ops_info()
    info['mmcv ops compiled'] = ops['compiled']
    info['mmcv ops devices'] = ops.get('devices', ops.get('error'))
    if 'compiler' in ops:
        info['mmcv ops compiler'] = ops['compiler']
    return info


def check_stack():
    """Return a list of problems; empty when the whole stack works."""
    problems = []
    for name in ('torchvision', 'mmdet.models', 'mmseg.models',
                 'mmpretrain.models', 'mmext.models'):
        try:
            importlib.import_module(name)
        except Exception as err:
            problems.append(f'import {name} failed: {type(err).__name__}: '
                            f'{err}')
    try:
        import torch
        from mmcv.ops import nms, roi_align
        devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
        for device in devices:
            boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.],
                                  [50., 50., 60., 60.]], device=device)
            scores = torch.tensor([0.9, 0.8, 0.7], device=device)
            _, keep = nms(boxes, scores, iou_threshold=0.5)
            if keep.tolist() != [0, 2]:
                problems.append(f'mmcv nms on {device} gave {keep.tolist()}, '
                                'expected [0, 2]')
            feats = torch.arange(16., device=device).view(1, 1, 4, 4)
            rois = torch.tensor([[0., 0., 0., 4., 4.]], device=device)
            pooled = roi_align(feats, rois, (2, 2), 1.0, 2, 'avg', True)
            if pooled.shape != (1, 1, 2, 2) or not torch.isfinite(
                    pooled).all():
                problems.append(f'mmcv roi_align on {device} is broken')
    except Exception as err:
        problems.append(
            f'mmcv compiled ops unusable ({type(err).__name__}: {err}); '
            'rebuild mmcv from source: `make install` (needs setuptools<81 '
            'and --no-build-isolation, see README troubleshooting)')
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='also verify the stack; exit 1 if broken')
    args = parser.parse_args(argv)
    for key, value in collect_env().items():
        print(f'{key}: {value}')
    if args.check:
        problems = check_stack()
        if problems:
            print('\nSTACK CHECK FAILED:', file=sys.stderr)
            for problem in problems:
                print(f'  - {problem}', file=sys.stderr)
            return 1
        print('\nstack check: OK (mmdet, mmseg, mmpretrain, torchvision '
              'import; mmcv nms/roi_align run)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
