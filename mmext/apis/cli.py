"""What the train and test entry points share: their common arguments, the
config with its ``--cfg-options``, the work dir, and one line per error."""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction

from .config_check import check_output_path, load_config_with_options
from .launch import user_errors

#: ``--compile-backbone`` modes -> ``compile_backbone`` (torch.compile's
#: ``dynamic``)
COMPILE_MODES = dict(auto=dict(dynamic=None),
                     dynamic=dict(dynamic=True),
                     static=dict(dynamic=False))


def tool_parser(task: str, work_dir_holds: str) -> argparse.ArgumentParser:
    """The parser of ``tools/{task}.py`` ('train' or 'test') with ``config``
    and the options every run takes; ``work_dir_holds`` says what
    ``--work-dir`` receives."""
    parser = argparse.ArgumentParser(
        description=f'{task.capitalize()} a detector / segmentor (mmdet or '
        'mmseg config)')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--work-dir',
        help=f'where {work_dir_holds} go (default: work_dirs/<config name>)')
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
        help=f'job launcher (tools/dist_{task}.sh uses pytorch)')
    parser.add_argument(
        '--skip-data-check',
        action='store_true',
        help='do not check the data set first (the quick check reads the '
        'annotations and lists the image folders; tools/check_data.py '
        'makes the full one)')
    parser.add_argument(
        '--compile-backbone',
        nargs='?',
        const='auto',
        choices=sorted(COMPILE_MODES),
        help='torch.compile the backbone (config key compile_backbone; '
        'docs/compile.md): auto (default: one graph for the first input '
        'size, one with dynamic height/width after the next), dynamic '
        '(dynamic from the first call) or static (one graph per size)')
    parser.add_argument(
        '--debug',
        action='store_true',
        help='show the full traceback of an error (it is always written '
        'to the log file once the run has one)')
    # torch.distributed.launch (deprecated) passes --local-rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse_tool_args(parser: argparse.ArgumentParser, argv=None):
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_cfg(args) -> Config:
    """``args.config`` with ``--cfg-options`` merged in (each key checked
    against the config first), the launcher and the work dir (default
    ``work_dirs/<config name>``, checked to be writable)."""
    cfg = load_config_with_options(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    check_output_path(cfg.work_dir, 'work dir', folder=True)
    if args.compile_backbone:
        cfg.compile_backbone = COMPILE_MODES[args.compile_backbone]
    return cfg


def run_tool(run, args):
    """``run(args)``; every failure becomes one line naming the problem and
    exit status 1, its traceback going to the log file (and to the
    terminal with ``--debug``)."""
    with user_errors(osp.basename(sys.argv[0]), debug=args.debug):
        return run(args)
