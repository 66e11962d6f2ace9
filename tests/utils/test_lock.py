"""The work-dir lock: a second holder is refused with the first one named,
and a holder that dies (SIGKILL) leaves nothing stuck."""
import os
import signal

import pytest

from mmext.errors import WorkDirLockedError
from mmext.utils.lock import WorkDirLock


def test_a_live_holder_refuses_and_a_killed_one_frees_the_work_dir(
        tmp_path):
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # the first run: holds the lock until killed
        try:
            WorkDirLock(str(tmp_path)).acquire()
            os.write(ready_w, b'1')
            signal.pause()
        finally:
            os._exit(1)
    try:
        assert os.read(ready_r, 1) == b'1'
        with pytest.raises(WorkDirLockedError) as err:
            WorkDirLock(str(tmp_path)).acquire()
        assert f'work dir {tmp_path} is in use by another training run ' \
            f'(pid {child} on ' in str(err.value)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    with WorkDirLock(str(tmp_path)) as lock:  # nothing left stuck
        assert lock.held
        with pytest.raises(WorkDirLockedError):
            WorkDirLock(str(tmp_path)).acquire()  # one holder at a time
    assert not lock.held
    with WorkDirLock(str(tmp_path)):
        pass
