"""``tools/train.py``: train a detector or a segmentor from an mmext config.

One entry point for mmdet and mmseg configs: the registry scope comes from
the config's ``default_scope``. Examples::

    python tools/train.py configs/detection/dualvit_s_maskrcnn_1x.py
    python tools/train.py CONFIG --resume                 # latest in work dir
    python tools/train.py CONFIG --resume work_dirs/x/iter_8000.pth

Checkpoints are written crash-safe (mmext.engine.SafeCheckpointHook): a run
killed at any moment leaves a checkpoint that ``--resume`` can continue from.
    bash tools/dist_train.sh CONFIG 8                     # torchrun, 8 GPUs
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from mmext.utils.checkpoint import check_resumable, find_resume_checkpoint
from .config_check import (ConfigError, check_cfg_options, check_checkpoint,
                           check_data, check_output_path, check_pretrained,
                           load_config)
from .launch import (adapt_cfg_to_device, build_runner, enable_amp,
                     init_distributed, user_errors)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a detector / segmentor (mmdet or mmseg config)')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go '
        '(default: work_dirs/<config name>)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision (GPU only; ignored with a message on CPU)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume: from CKPT if given, else from the latest checkpoint '
        'in the work dir')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by (total batch / auto_scale_lr.'
        'base_batch_size)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. train_cfg.max_iters=100 '
        'model.backbone.init_cfg=None; a key that does not exist is an '
        'error')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='job launcher (tools/dist_train.sh uses pytorch)')
    parser.add_argument(
        '--debug',
        action='store_true',
        help='show the full traceback of an error (it is always written '
        'to the log file once the run has one)')
    # torch.distributed.launch (deprecated) passes --local-rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def setup_cfg(args) -> Config:
    cfg = load_config(args.config)
    check_cfg_options(cfg, args.cfg_options, args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    check_output_path(cfg.work_dir, 'work dir', folder=True)

    if args.amp:
        enable_amp(cfg)
    adapt_cfg_to_device(cfg)

    if args.auto_scale_lr:
        scale = cfg.get('auto_scale_lr')
        if not scale or 'base_batch_size' not in scale:
            raise ConfigError(
                f'--auto-scale-lr: {args.config} has no '
                'auto_scale_lr.base_batch_size (the batch size its learning '
                'rate was set for)')
        scale['enable'] = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if cfg.get('resume') and not cfg.get('load_from'):
        # the newest complete checkpoint of the work dir, decided before
        # anything is built; nothing usable where checkpoints exist stops
        cfg.load_from = find_resume_checkpoint(
            cfg.work_dir, log=lambda msg: print_log(msg, logger='current'))
        if cfg.load_from is None:
            print_log(f'--resume: no checkpoint in {cfg.work_dir}; training '
                      'starts from scratch.', logger='current')
            cfg.resume = False
    elif cfg.get('resume'):
        check_checkpoint(cfg.load_from, 'checkpoint to resume from')
        check_resumable(cfg.load_from)
    else:
        check_checkpoint(cfg.get('load_from'), 'load_from checkpoint')

    # fail early, before a model is built or workers are started (the
    # runner initialises weights before it resumes, so this holds for
    # --resume too)
    check_pretrained(cfg)
    splits = ['train']
    if cfg.get('val_cfg') and cfg.get('val_dataloader'):
        splits.append('val')
    check_data(cfg, splits)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    # every failure: one line naming the problem and exit status 1; the
    # traceback goes to the log file (and to the terminal with --debug)
    with user_errors(osp.basename(sys.argv[0]), debug=args.debug):
        cfg = setup_cfg(args)
        init_distributed(args.launcher,
                         cfg.get('env_cfg', {}).get('dist_cfg'))
        runner = build_runner(cfg)
        runner.train()

