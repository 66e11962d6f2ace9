"""Writing a file so that it appears complete or not at all.

A process killed while writing (SIGKILL, OOM killer, a preempted job) must
not leave a truncated file under the final name: readers such as ``--resume``
would take it for a real checkpoint. Also: whether a path can be written at
all, checked before the long work that would end in writing it.
"""
import contextlib
import errno
import os
import os.path as osp
import re
import tempfile
from typing import IO, Iterator, Optional

from mmext.errors import ConfigError


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(tmp: str, path: str, force: bool) -> None:
    """Give the finished ``tmp`` its final name ``path``."""
    if force:
        os.replace(tmp, path)
        return
    try:
        # a hard link fails if ``path`` exists, so no check-then-rename race
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f'{path} exists; pass --force (force=True) to '
                              'overwrite it') from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV,
                             errno.EMLINK):
            raise
        # no hard links on this file system
        if osp.exists(path):
            raise FileExistsError(f'{path} exists; pass --force (force=True) '
                                  'to overwrite it') from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'wb', force: bool = False,
                 encoding: str = None) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on a clean exit of
    the ``with`` block, flush it to disk and rename it to ``path``.

    * ``path`` holds either its old content or the complete new one, never a
      part: the data is fsynced before the rename, the folder after it.
    * On an exception the temporary file is removed and ``path`` untouched.
    * An existing ``path`` is refused with :class:`FileExistsError` unless
      ``force`` (checked before writing and again when publishing).
    * The file gets the usual permissions (``0o666`` minus the umask), not
      the ``0o600`` of :func:`tempfile.mkstemp`.
    * A missing folder is created.

    Example::

        with atomic_write('ckpt.pth') as f:
            torch.save(state, f)
    """
    if mode not in ('wb', 'w'):
        raise ValueError(f'atomic_write: mode {mode!r} is not "wb" or "w"')
    path = os.fspath(path)
    if not force and osp.exists(path):
        raise FileExistsError(f'{path} exists; pass --force (force=True) to '
                              'overwrite it')
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.part')
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            yield f
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path, force)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def is_partial_file(name: str) -> bool:
    """Whether ``name`` is a temporary file left by an interrupted
    :func:`atomic_write`."""
    base = osp.basename(name)
    return base.startswith('.') and base.endswith('.part')


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL (``s3://``, ``http://``...), not a local
    file."""
    return bool(re.match(r'^[a-zA-Z][\w+.-]*://', path))


def check_output_path(path: Optional[str], what: str,
                      folder: bool = False) -> None:
    """Raise :class:`ConfigError` before any long work if ``path`` (a file,
    or with ``folder`` a folder) cannot be written: a file where a folder
    is needed, or a folder without write permission."""
    if not path or is_remote(path):
        return
    path = osp.abspath(path)
    if folder and osp.exists(path) and not osp.isdir(path):
        raise ConfigError(f'{what} {path!r} is a file, not a folder; give '
                          'another path.')
    if not folder and osp.isdir(path):
        raise ConfigError(f'{what} {path!r} is a folder; give a file name.')
    # the deepest part of the path that exists must be a writable folder
    probe = path if folder else osp.dirname(path)
    while not osp.exists(probe):
        probe = osp.dirname(probe)
    if not osp.isdir(probe):
        raise ConfigError(f'{what} {path!r}: {probe!r} is a file, so the '
                          'folder cannot be made; give another path.')
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f'{what} {path!r}: {probe!r} is not writable '
                          '(permission denied); give another path.')
