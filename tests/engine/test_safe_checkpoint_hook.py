"""Crash safety of checkpoints: a real training run (tools/train.py on the
tiny demo segmentor) is SIGKILLed at every step of a save, and what each
kill leaves must be resumable.

One run reaches all kill points: at each, the probe (save_probe.py) forks
the training process and the test SIGKILLs the copy, checks the work dir,
and lets the original go on (a kill per process would take a minute)."""
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys

import torch

from mmext.utils.checkpoint import (find_resume_checkpoint,
                                    is_complete_checkpoint,
                                    load_checkpoint_file)
from tests.pipeline.pipeline_utils import REPO, tiny_seg_cfg, tool, tool_env

#: kill points (step:n-th checkpoint file) and the checkpoint that --resume
#: continues from afterwards (None: no checkpoint yet, a fresh start)
KILL_POINTS = {
    'ckpt-writing:1': None,
    'pointer-writing:1': 'iter_1.pth',
    'ckpt-writing:2': 'iter_1.pth',
    'ckpt-before-rename:2': 'iter_1.pth',
    'ckpt-renamed:2': 'iter_1.pth',
    'pointer-writing:2': 'iter_1.pth',
    'pointer-renamed:2': 'iter_2.pth',
    'removing-old:2': 'iter_2.pth',
}


def _config(demo_root, work_dir):
    # a checkpoint every iteration, one kept: the second save must delete
    # the first, the case that used to leave nothing to resume from
    return tiny_seg_cfg(
        demo_root, str(work_dir), iters=3,
        custom_imports=dict(imports=['mmext.models',
                                     'tests.engine.save_probe'],
                            allow_failed_imports=False),
        **{'default_hooks.checkpoint.interval': 1,
           'default_hooks.checkpoint.max_keep_ckpts': 1,
           'train_cfg.val_interval': 100})


def _env(**extra):
    return tool_env(extra)


def _check_state(work_dir, point):
    """What a kill at ``point`` left: no partial file under a final name,
    and --resume picks the expected checkpoint."""
    for name in os.listdir(work_dir):
        path = osp.join(work_dir, name)
        if name.endswith('.pth'):
            assert is_complete_checkpoint(path), f'{point}: {name} partial'
            load_checkpoint_file(path)  # every tensor readable
        if name == 'last_checkpoint':
            with open(path) as f:
                named = f.read()
            assert osp.isfile(named) and is_complete_checkpoint(named), \
                f'{point}: last_checkpoint names {named!r}'
    expected = KILL_POINTS[point]
    assert find_resume_checkpoint(work_dir) == \
        (expected and osp.join(work_dir, expected)), point


def test_sigkill_at_every_step_of_a_save_leaves_a_resumable_state(
        small_demo_root, tmp_path):
    cfg = _config(small_demo_root, tmp_path)
    work_dir, go = str(tmp_path / 'run'), tmp_path / 'go'
    go.mkdir()
    proc = subprocess.Popen(
        [sys.executable, osp.join(REPO, 'tools/train.py'), cfg,
         '--work-dir', work_dir],
        cwd=REPO, env=_env(MMEXT_PROBE_KILL_AT=','.join(KILL_POINTS),
                           MMEXT_PROBE_GO=str(go)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed, seen = [], []
    try:
        for line in proc.stdout:
            seen.append(line)
            if not line.startswith('PROBE PAUSED'):
                continue
            _, _, point, pid = line.split()
            os.kill(int(pid), signal.SIGKILL)
            # the original waits for its copy to die before it goes on
            _check_state(work_dir, point)
            killed.append(point)
            if point == 'ckpt-writing:2':  # the case that lost whole runs
                shutil.copytree(work_dir, tmp_path / 'killed_in_save_2')
            (go / point.replace(':', '_')).touch()
    finally:
        if proc.poll() is None and len(killed) < len(KILL_POINTS):
            proc.kill()
    assert proc.wait(timeout=120) == 0, ''.join(seen[-40:])
    assert killed == list(KILL_POINTS)

    # resume for real from the state of a kill while the 2nd checkpoint was
    # written (mmengine had already deleted the 1st one then)
    resumed = tmp_path / 'killed_in_save_2'
    code, out = tool('train.py', cfg, '--work-dir', resumed, '--resume',
                     env=_env())
    assert 'resumed epoch: 0, iter: 1' in out
    assert 'removed .iter_2.pth.' in out  # the interrupted temporary file
    with open(resumed / 'last_checkpoint') as f:
        assert f.read().endswith('iter_3.pth')
    assert sorted(n for n in os.listdir(resumed)
                  if n.endswith('.pth') or n.endswith('.part')) == \
        ['iter_3.pth']
    assert torch.load(resumed / 'iter_3.pth',
                      weights_only=True)['meta']['iter'] == 3
