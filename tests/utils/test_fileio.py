"""mmext.utils.fileio.atomic_write: all or nothing, umask, no overwrite."""
import os
import stat

import pytest
import torch

from mmext.utils.fileio import atomic_write, is_partial_file


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize('umask', [0o022, 0o077, 0o002])
def test_honours_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / 'a.pth') as f:
            torch.save({'x': torch.ones(2)}, f)
        with atomic_write(tmp_path / 'b.json', 'w') as f:
            f.write('{}')
    finally:
        os.umask(old)
    assert _mode(tmp_path / 'a.pth') == 0o666 & ~umask
    assert _mode(tmp_path / 'b.json') == 0o666 & ~umask
    assert torch.load(tmp_path / 'a.pth', weights_only=True)['x'].sum() == 2


def test_an_error_leaves_neither_file_nor_temporary(tmp_path):
    dst = tmp_path / 'sub' / 'out.pth'  # a missing folder is made
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_write(dst) as f:
            f.write(b'half')
            raise RuntimeError('boom')
    assert not dst.exists()
    assert os.listdir(tmp_path / 'sub') == []


def test_old_content_survives_until_the_new_is_complete(tmp_path):
    dst = tmp_path / 'out.txt'
    dst.write_text('old')
    with atomic_write(dst, 'w', force=True) as f:
        f.write('new')
        # mid-write, readers still see the old file, and the temporary
        # file is recognisable as such
        assert dst.read_text() == 'old'
        names = [n for n in os.listdir(tmp_path) if n != 'out.txt']
        assert len(names) == 1 and is_partial_file(names[0])
    assert dst.read_text() == 'new'
    assert os.listdir(tmp_path) == ['out.txt']


def test_refuses_to_overwrite_without_force(tmp_path):
    dst = tmp_path / 'out.txt'
    dst.write_text('keep me')
    with pytest.raises(FileExistsError, match='--force'):
        with atomic_write(dst, 'w') as f:
            f.write('x')
    assert dst.read_text() == 'keep me'


def test_a_file_appearing_meanwhile_is_not_overwritten(tmp_path):
    dst = tmp_path / 'out.txt'
    with pytest.raises(FileExistsError):
        with atomic_write(dst, 'w') as f:
            f.write('mine')
            dst.write_text('theirs')  # another process got there first
    assert dst.read_text() == 'theirs'
    assert os.listdir(tmp_path) == ['out.txt']


def test_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError, match='mode'):
        with atomic_write(tmp_path / 'x', 'a'):
            pass
