"""Stopping on SIGTERM, the way SLURM, Kubernetes and most schedulers stop
or preempt a job: one line, optionally a resumable checkpoint, a documented
exit status.

:class:`PreemptionHook` (registered by the mmext runner as
``default_hooks.preemption``) handles SIGTERM in the main process:

* ``save_checkpoint=False`` (default): the run stops at once, as after
  Ctrl-C; the checkpoints already written are complete (they are written
  atomically), so ``--resume`` continues from the last one.
* ``save_checkpoint=True`` (``tools/train.py --save-on-sigterm``): the
  current iteration finishes, the training state is saved (through
  :class:`~mmext.engine.hooks.SafeCheckpointHook`, so ``last_checkpoint``
  names it), then the run stops. A second SIGTERM stops at once. With
  several processes, all stop after the same iteration.

Either way :class:`Terminated` is raised; the tools turn it into one line
on stderr and exit status :data:`EXIT_TERMINATED` (143 = 128 + SIGTERM, what
schedulers expect from a job that ended on SIGTERM).

A scheduler signals every process of the job, DataLoader workers included;
a worker that dies makes the main process fail at once ("DataLoader worker
exited unexpectedly"), before it can finish the iteration. So while a run
handles SIGTERM, its workers ignore it (:func:`ignore_sigterm_in_workers`);
when the main process exits, they take SIGTERM as usual again, which is how
Python's multiprocessing ends them.
"""
import atexit
import functools
import os
import signal
import threading
from typing import Callable, Optional

from mmengine.hooks import Hook

from mmext.errors import Terminated
from mmext.registry import HOOKS
from mmext.utils.checkpoint import read_last_checkpoint
from .dist import any_rank
from .hooks import SafeCheckpointHook

#: exit status of a run stopped by SIGTERM
EXIT_TERMINATED = 128 + signal.SIGTERM


def install_sigterm_handler(handler: Callable[[], None]):
    """Make SIGTERM call ``handler()`` in this process; a forked child
    (multiprocessing pools, evaluators) keeps the default action, as if it
    had not inherited the handler. Returns the previous handler."""
    owner = os.getpid()

    def on_sigterm(signum, frame):
        if os.getpid() == owner:
            return handler()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    return signal.signal(signal.SIGTERM, on_sigterm)


#: 1 while the main process handles SIGTERM for its DataLoader workers
#: (shared with them; made before the first worker starts)
_main_handles_sigterm = None


def _shared_flag():
    global _main_handles_sigterm
    if _main_handles_sigterm is None:
        import multiprocessing
        _main_handles_sigterm = multiprocessing.Value('b', 0, lock=False)
        atexit.register(set_workers_ignore_sigterm, False)  # before the
        # atexit handler of multiprocessing, which SIGTERMs and joins them
    return _main_handles_sigterm


def set_workers_ignore_sigterm(ignore: bool) -> None:
    """Whether the DataLoader workers made by
    :func:`ignore_sigterm_in_workers` ignore SIGTERM from now on."""
    _shared_flag().value = int(bool(ignore))


def _worker_sigterm(signum, frame, flag):
    if flag.value:
        return  # the main process finishes its iteration, then ends us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker_init(worker_id, flag, then=None):
    # replaces the handler torch sets in its workers (print, then die)
    signal.signal(signal.SIGTERM,
                  functools.partial(_worker_sigterm, flag=flag))
    if then is not None:
        then(worker_id)


def ignore_sigterm_in_workers(loader) -> None:
    """Make ``loader``'s worker processes ignore SIGTERM while the main
    process handles it (:func:`set_workers_ignore_sigterm`); call it before
    the workers start."""
    if not getattr(loader, 'num_workers', 0) or getattr(
            loader.worker_init_fn, 'func', None) is _worker_init:
        return
    loader.worker_init_fn = functools.partial(
        _worker_init, flag=_shared_flag(), then=loader.worker_init_fn)


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Stop cleanly on SIGTERM; with ``save_checkpoint`` save a resumable
    checkpoint first (see the module's doc)."""

    # last: this iteration's regular checkpoint, if any, is reused
    priority = 'LOWEST'

    def __init__(self, save_checkpoint: bool = False):
        self.save_checkpoint = bool(save_checkpoint)
        self._requested = False
        self._training = False
        self._previous = None
        self._runner = None

    # -- the handler ------------------------------------------------------
    def before_run(self, runner) -> None:
        if threading.current_thread() is not threading.main_thread():
            runner.logger.warning('SIGTERM handling needs the main thread; '
                                  'it is off in this run')
            return
        self._runner = runner
        self._previous = install_sigterm_handler(self._on_sigterm)
        set_workers_ignore_sigterm(True)

    def after_run(self, runner) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
        set_workers_ignore_sigterm(False)

    def _on_sigterm(self) -> None:
        runner = self._runner
        if self._requested or not (self.save_checkpoint and self._training):
            raise Terminated(self._stop_message(runner, saved=None))
        self._requested = True
        runner.logger.warning(
            f'SIGTERM: finishing iteration {runner.iter + 1}, saving a '
            'checkpoint, then stopping')

    # -- deferred stop (save_checkpoint) ----------------------------------
    def before_train(self, runner) -> None:
        self._training = True

    def after_train(self, runner) -> None:
        self._training = False

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self._stop_if_requested(runner, done=runner.iter + 1)

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None) -> None:
        if self._training:
            # validation runs after the loop has counted the iteration; the
            # state saved is that of the last training iteration
            self._stop_if_requested(runner, done=runner.iter)

    def _stop_if_requested(self, runner, done: int) -> None:
        if not self.save_checkpoint or not any_rank(self._requested):
            return
        savers = [h for h in runner.hooks
                  if isinstance(h, SafeCheckpointHook)]
        path = savers[0].save_now(runner, done) if savers else ''
        raise Terminated(self._stop_message(runner, saved=path, done=done))

    def _stop_message(self, runner, saved: Optional[str],
                      done: Optional[int] = None) -> str:
        done = runner.iter if done is None else done
        where = f'after iteration {done}' if self._training else \
            'during testing'
        if saved:
            return (f'stopped by SIGTERM {where}; saved {saved}: continue '
                    'with --resume')
        if saved == '':
            return (f'stopped by SIGTERM {where}; no checkpoint hook, so '
                    'nothing was saved')
        if not self._training:
            return f'stopped by SIGTERM {where}'
        last = read_last_checkpoint(runner.work_dir)
        return (f'stopped by SIGTERM {where}; '
                + (f'the last checkpoint is {last} (continue with --resume)'
                   if last else 'no checkpoint was saved yet') +
                '; --save-on-sigterm saves one when stopped')
