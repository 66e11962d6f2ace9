"""``tools/check_data.py``: the data checks of :mod:`mmext.datasets.checks`
for every dataset of a config, quick (what training runs before it starts)
or full (every image and label map decoded), as a report."""
import argparse
import json
import os
import os.path as osp
import sys
import time

from mmengine.config import DictAction

from mmext.datasets.checks import (ERROR, NOTE, WARNING, dataset_specs,
                                   full_check, quick_check)
from mmext.utils.fileio import atomic_write
from .config_check import (check_data, check_output_path,
                           load_config_with_options)
from .launch import user_errors

_LABELS = {ERROR: 'ERROR  ', WARNING: 'warning', NOTE: 'note   '}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Check the data sets of a config: missing or '
        'undecodable images, inconsistent annotations, label maps of the '
        'wrong size or with values outside the classes')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--splits', nargs='+', default=['train', 'val', 'test'],
        choices=['train', 'val', 'test'], help='dataloaders to check')
    parser.add_argument(
        '--quick', action='store_true',
        help='only what tools/train.py checks before training (annotations '
        'and file lists; nothing decoded)')
    parser.add_argument(
        '--workers', type=int, default=min(8, os.cpu_count() or 1),
        help='processes that decode images (full check)')
    parser.add_argument(
        '--examples', type=int, default=5,
        help='files named per problem')
    parser.add_argument('--out', help='also write the report as JSON here')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config keys (e.g. a data_root)')
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an error')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with user_errors(osp.basename(sys.argv[0]), debug=args.debug):
        return _run(args)


def _run(args) -> int:
    cfg = load_config_with_options(args.config, args.cfg_options)
    if args.out:
        check_output_path(args.out, '--out')
    splits = [s for s in args.splits if cfg.get(f'{s}_dataloader')]
    check_data(cfg, splits)  # missing folders / annotation files first
    report, errors = [], 0
    for spec in dataset_specs(cfg, splits):
        source = spec['ann_file'] or spec['seg_dir']
        print(f'{spec["where"]}: {source}, images in {spec["img_dir"]}')
        start = time.perf_counter()
        if args.quick:
            found = quick_check(spec, args.examples)
        else:
            found = full_check(
                spec, workers=args.workers, examples=args.examples,
                progress=lambda n: print(f'  ... {n} decoded', flush=True))
        seconds = time.perf_counter() - start
        lines = [(sev, line) for sev in (ERROR, WARNING, NOTE)
                 for line in found.lines(sev)]
        for severity, line in lines:
            print(f'  {_LABELS[severity]} {line}')
        if not lines:
            print('  ok: no problem found')
        print(f'  ({"quick" if args.quick else "full"} check, '
              f'{seconds:.1f} s)')
        errors += len(found.kinds(ERROR))
        report.append(dict(spec, kind=spec.kind, seconds=round(seconds, 3),
                           problems=found.to_dict()))
    if args.out:
        with atomic_write(args.out, 'w', force=True) as f:
            json.dump(dict(config=args.config, quick=args.quick,
                           datasets=report), f, indent=2, default=str)
    return 1 if errors else 0
