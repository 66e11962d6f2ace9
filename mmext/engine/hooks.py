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

It also refuses to save NaN or inf weights or optimizer state (whoever asks
for the save), and a failed write (a full disk) stops the run with one line
that names the file and the previous, intact checkpoint.
"""
import os
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from mmext.errors import CheckpointWriteError, NonFiniteCheckpointError
from mmext.registry import HOOKS
from mmext.utils.checkpoint import nonfinite_report, read_last_checkpoint
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
    checkpoint, moves ``last_checkpoint`` only to a complete file, removes
    old checkpoints only after the new one is complete, and never saves
    non-finite weights or optimizer state."""

    #: the file being written, for messages
    _saving = None
    #: iterations done when the last checkpoint was saved
    _saved_at = None

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
        self._write(runner, ckpt_filename, meta)
        for old in stale:
            self._remove(
                self.file_backend.join_path(self.out_dir,
                                            self.filename_tmpl.format(old)))

    def _write(self, runner, filename: str, meta: dict) -> None:
        """Save ``filename`` in ``out_dir``, then point ``last_checkpoint``
        at it; a failed write raises :class:`CheckpointWriteError` naming
        the file and the checkpoint that stays in use."""
        path = self.file_backend.join_path(self.out_dir, filename)
        previous = read_last_checkpoint(runner.work_dir)
        self._saving = path
        try:
            runner.save_checkpoint(
                self.out_dir,
                filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)
        except OSError as err:
            kept = (f'the previous checkpoint {previous} is intact and '
                    'last_checkpoint still names it' if previous else
                    'no earlier checkpoint exists')
            raise CheckpointWriteError(
                f'could not write checkpoint {path} ({_reason(err)}); {kept}. '
                'Free space (or train into another --work-dir) and resume '
                'with --resume.') from err
        finally:
            self._saving = None
        self._saved_at = meta.get('iter')
        if not is_main_process():
            return
        try:
            with atomic_write(osp.join(runner.work_dir, 'last_checkpoint'),
                              'w', force=True) as f:
                f.write(path)
        except OSError as err:
            raise CheckpointWriteError(
                f'checkpoint {path} is complete, but last_checkpoint could '
                f'not be updated ({_reason(err)}), so --resume would take '
                f'{previous or "nothing"}; resume with --resume {path}.'
            ) from err

    def save_now(self, runner, done: int) -> str:
        """Save the training state after ``done`` iterations (e.g. when the
        job is being stopped) unless this hook has just saved it, and point
        ``last_checkpoint`` at it; returns the file. Mid-epoch states are
        named ``iter_N.pth`` and outside ``max_keep_ckpts``."""
        if self._saved_at == done:
            return self.last_ckpt
        filename = f'iter_{done}.pth' if self.by_epoch else \
            self.filename_tmpl.format(done)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._write(runner, filename,
                    dict(epoch=runner.epoch, iter=done))
        return self.last_ckpt

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to write NaN / inf: whatever saves (this hook, a best
        checkpoint, a save at SIGTERM), it comes through here last."""
        for key, what in (('state_dict', 'weights'),
                          ('ema_state_dict', 'EMA weights'),
                          ('optimizer', 'optimizer state')):
            report = nonfinite_report(checkpoint.get(key, {}))
            if not report:
                continue
            previous = read_last_checkpoint(runner.work_dir)
            raise NonFiniteCheckpointError(
                f'not saving {self._saving or "a checkpoint"}: its {what} '
                f'are not finite ({report}); '
                + (f'last_checkpoint still names {previous}' if previous
                   else 'no checkpoint was written before') +
                '. Training diverged: lower the learning rate or clip '
                'gradients (optim_wrapper.clip_grad).')
        super().before_save_checkpoint(runner, checkpoint)

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


def _reason(err: OSError) -> str:
    return err.strerror or ' '.join(str(err).split()) or type(err).__name__


def mmext_default_hooks(hooks: Optional[dict] = None) -> dict:
    """``default_hooks`` as mmext runs them: the checkpoint hook made safe
    (:func:`safe_checkpoint_cfg`), plus ``nonfinite`` (stop on NaN / inf)
    and ``preemption`` (stop cleanly on SIGTERM) unless set to None; keys
    given without a type (``--cfg-options default_hooks.nonfinite.
    max_skipped_steps=3``) keep the default type."""
    hooks = dict(hooks or {})
    # mmengine adds CheckpointHook(interval=1) when none is configured
    hooks['checkpoint'] = safe_checkpoint_cfg(
        hooks.get('checkpoint', dict(type='CheckpointHook', interval=1)))
    for key, type_name in (('nonfinite', 'mmext.NonFiniteCheckHook'),
                           ('preemption', 'mmext.PreemptionHook')):
        if key in hooks and hooks[key] is None:
            del hooks[key]  # left out on purpose
        elif isinstance(hooks.get(key, {}), dict):
            hooks[key] = dict(dict(type=type_name), **hooks.get(key, {}))
    return hooks


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
