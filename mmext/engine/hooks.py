"""A checkpoint hook whose files survive a kill at any moment.

mmengine's ``CheckpointHook`` deletes the oldest checkpoint *before* writing
the new one, writes the new one in place (a kill leaves a truncated or empty
file under its final name) and then rewrites ``last_checkpoint`` in place. A
run killed while saving can thus be left with nothing to resume from.

:class:`SafeCheckpointHook` keeps the hook's options and file names and
changes only the order and the way of writing:

1. the checkpoint is written to a temporary file in the same folder,
   fsynced and renamed (:func:`mmext.utils.fileio.atomic_write`);
2. then ``last_checkpoint`` is replaced the same way;
3. only then are checkpoints beyond ``max_keep_ckpts`` (and a replaced best
   checkpoint) removed.
"""
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from mmext.registry import HOOKS
from mmext.utils.fileio import atomic_write, is_partial_file

#: file backend name under which checkpoints are written atomically
ATOMIC_BACKEND = 'mmext_atomic_local'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, with ``put`` replaced by an atomic
    write (mmengine's ``save_checkpoint`` writes through ``put``)."""

    def put(self, obj: bytes, filepath) -> None:
        with atomic_write(str(filepath), 'wb', force=True) as f:
            f.write(obj)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


class _DeferredRemoval:
    """Stands in for the hook's file backend: records removals instead of
    doing them, so that they can follow the save they precede upstream."""

    def __init__(self, backend):
        self._backend = backend
        self.removed = []

    def remove(self, path):
        self.removed.append(('remove', path))

    def rmtree(self, path):
        self.removed.append(('rmtree', path))

    def __getattr__(self, name):
        return getattr(self._backend, name)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) that never leaves a partial
    checkpoint, moves ``last_checkpoint`` only to a complete file, and
    removes old checkpoints only after the new one is complete."""

    def before_train(self, runner) -> None:
        local = self.backend_args is None and self.file_client_args is None \
            and '://' not in str(self.out_dir or runner.work_dir)
        if local:
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        super().before_train(runner)
        if local and is_main_process():
            self._remove_leftovers(runner)

    def _remove_leftovers(self, runner) -> None:
        """Temporary files of saves that a kill interrupted: never complete,
        never read, as large as a checkpoint."""
        names = [runner.work_dir, self.out_dir]
        for folder in dict.fromkeys(names):
            if not osp.isdir(folder):
                continue
            for name in os.listdir(folder):
                if is_partial_file(name) and name.startswith(
                        ('.last_checkpoint.', '.epoch_', '.iter_', '.best_')):
                    os.remove(osp.join(folder, name))
                    runner.logger.info(
                        f'removed {name}, left by an interrupted save')

    def _save_checkpoint_with_step(self, runner, step, meta):
        stale = []
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            # the message hub is saved in the checkpoint: update it first,
            # but delete the file it no longer lists only after the save
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        with atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), 'w',
                          force=True) as f:
            f.write(self.last_ckpt)
        for old in stale:
            self._remove(
                self.file_backend.join_path(self.out_dir,
                                            self.filename_tmpl.format(old)))

    def _remove(self, path) -> None:
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed saves folders
            self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        # upstream removes the previous best before saving the new one
        backend = self.file_backend
        deferred = _DeferredRemoval(backend)
        self.file_backend = deferred
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.file_backend = backend
        for how, path in deferred.removed:
            getattr(backend, how)(path)


def safe_checkpoint_cfg(hook_cfg):
    """The ``default_hooks.checkpoint`` config with mmengine's
    ``CheckpointHook`` replaced by :class:`SafeCheckpointHook` (same
    arguments); anything else is returned unchanged."""
    if isinstance(hook_cfg, dict) and hook_cfg.get('type') in (
            'CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook):
        # by name: a config holding it must still dump as text
        hook_cfg = dict(hook_cfg, type='mmext.SafeCheckpointHook')
        hook_cfg.pop('_scope_', None)
    return hook_cfg
