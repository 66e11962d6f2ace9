"""One training run per work dir.

Two runs in one work dir overwrite each other's checkpoints and
``last_checkpoint``, and a ``--resume`` then continues the wrong one. A run
therefore holds an ``flock`` on ``WORK_DIR/.train.lock`` while it trains.
The kernel drops the lock when its process ends in any way (SIGKILL and the
OOM killer included), so a dead run never leaves the work dir locked; the
file itself stays, and its text (pid, host, start time, command) only names
the holder for the message a second run gets. The file is never deleted:
deleting a lock file lets two runs lock two different files of one name.
On NFS, Linux maps ``flock`` to POSIX locks, which NFSv4 servers share
between hosts.
"""
import json
import os
import os.path as osp
import socket
import sys
import time
from typing import Optional

from mmext.errors import WorkDirLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system
    fcntl = None

#: name of the lock file inside a work dir
LOCK_NAME = '.train.lock'


def _holder_text(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        info = json.loads(raw.decode('utf-8'))
    except ValueError:  # the holder has locked but not written yet
        return 'another run'
    started = time.strftime('%Y-%m-%d %H:%M:%S',
                            time.localtime(info.get('started', 0)))
    return (f'pid {info.get("pid")} on {info.get("host")}, started '
            f'{started}: {info.get("command")}')


class WorkDirLock:
    """``with WorkDirLock(work_dir):`` holds ``work_dir`` for one run, or
    raises :class:`WorkDirLockedError` naming the run that holds it. The
    folder is made if missing."""

    def __init__(self, work_dir: str, name: str = LOCK_NAME):
        self.path = osp.join(work_dir, name)
        self._fd: Optional[int] = None

    def acquire(self) -> 'WorkDirLock':
        if fcntl is None or self._fd is not None:
            return self
        os.makedirs(osp.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # EWOULDBLOCK: a live process holds it
            holder = _holder_text(fd)
            os.close(fd)
            raise WorkDirLockedError(
                f'work dir {osp.dirname(self.path)} is in use by another '
                f'training run ({holder}); wait for it to end, stop it, or '
                'give this run another --work-dir.') from None
        info = dict(pid=os.getpid(), host=socket.gethostname(),
                    started=time.time(), command=' '.join(sys.argv))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode('utf-8'), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)  # closing the descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> 'WorkDirLock':
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
