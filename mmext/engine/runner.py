"""mmext's runner: mmengine's ``Runner`` that also runs distributed on CPU,
keeps checkpoints crash-safe and refuses checkpoints that cannot be right."""
from typing import Optional

from mmengine.device import get_device
from mmengine.model import is_model_wrapper, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import Runner
from torch import nn

from mmext.utils.checkpoint import (check_finite_weights,
                                    check_state_dict_fits,
                                    load_checkpoint_file, resume_checkpoint,
                                    state_dict_from)
from .compile import compile_backbone_hook
from .data_errors import guard_pipelines
from .hooks import mmext_default_hooks
from .preemption import ignore_sigterm_in_workers


def count_sync_bn(model: nn.Module) -> int:
    return sum(
        isinstance(m, nn.SyncBatchNorm)
        or type(m).__name__ == 'SyncBatchNorm' for m in model.modules())


class MMExtRunner(Runner):
    """``Runner`` with these changes:

    * SyncBN layers become BN (with a log line) in a single process or on
      CPU, where synchronised BN cannot run; on CPU, DDP is built without
      ``device_ids`` (gloo).
    * mmengine's ``CheckpointHook`` is replaced by
      :class:`~mmext.engine.hooks.SafeCheckpointHook` (same options), and
      ``default_hooks`` gain ``nonfinite``
      (:class:`~mmext.engine.nonfinite.NonFiniteCheckHook`) and
      ``preemption`` (:class:`~mmext.engine.preemption.PreemptionHook`);
      set one to None to leave it out.
    * A sample that fails to load names its file
      (:func:`~mmext.engine.data_errors.guard_pipelines`); DataLoader
      workers ignore SIGTERM (the main process decides how to stop).
    * ``resume=True`` without a file takes the newest *complete* checkpoint
      of the work dir, says when there is none (and starts from scratch),
      and stops with one line when there are checkpoints but none is usable;
      a file that is not a training checkpoint is refused before loading.
    * ``compile_backbone`` in the config (True or ``torch.compile``
      keywords) compiles the model's backbone
      (:class:`~mmext.engine.compile.CompileBackboneHook`).
    * With ``strict_load = True`` (``tools/test.py``), ``load_from`` must
      fit the model exactly (keys and shapes), otherwise
      :class:`~mmext.utils.checkpoint.CheckpointMismatchError`.
    * A checkpoint with NaN or inf weights is never loaded
      (:class:`~mmext.utils.checkpoint.NonFiniteCheckpointError`).
    """

    #: refuse a ``load_from`` checkpoint that does not fit the model
    strict_load = False

    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        super().register_hooks(default_hooks, custom_hooks)
        hook = compile_backbone_hook(self.cfg)
        if hook is not None:
            self.register_hook(hook)

    def register_default_hooks(self, hooks: Optional[dict] = None) -> None:
        super().register_default_hooks(mmext_default_hooks(hooks))

    @staticmethod
    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        loader = Runner.build_dataloader(dataloader, seed=seed,
                                         diff_rank_seed=diff_rank_seed)
        # before the loop starts the workers, which copy the dataset
        guard_pipelines(loader.dataset)
        ignore_sigterm_in_workers(loader)
        return loader

    def load_or_resume(self) -> None:
        if self._has_loaded:
            return None
        if self._resume:
            self._load_from = resume_checkpoint(self._load_from,
                                                self.work_dir,
                                                log=self.logger.warning)
            self._resume = self._load_from is not None
        return super().load_or_resume()

    def load_checkpoint(self, filename: str, *args, **kwargs):
        # mapped, not read: the tensors are read once more by the real load,
        # from the page cache
        state = state_dict_from(
            load_checkpoint_file(filename, map_location='cpu', mmap=True))
        if self.strict_load:
            check_state_dict_fits(
                self.model, state, f'checkpoint {filename}',
                'Is it a checkpoint of this config? (--allow-mismatch tests '
                'it anyway)')
        check_finite_weights(state, f'checkpoint {filename}')
        return super().load_checkpoint(filename, *args, **kwargs)

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
