"""Launch helpers shared by ``tools/train.py`` and ``tools/test.py``.

mmengine assumes a GPU per process once it runs distributed: its ``pytorch``
and ``slurm`` launchers call ``torch.cuda.set_device`` and its default DDP
wrapper passes ``device_ids``. Both fail on a CPU-only machine (even with a
CUDA build of torch). The helpers here

* initialise ``torch.distributed`` from torchrun / SLURM variables ourselves:
  NCCL (through mmengine) when CUDA is available, gloo otherwise;
* build a :class:`Runner` whose ``wrap_model`` converts SyncBN to BN when it
  cannot work (one process, or CPU) and wraps DDP without ``device_ids`` on
  CPU;
* adapt a config to the device: AMP falls back to fp32 without a GPU.
"""
import datetime
import os
import subprocess
from typing import Optional, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.dist import get_dist_info, init_dist, is_distributed
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import Runner
from torch import nn

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
        raise RuntimeError(
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
        raise ValueError(
            f'--amp only applies to OptimWrapper, but the config uses '
            f'{optim.get("type")}')
    optim['type'] = 'AmpOptimWrapper'
    optim.setdefault('loss_scale', 'dynamic')


def count_sync_bn(model: nn.Module) -> int:
    return sum(
        isinstance(m, nn.SyncBatchNorm)
        or type(m).__name__ == 'SyncBatchNorm' for m in model.modules())


class MMExtRunner(Runner):
    """``Runner`` that also works distributed on CPU (gloo).

    * SyncBN layers become BN (with a log line) in a single process or on
      CPU, where synchronised BN cannot run.
    * On CPU, DDP is built without ``device_ids``.
    """

    def wrap_model(self, model_wrapper_cfg: Optional[dict],
                   model: nn.Module) -> nn.Module:
        if is_model_wrapper(model):
            return super().wrap_model(model_wrapper_cfg, model)
        on_cpu = get_device() == 'cpu'
        if not self.distributed or on_cpu:
            num = count_sync_bn(model)
            if num:
                why = ('single process' if not self.distributed else
                       'CPU (SyncBN needs GPUs)')
                self.logger.info(
                    f'SyncBN -> BN: converted {num} SyncBatchNorm layer(s) '
                    f'to BatchNorm ({why}); statistics are per process.')
                model = revert_sync_batchnorm(model)
        if not (self.distributed and on_cpu):
            return super().wrap_model(model_wrapper_cfg, model)

        model = model.to('cpu')
        wrapper_cfg = dict(model_wrapper_cfg or {})
        wrapper_cfg.setdefault('type', 'MMDistributedDataParallel')
        wrapper_cfg.setdefault('broadcast_buffers', False)
        wrapper_cfg.setdefault(
            'find_unused_parameters',
            self.cfg.get('find_unused_parameters', False))
        self.logger.info(
            f'CPU distributed run: {wrapper_cfg["type"]} over gloo, '
            f'world size {self.world_size}.')
        return MODEL_WRAPPERS.build(
            wrapper_cfg, default_args=dict(module=model))


def build_runner(cfg: Config) -> Runner:
    """Build the runner; a config's own ``runner_type`` is honoured only on
    GPU machines (on CPU the mmext runner is required)."""
    if 'runner_type' in cfg and cuda_available():
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return MMExtRunner.from_cfg(cfg)
