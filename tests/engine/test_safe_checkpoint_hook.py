"""Crash safety of checkpoints: real training processes (tools/train.py on
the tiny demo segmentor) are SIGKILLed at each step of a save, and what they
leave must be resumable."""
import os
import os.path as osp
import signal
import subprocess
import sys

import pytest
import torch

from pipeline_utils import REPO, tiny_seg_cfg, tool, tool_env
from mmext.utils.checkpoint import (NotResumableError, find_resume_checkpoint,
                                    is_complete_checkpoint,
                                    load_checkpoint_file)

ENGINE_TESTS = osp.dirname(osp.abspath(__file__))

#: where the probe (save_probe.py) stops the run, and the checkpoint that
#: --resume must continue from afterwards (None: a fresh start)
KILL_POINTS = [
    ('ckpt-writing:1', None),
    ('pointer-writing:1', 'iter_1.pth'),
    ('ckpt-writing:2', 'iter_1.pth'),
    ('ckpt-before-rename:2', 'iter_1.pth'),
    ('ckpt-renamed:2', 'iter_1.pth'),
    ('pointer-writing:2', 'iter_1.pth'),
    ('removing-old:2', 'iter_2.pth'),
]


def _config(demo_root, work_dir):
    # a checkpoint every iteration, one kept: the second save must delete
    # the first, the case that used to leave nothing to resume from
    return tiny_seg_cfg(
        demo_root, str(work_dir), iters=3,
        custom_imports=dict(imports=['mmext.models', 'save_probe'],
                            allow_failed_imports=False),
        **{'default_hooks.checkpoint.interval': 1,
           'default_hooks.checkpoint.max_keep_ckpts': 1,
           'train_cfg.val_interval': 100})


def _env(pause=''):
    env = tool_env(dict(MMEXT_PROBE_PAUSE=pause))
    env['PYTHONPATH'] = os.pathsep.join([ENGINE_TESTS, env['PYTHONPATH']])
    return env


def _kill_at(cfg, work_dir, point):
    """Run tools/train.py until the probe stops at ``point``; SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, osp.join(REPO, 'tools/train.py'), cfg,
         '--work-dir', str(work_dir)],
        cwd=REPO, env=_env(point), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith('PROBE PAUSED'):
            proc.send_signal(signal.SIGKILL)
            break
    proc.stdout.close()
    code = proc.wait(timeout=60)
    assert code == -signal.SIGKILL, \
        f'never stopped at {point}:\n' + ''.join(seen[-30:])


def _assert_nothing_partial(work_dir):
    for name in os.listdir(work_dir):
        path = osp.join(work_dir, name)
        if name.endswith('.pth'):
            assert is_complete_checkpoint(path), f'{name} is partial'
            load_checkpoint_file(path)  # every tensor readable
        if name == 'last_checkpoint':
            with open(path) as f:
                named = f.read()
            assert osp.isfile(named) and is_complete_checkpoint(named), \
                f'last_checkpoint names {named!r}'


@pytest.mark.parametrize('point, resume_from', KILL_POINTS,
                         ids=[p for p, _ in KILL_POINTS])
def test_sigkill_during_save_leaves_a_resumable_state(
        point, resume_from, small_demo_root, tmp_path):
    cfg = _config(small_demo_root, tmp_path)
    work_dir = tmp_path / 'run'
    _kill_at(cfg, work_dir, point)
    _assert_nothing_partial(work_dir)
    found = find_resume_checkpoint(str(work_dir))
    assert found == (resume_from and str(work_dir / resume_from))
    if point in ('ckpt-writing:2', 'ckpt-writing:1'):
        # the two cases that used to lose the run: resume for real
        code, out = tool('train.py', cfg, '--work-dir', work_dir, '--resume',
                         env=_env())
        if resume_from:
            assert 'resumed epoch: 0, iter: 1' in out
        else:
            assert 'no checkpoint in' in out and 'starts from scratch' in out
        assert 'removed .iter_' in out  # the interrupted temporary file
        with open(work_dir / 'last_checkpoint') as f:
            assert f.read().endswith('iter_3.pth')
        assert sorted(n for n in os.listdir(work_dir)
                      if n.endswith('.pth')) == ['iter_3.pth']
        assert torch.load(work_dir / 'iter_3.pth',
                          weights_only=True)['meta']['iter'] == 3


def test_nothing_usable_is_one_line(small_demo_root, tmp_path):
    cfg = _config(small_demo_root, tmp_path)
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    (work_dir / 'iter_2.pth').write_bytes(b'PK\x03\x04 cut short')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_2.pth'))
    with pytest.raises(NotResumableError, match='nothing usable'):
        find_resume_checkpoint(str(work_dir))
    code, out = tool('train.py', cfg, '--work-dir', work_dir, '--resume',
                     check=False, env=_env())
    assert code == 1
    errors = [l for l in out.splitlines() if 'error:' in l]
    assert len(errors) == 1 and 'nothing usable' in errors[0], out
    assert 'iter_2.pth' in errors[0] and 'Traceback' not in out
