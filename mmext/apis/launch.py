"""Launch helpers shared by the train and test entry points.

mmengine assumes a GPU per process once it runs distributed: its ``pytorch``
and ``slurm`` launchers call ``torch.cuda.set_device`` and its default DDP
wrapper passes ``device_ids``. Both fail on a CPU-only machine (even with a
CUDA build of torch). The helpers here

* initialise ``torch.distributed`` from torchrun / SLURM variables ourselves:
  NCCL (through mmengine) when CUDA is available, gloo otherwise;
* build the runner (:class:`mmext.engine.MMExtRunner`: SyncBN to BN where it
  cannot work, DDP without ``device_ids`` on CPU, crash-safe checkpoints);
* adapt a config to the device: AMP falls back to fp32 without a GPU.
"""
import contextlib
import datetime
import os
import subprocess
import sys
from typing import Optional, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.dist import get_dist_info, init_dist, is_distributed
from mmengine.logging import print_log
from mmengine.runner import Runner

from mmext.errors import USER_ERRORS, ConfigError, LaunchError  # noqa: F401

#: ``optim_wrapper`` keys that only :class:`AmpOptimWrapper` accepts.
_AMP_ONLY_KEYS = ('loss_scale', 'dtype', 'use_fsdp')


def cuda_available() -> bool:
    return torch.cuda.is_available()


def _timeout(dist_cfg: dict) -> Optional[datetime.timedelta]:
    seconds = dist_cfg.get('timeout')
    return None if seconds is None else datetime.timedelta(seconds=seconds)


def _slurm_env() -> None:
    """Translate SLURM's variables into torch.distributed's."""
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    local_id = int(os.environ.get('SLURM_LOCALID', 0))
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ['SLURM_NODELIST']
        first = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1').strip()
        os.environ['MASTER_ADDR'] = first or '127.0.0.1'
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['RANK'] = str(proc_id)
    os.environ['LOCAL_RANK'] = str(local_id)


def init_distributed(launcher: str,
                     dist_cfg: Optional[dict] = None) -> Tuple[int, int]:
    """Initialise the default process group for ``launcher`` ('pytorch' from
    torchrun, or 'slurm'); returns ``(rank, world_size)``.

    With CUDA this is mmengine's ``init_dist`` (NCCL by default). Without it
    the gloo backend is used and no CUDA call is made.
    """
    if launcher == 'none' or is_distributed():
        return get_dist_info()
    dist_cfg = dict(dist_cfg or {})
    if launcher == 'slurm':
        _slurm_env()
    elif launcher != 'pytorch':
        raise ValueError(f'unsupported launcher {launcher!r}: use none, '
                         'pytorch (torchrun, tools/dist_*.sh) or slurm')
    missing = [
        k for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                    'MASTER_PORT') if k not in os.environ
    ]
    if missing:
        raise LaunchError(
            f'--launcher {launcher} needs the environment variables '
            f'{", ".join(missing)}; start the job with tools/dist_train.sh / '
            'tools/dist_test.sh (torchrun) or tools/slurm_train.sh, or use '
            '--launcher none for a single process.')
    if cuda_available():
        if launcher == 'pytorch':
            # NCCL and one GPU per process, as mmengine does it
            init_dist('pytorch', **dist_cfg)
        else:
            local_rank = int(os.environ['LOCAL_RANK'])
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
            torch_dist.init_process_group(
                backend=dist_cfg.get('backend', 'nccl'),
                timeout=_timeout(dist_cfg))
    else:
        backend = dist_cfg.get('backend', 'gloo')
        if backend != 'gloo':
            print_log(
                f'no GPU: using the gloo backend instead of {backend}',
                logger='current')
        kwargs = {}
        if _timeout(dist_cfg) is not None:
            kwargs['timeout'] = _timeout(dist_cfg)
        torch_dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **kwargs)
    return get_dist_info()


def adapt_cfg_to_device(cfg: Config) -> None:
    """Device-dependent config changes, each announced in the log.

    * Without CUDA, ``AmpOptimWrapper`` (which needs a GPU) becomes the plain
      fp32 ``OptimWrapper``.
    * Without CUDA, distributed runs use gloo.
    """
    if cuda_available():
        return
    optim = cfg.get('optim_wrapper')
    if optim is not None and optim.get('type') == 'AmpOptimWrapper':
        optim['type'] = 'OptimWrapper'
        for key in _AMP_ONLY_KEYS:
            optim.pop(key, None)
        print_log(
            'AMP (AmpOptimWrapper) needs a GPU; no GPU found, so training '
            'runs in fp32 with OptimWrapper.',
            logger='current')
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        dist_cfg['backend'] = 'gloo'


def enable_amp(cfg: Config) -> None:
    """``--amp``: mixed precision with dynamic loss scaling."""
    optim = cfg.optim_wrapper
    if optim.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        print_log('AMP is already enabled in the config.', logger='current')
        return
    if optim.get('type', 'OptimWrapper') != 'OptimWrapper':
        raise ConfigError(
            f'--amp only applies to OptimWrapper, but the config uses '
            f'{optim.get("type")}')
    optim['type'] = 'AmpOptimWrapper'
    optim.setdefault('loss_scale', 'dynamic')


def build_runner(cfg: Config) -> Runner:
    """Build the runner; a config's own ``runner_type`` is honoured only on
    GPU machines (on CPU the mmext runner is required), with the crash-safe
    checkpoint hook all the same."""
    if 'runner_type' in cfg and cuda_available():
        from mmengine.registry import RUNNERS

        from mmext.engine.hooks import safe_checkpoint_cfg
        hooks = cfg.setdefault('default_hooks', {})
        hooks['checkpoint'] = safe_checkpoint_cfg(
            hooks.get('checkpoint', dict(type='CheckpointHook', interval=1)))
        return RUNNERS.build(cfg)
    from mmext.engine import MMExtRunner
    return MMExtRunner.from_cfg(cfg)


def _log_traceback_to_file(exc: BaseException) -> Optional[str]:
    """Write the traceback of ``exc`` to the current run's log file only
    (not the terminal); returns the file, or None if no log file is open."""
    import logging
    import traceback

    from mmengine.logging import MMLogger
    if not MMLogger._instance_dict:  # no run has started logging
        return None
    logger = MMLogger.get_current_instance()
    files = [h for h in logger.handlers
             if isinstance(h, logging.FileHandler) and h.stream is not None]
    if not files:
        return None
    text = ''.join(traceback.format_exception(type(exc), exc,
                                              exc.__traceback__))
    for handler in files:
        handler.stream.write(text)
        handler.flush()
    return files[0].baseFilename


@contextlib.contextmanager
def user_errors(prog: str, debug: bool = False, extra: tuple = ()):
    """Turn an exception escaping a command-line tool into one line on
    stderr (``PROG: error: ...``) and exit status 1. The traceback goes to
    the run's log file when one is open, and to the terminal with
    ``--debug``. Errors raised for a user's mistake (a bad file, key or
    option) carry the fix in their message; anything else is named by its
    type, with where to find the traceback. ``extra``: more exception types
    that mean a user's mistake."""
    try:
        yield
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write(f'{prog}: interrupted\n')
        raise SystemExit(130) from None
    except Exception as err:  # noqa: BLE001 - every failure, one line
        if debug:
            raise
        log_file = _log_traceback_to_file(err)
        text = ' '.join(str(err).split()) or type(err).__name__
        if not isinstance(err, USER_ERRORS + tuple(extra)):
            where = f'traceback in {log_file}' if log_file else \
                'rerun with --debug for the traceback'
            text = f'{type(err).__name__}: {text} ({where})'
        sys.stderr.write(f'{prog}: error: {text}\n')
        raise SystemExit(1) from None

