"""Launch helpers shared by the train and test entry points.

mmengine assumes a GPU per process once it runs distributed: its ``pytorch``
and ``slurm`` launchers call ``torch.cuda.set_device`` and its default DDP
wrapper passes ``device_ids``. Both fail on a CPU-only machine (even with a
CUDA build of torch). The helpers here

* initialise ``torch.distributed`` from torchrun / SLURM variables ourselves:
  NCCL (through mmengine) when CUDA is available, gloo otherwise;
* build the runner (:class:`mmext.engine.MMExtRunner`: SyncBN to BN where it
  cannot work, DDP without ``device_ids`` on CPU, crash-safe checkpoints);
* adapt a config to the device: without a GPU, AMP runs in bfloat16 on the
  CPU (:mod:`mmext.apis.amp`) and distributed runs use gloo.
"""
import contextlib
import datetime
import os
import signal
import subprocess
import sys
import threading
from typing import Optional, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.dist import get_dist_info, init_dist, is_distributed
from mmengine.logging import print_log
from mmengine.runner import Runner

from mmext.engine.preemption import EXIT_TERMINATED, install_sigterm_handler
from mmext.errors import USER_ERRORS, ConfigError, LaunchError  # noqa: F401
from mmext.errors import Terminated, worker_error_summary
from .amp import amp_for_cpu


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

    * Without CUDA, ``AmpOptimWrapper`` (which needs a GPU) becomes
      bfloat16 autocast on the CPU (:func:`mmext.apis.amp.amp_for_cpu`).
    * Without CUDA, distributed runs use gloo.
    """
    if cuda_available():
        return
    amp_for_cpu(cfg)
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        dist_cfg['backend'] = 'gloo'


def build_runner(cfg: Config) -> Runner:
    """Build the runner; a config's own ``runner_type`` is honoured only on
    GPU machines (on CPU the mmext runner is required), with the crash-safe
    checkpoint hook all the same."""
    if 'runner_type' in cfg and cuda_available():
        from mmengine.registry import RUNNERS

        from mmext.engine.compile import compile_backbone_hook
        from mmext.engine.hooks import mmext_default_hooks
        cfg.default_hooks = mmext_default_hooks(cfg.get('default_hooks'))
        runner = RUNNERS.build(cfg)
        hook = compile_backbone_hook(cfg)  # MMExtRunner does this itself
        if hook is not None:
            runner.register_hook(hook)
        return runner
    from mmext.engine import MMExtRunner
    return MMExtRunner.from_cfg(cfg)


def _log_traceback_to_file(exc: BaseException) -> Optional[str]:
    """Write the traceback of ``exc`` (and the traceback it carries from a
    DataLoader worker) to the current run's log file only (not the
    terminal); returns the file, or None if no log file is open."""
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
    if getattr(exc, 'detail', ''):
        text += f'{exc.detail}\n'
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
    that mean a user's mistake. SIGTERM (at any moment) ends the tool with
    one line and exit status 143, Ctrl-C with 130."""
    previous = _raise_on_sigterm()
    try:
        yield
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write(f'{prog}: interrupted\n')
        raise SystemExit(130) from None
    except Terminated as stop:
        if debug:
            raise
        _log_traceback_to_file(stop)
        sys.stderr.write(f'{prog}: {stop}\n')
        raise SystemExit(EXIT_TERMINATED) from None
    except Exception as err:  # noqa: BLE001 - every failure, one line
        if debug:
            raise
        log_file = _log_traceback_to_file(err)
        text = ' '.join(str(err).split()) or type(err).__name__
        if not isinstance(err, USER_ERRORS + tuple(extra)):
            where = f'traceback in {log_file}' if log_file else \
                'rerun with --debug for the traceback'
            # a DataLoader worker's error arrives as its whole traceback
            original = worker_error_summary(str(err))
            if original:
                text = f'{original} (in a DataLoader worker; {where})'
            else:
                text = f'{type(err).__name__}: {text} ({where})'
        sys.stderr.write(f'{prog}: error: {text}\n')
        raise SystemExit(1) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_on_sigterm():
    """Until a run installs its own handler (mmext.engine.PreemptionHook),
    SIGTERM stops the tool as Ctrl-C does; returns the previous handler
    (None outside the main thread, where no handler can be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop():
        raise Terminated('stopped by SIGTERM')

    return install_sigterm_handler(stop)
