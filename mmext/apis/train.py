"""``tools/train.py``: train a detector or a segmentor from an mmext config.

One entry point for mmdet and mmseg configs: the registry scope comes from
the config's ``default_scope``. Examples::

    python tools/train.py configs/detection/dualvit_s_maskrcnn_1x.py
    python tools/train.py CONFIG --resume                 # latest in work dir
    python tools/train.py CONFIG --resume work_dirs/x/iter_8000.pth

Checkpoints are written crash-safe (mmext.engine.SafeCheckpointHook): a run
killed at any moment leaves a checkpoint that ``--resume`` can continue from.
    bash tools/dist_train.sh CONFIG 8                     # torchrun, 8 GPUs
    python tools/train.py CONFIG --save-on-sigterm        # SLURM, preemption

Before any work the data is checked (mmext.datasets.checks, quick level), a
``--resume`` checkpoint must fit the config's model, and the work dir is
locked against a second run (mmext.utils.lock).
"""
import contextlib

from mmengine.config import Config
from mmengine.dist import broadcast_object_list, get_dist_info
from mmengine.logging import print_log

from mmext.datasets.checks import check_before_run
from mmext.errors import WorkDirLockedError
from mmext.utils.checkpoint import resume_checkpoint
from mmext.utils.lock import WorkDirLock
from .amp import enable_amp
from .cli import load_cfg, parse_tool_args, run_tool, tool_parser
from .config_check import (ConfigError, check_checkpoint, check_data,
                           check_pretrained)
from .launch import adapt_cfg_to_device, build_runner, init_distributed
from .resume_check import check_resume_fits


def parse_args(argv=None):
    parser = tool_parser('train', work_dir_holds='logs and checkpoints')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision: float16 with dynamic loss scaling on a GPU, '
        'bfloat16 autocast on a CPU')
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
        '--save-on-sigterm',
        action='store_true',
        help='on SIGTERM (a scheduler stopping or preempting the job) '
        'finish the iteration and save a resumable checkpoint before '
        'exiting with status 143')
    return parse_tool_args(parser, argv)


def setup_cfg(args) -> Config:
    cfg = load_cfg(args)
    if args.amp:
        enable_amp(cfg)
    adapt_cfg_to_device(cfg)
    if args.save_on_sigterm:
        hooks = cfg.setdefault('default_hooks', {})
        hooks['preemption'] = dict(hooks.get('preemption') or {},
                                   save_checkpoint=True)

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
    if cfg.get('resume'):
        if cfg.get('load_from'):
            check_checkpoint(cfg.load_from, 'checkpoint to resume from')
        # decided before anything is built; where checkpoints exist but
        # none is usable, this stops
        cfg.load_from = resume_checkpoint(
            cfg.get('load_from'), cfg.work_dir,
            log=lambda msg: print_log(msg, logger='current'))
        cfg.resume = cfg.load_from is not None
    else:
        check_checkpoint(cfg.get('load_from'), 'load_from checkpoint')
    if cfg.get('resume'):
        check_resume_fits(cfg, cfg.load_from)

    # fail early, before a model is built or workers are started (the
    # runner initialises weights before it resumes, so this holds for
    # --resume too)
    check_pretrained(cfg)
    splits = ['train']
    if cfg.get('val_cfg') and cfg.get('val_dataloader'):
        splits.append('val')
    check_data(cfg, splits)
    if not args.skip_data_check:
        check_before_run(cfg, splits,
                         log=lambda msg: print_log(msg, logger='current'))
    return cfg


@contextlib.contextmanager
def hold_work_dir(work_dir: str):
    """Hold the work dir's lock for the run (taken by the first process;
    every process stops if another run holds it)."""
    lock = WorkDirLock(work_dir)
    refused = ''
    if get_dist_info()[0] == 0:
        try:
            lock.acquire()
        except WorkDirLockedError as err:
            refused = str(err)
    if get_dist_info()[1] > 1:
        shared = [refused]
        broadcast_object_list(shared, src=0)
        refused = shared[0]
    if refused:
        raise WorkDirLockedError(refused)
    try:
        yield
    finally:
        lock.release()


def main(argv=None):
    run_tool(_run, parse_args(argv))


def _run(args):
    cfg = setup_cfg(args)
    init_distributed(args.launcher, cfg.get('env_cfg', {}).get('dist_cfg'))
    with hold_work_dir(cfg.work_dir):
        runner = build_runner(cfg)
        runner.train()
