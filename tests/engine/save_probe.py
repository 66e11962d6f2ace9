"""Imported by a training process under test (``custom_imports``).

Announces each step of every checkpoint save on stdout. At each step listed
in ``MMEXT_PROBE_KILL_AT`` (``<step>:<n>``, n counting checkpoint files), the
process forks: the child, an exact copy of the training process at that
step, says ``PROBE PAUSED <step>:<n> <pid>`` and waits to be SIGKILLed by the
test; the parent waits until the child is dead and the test has checked
what it left (the test creates ``$MMEXT_PROBE_GO/<step>_<n>``), then goes
on. One run thus yields a process killed at every step. Steps, in order:

``ckpt-writing``        half of the checkpoint is in its temporary file
``ckpt-before-rename``  the temporary file is complete and fsynced
``ckpt-renamed``        the checkpoint has its final name
``pointer-writing``     half of the new ``last_checkpoint`` is written
``pointer-renamed``     ``last_checkpoint`` names the new checkpoint
``removing-old``        an old checkpoint is about to be removed

Nothing here changes what is written, only when.
"""
import contextlib
import os
import os.path as osp
import signal
import sys
import time

import mmext.engine.hooks as hooks
import mmext.utils.fileio as fileio

KILL_AT = set(filter(None, os.environ.get('MMEXT_PROBE_KILL_AT',
                                          '').split(',')))
GO_DIR = os.environ.get('MMEXT_PROBE_GO', '')
_count = {'saves': 0}


def _at(step: str) -> None:
    here = f'{step}:{_count["saves"]}'
    sys.stdout.write(f'PROBE {here}\n')
    sys.stdout.flush()
    if here not in KILL_AT:
        return
    child = os.fork()
    if child == 0:
        sys.stdout.write(f'PROBE PAUSED {here} {os.getpid()}\n')
        sys.stdout.flush()
        time.sleep(120)  # the test kills us here
        os._exit(3)  # not killed: the parent reports it
    _, status = os.waitpid(child, 0)
    if not (os.WIFSIGNALED(status)
            and os.WTERMSIG(status) == signal.SIGKILL):
        raise RuntimeError(f'probe: the copy at {here} was not SIGKILLed')
    go = osp.join(GO_DIR, here.replace(':', '_'))
    while not osp.exists(go):
        time.sleep(0.02)


def _kind(path) -> str:
    return 'pointer' if osp.basename(str(path)) == 'last_checkpoint' \
        else 'ckpt'


class _HalfThenRest:
    """File proxy: writes the first half of the first write, reports, then
    the rest."""

    def __init__(self, f, step):
        self._f, self._step = f, step

    def write(self, data):
        if self._step is None:
            return self._f.write(data)
        half = len(data) // 2
        self._f.write(data[:half])
        self._f.flush()  # in the OS's hands: a SIGKILL does not undo it
        step, self._step = self._step, None
        _at(step)
        return half + self._f.write(data[half:])

    def __getattr__(self, name):
        return getattr(self._f, name)


_atomic_write = hooks.atomic_write
_publish = fileio._publish
_remove = hooks.SafeCheckpointHook._remove


@contextlib.contextmanager
def _probed_atomic_write(path, *args, **kwargs):
    kind = _kind(path)
    if kind == 'ckpt':
        _count['saves'] += 1
    with _atomic_write(path, *args, **kwargs) as f:
        yield _HalfThenRest(f, f'{kind}-writing')


def _probed_publish(tmp, path, force):
    kind = _kind(path)
    if kind == 'ckpt':
        _at('ckpt-before-rename')
    _publish(tmp, path, force)
    _at(f'{kind}-renamed')


def _probed_remove(self, path):
    _at('removing-old')
    return _remove(self, path)


hooks.atomic_write = _probed_atomic_write
fileio._publish = _probed_publish
hooks.SafeCheckpointHook._remove = _probed_remove
