"""``tools/test.py``: evaluate a checkpoint: COCO box/mask AP for detection
configs, mIoU (with the per-class table) for segmentation configs. A
checkpoint that does not fit the model or holds NaN / inf is refused.

Examples::

    python tools/test.py CONFIG CKPT                      # single scale
    python tools/test.py CONFIG CKPT --tta                # multi-scale + flip
    python tools/test.py CONFIG CKPT --show-dir vis/      # save drawings
    bash tools/dist_test.sh CONFIG CKPT 8 [--tta]
"""
import json
import os.path as osp

from mmengine.config import Config
from mmengine.logging import print_log

from mmext.datasets.checks import check_before_run
from mmext.utils.fileio import atomic_write
from .cli import load_cfg, parse_tool_args, run_tool, tool_parser
from .config_check import (ConfigError, check_checkpoint, check_data,
                           check_output_path, config_task)
from .launch import adapt_cfg_to_device, build_runner, init_distributed


def parse_args(argv=None):
    parser = tool_parser('test', work_dir_holds='the test log and metrics')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation from the config\'s tta_model / '
        'tta_pipeline (multi-scale + flip box/mask AP or mIoU)')
    parser.add_argument(
        '--out',
        help='detection: dump predictions to this .pkl file; segmentation: '
        'save predicted label maps (PNG) into this directory')
    parser.add_argument(
        '--show-dir', help='save images with predictions drawn into this dir')
    parser.add_argument(
        '--show', action='store_true', help='display predictions in a window')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='display time (s)')
    parser.add_argument(
        '--allow-mismatch',
        action='store_true',
        help='test a checkpoint whose keys or shapes do not fit the model '
        '(by default refused: its metrics would be those of random weights)')
    return parse_tool_args(parser, argv)


def _setup_visualization(cfg: Config, args, task: str) -> None:
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise ConfigError('--show/--show-dir need default_hooks.visualization '
                          'in the config')
    vis = hooks.visualization
    vis['draw'] = True
    if args.show:
        vis['show'] = True
        vis['wait_time'] = args.wait_time
    if args.show_dir:
        show_dir = osp.abspath(args.show_dir)
        if task == 'mmdet':
            # absolute, so the hook does not nest it under the work dir
            vis['test_out_dir'] = show_dir
        else:
            vis['interval'] = 1
            cfg.visualizer['save_dir'] = show_dir


def setup_cfg(args):
    cfg = load_cfg(args)
    check_checkpoint(args.checkpoint, 'checkpoint to test')
    task = config_task(cfg, 'tools/test.py')
    cfg.load_from = args.checkpoint
    cfg.resume = False
    adapt_cfg_to_device(cfg)
    if args.show or args.show_dir:
        _setup_visualization(cfg, args, task)
    if args.tta:
        from .tta import apply_tta
        apply_tta(cfg, args.config, task)
    if args.out and task == 'mmseg':
        evaluator = cfg.test_evaluator
        evaluator['output_dir'] = args.out
        evaluator['keep_results'] = True
    elif args.out and not args.out.endswith(('.pkl', '.pickle')):
        raise ConfigError(f'--out {args.out!r}: detection results are dumped '
                          'to a .pkl file')
    if args.out:
        check_output_path(args.out, '--out', folder=task == 'mmseg')
    if args.show_dir:
        check_output_path(args.show_dir, '--show-dir', folder=True)
    check_data(cfg, ['test'])
    if not args.skip_data_check:
        check_before_run(cfg, ['test'],
                         log=lambda msg: print_log(msg, logger='current'))
    return cfg, task


def main(argv=None):
    return run_tool(_run, parse_args(argv))


def _run(args):
    cfg, task = setup_cfg(args)
    init_distributed(args.launcher, cfg.get('env_cfg', {}).get('dist_cfg'))
    runner = build_runner(cfg)
    # a checkpoint of another config would be evaluated as random weights
    runner.strict_load = not args.allow_mismatch
    if args.out and task == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    metrics = runner.test()
    if runner.rank == 0:
        mode = 'multi-scale + flip (--tta)' if args.tta else 'single scale'
        summary = {k: (round(v, 4) if isinstance(v, float) else v)
                   for k, v in metrics.items()}
        print_log(f'test results ({mode}): '
                  f'{json.dumps(summary, default=float)}',
                  logger='current')
        with atomic_write(osp.join(runner.log_dir, 'test_metrics.json'),
                          'w') as f:
            json.dump(dict(config=args.config, checkpoint=args.checkpoint,
                           tta=args.tta, metrics=metrics), f, indent=2,
                      default=float)
    return metrics
