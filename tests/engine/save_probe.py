"""Imported by a training process under test (``custom_imports``).

Announces each step of every checkpoint save on stdout, and stops at the one
named by ``MMEXT_PROBE_PAUSE=<step>:<n>`` (the n-th checkpoint file saved),
so that the test can SIGKILL the process exactly there. Steps, in order:

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
import sys
import time

import mmext.engine.hooks as hooks
import mmext.utils.fileio as fileio

PAUSE = os.environ.get('MMEXT_PROBE_PAUSE', '')
_count = {'saves': 0}


def _at(step: str) -> None:
    here = f'{step}:{_count["saves"]}'
    sys.stdout.write(f'PROBE {here}\n')
    if here == PAUSE:
        sys.stdout.write('PROBE PAUSED\n')
        sys.stdout.flush()
        time.sleep(300)  # the test kills us here
    sys.stdout.flush()


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
