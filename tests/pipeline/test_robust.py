"""Training that cannot go wrong in silence (issue 20), through the real
tools: a run whose loss goes to NaN, a NaN checkpoint given to test or
resume, a changed model on resume, a bad sample met inside a DataLoader
worker, an image too small for segmentation, bad annotations found before
training, SIGTERM (with a second run on the same work dir meanwhile) and a
full disk. One diverging run serves the checkpoint cases."""
import contextlib
import errno
import io
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from mmext.apis import test as test_tool
from mmext.apis import train
from mmext.utils.checkpoint import (find_resume_checkpoint,
                                    is_complete_checkpoint,
                                    load_checkpoint_file, nonfinite_tensors)
from tests.pipeline.pipeline_utils import (REPO, fails, tiny_det_cfg,
                                           tiny_seg_cfg, tool_env)


@pytest.fixture(scope='module')
def diverged(demo_root, tmp_path_factory):
    """A real training run with a learning rate far too high (1e4): the loss
    is finite for two iterations, then NaN. Its exit status, error line,
    work dir and the iteration it stopped at."""
    folder = tmp_path_factory.mktemp('diverged')
    cfg = tiny_seg_cfg(demo_root, str(folder), iters=6,
                       **{'default_hooks.checkpoint.interval': 1,
                          'default_hooks.checkpoint.max_keep_ckpts': 6})
    work = folder / 'w'
    err = io.StringIO()
    with contextlib.redirect_stderr(err), \
            pytest.raises(SystemExit) as exit_:
        train.main([cfg, '--work-dir', str(work), '--cfg-options',
                    'optim_wrapper.optimizer.lr=1e4'])
    lines = [ln for ln in err.getvalue().splitlines() if ': error: ' in ln]
    stopped = re.search(r'training stopped at iteration (\d+)',
                        lines[-1] if lines else '')
    return dict(cfg=cfg, work=work, code=exit_.value.code, lines=lines,
                stopped=int(stopped.group(1)) if stopped else None)


def _last_good(diverged):
    return diverged['work'] / f'iter_{diverged["stopped"] - 1}.pth'


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(
        diverged):
    assert diverged['code'] == 1 and len(diverged['lines']) == 1
    line, step = diverged['lines'][0], diverged['stopped']
    work = diverged['work']
    assert step is not None and step > 1, line
    assert f'training stopped at iteration {step}: loss terms ' \
        'decode.loss_ce=nan' in line and 'are not finite' in line
    assert f'last_checkpoint still names {_last_good(diverged)}' in line
    assert 'max_skipped_steps=N' in line
    assert (work / 'last_checkpoint').read_text() == \
        str(_last_good(diverged))
    assert not (work / f'iter_{step}.pth').exists()
    for i in range(1, step):  # every checkpoint written is finite
        ckpt = load_checkpoint_file(work / f'iter_{i}.pth')
        assert nonfinite_tensors(ckpt['state_dict']) == []
        assert nonfinite_tensors(ckpt['optimizer']) == []


@pytest.fixture
def nan_checkpoint(diverged, tmp_path):
    """The last good training checkpoint with one weight set to NaN."""
    ckpt = torch.load(_last_good(diverged), weights_only=True)
    key = 'backbone.stem.convs.0.conv.weight'
    assert key in ckpt['state_dict']
    ckpt['state_dict'][key][0] = float('nan')
    path = tmp_path / 'nan.pth'
    torch.save(ckpt, path)
    return path, key


def test_test_and_resume_refuse_a_nan_checkpoint(diverged, nan_checkpoint,
                                                 tmp_path, capsys):
    bad, key = nan_checkpoint
    work = tmp_path / 'w'
    line = fails(test_tool, [diverged['cfg'], bad, '--work-dir', work],
                 capsys)
    assert f'checkpoint {bad} has non-finite weights: 1 of ' in line
    assert f'tensors hold NaN or inf: {key}' in line
    assert not list(work.glob('*/test_metrics.json'))
    line = fails(train, [diverged['cfg'], '--work-dir', tmp_path / 'r',
                         '--resume', bad], capsys)
    assert f'checkpoint {bad} has non-finite weights' in line
    assert not (tmp_path / 'r').exists()


def test_resume_into_another_model_is_refused_before_any_work(
        diverged, tmp_path, capsys):
    ckpt = diverged['work'] / 'iter_1.pth'
    other = ['--cfg-options', 'model.decode_head.channels=96']
    work = tmp_path / 'w'
    line = fails(train, [diverged['cfg'], '--work-dir', work, '--resume',
                         ckpt, *other], capsys)
    assert not work.exists()
    assert f'checkpoint {ckpt} does not fit the model' in line
    assert '--resume' in line and f'load_from={ckpt}' in line
    # the same counts and examples as tools/test.py's refusal
    tested = fails(test_tool, [diverged['cfg'], ckpt, '--work-dir',
                               tmp_path / 't', *other], capsys)

    def counts(text):
        return text.split('does not fit the model ')[1].split('. ')[0]

    assert counts(line) == counts(tested)
    assert '61 of another shape' in counts(line)


def _copy_ade(demo_root, tmp_path):
    data = tmp_path / 'ade'
    shutil.copytree(osp.join(demo_root, 'ade'), data)
    first = sorted((data / 'images' / 'validation').iterdir())[0]
    label = data / 'annotations' / 'validation' / (first.stem + '.png')
    return data, first, label


def test_bad_image_in_a_worker_is_named_in_one_line(diverged, demo_root,
                                                    tmp_path, capsys):
    data, image, _ = _copy_ade(demo_root, tmp_path)
    image.write_bytes(b'')
    work = tmp_path / 'w'
    line = fails(test_tool, [
        diverged['cfg'], _last_good(diverged), '--work-dir', work,
        '--cfg-options', f'test_dataloader.dataset.data_root={data}',
        'test_dataloader.num_workers=1'
    ], capsys)
    assert line.endswith(f': error: {image} is empty (0 bytes)'), line
    assert line.count('error:') == 1 and 'Caught' not in line
    log = next(work.glob('*/*.log')).read_text()
    assert 'Caught DataLoadError in DataLoader worker process 0' in log
    assert 'Original Traceback (most recent call last)' in log


def test_too_small_segmentation_image_names_the_limit(diverged, demo_root,
                                                      tmp_path, capsys):
    data, image, label = _copy_ade(demo_root, tmp_path)
    cv2.imwrite(str(image), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(label), np.ones((1, 1), np.uint8))
    line = fails(test_tool, [
        diverged['cfg'], _last_good(diverged), '--work-dir', tmp_path / 'w',
        '--cfg-options', f'test_dataloader.dataset.data_root={data}'
    ], capsys)
    assert line.endswith(
        f': error: {image} is 1x1 pixels: segmentation images need at least '
        "2 pixels on each side (mmseg's label loading cannot read a map "
        'with a 1-pixel side); resize or remove it.'), line


def test_bad_annotations_stop_training_before_any_work(demo_root, tmp_path,
                                                       capsys):
    import json
    data = tmp_path / 'coco'
    shutil.copytree(osp.join(demo_root, 'coco'), data)
    ann_file = data / 'annotations' / 'instances_train.json'
    coco = json.loads(ann_file.read_text())
    coco['annotations'][2]['segmentation'] = []
    ann_file.write_text(json.dumps(coco))
    cfg = tiny_det_cfg(demo_root, str(tmp_path))
    work = tmp_path / 'w'
    line = fails(train, [cfg, '--work-dir', work, '--cfg-options',
                         f'train_dataloader.dataset.data_root={data}/'],
                 capsys)
    ann = coco['annotations'][2]
    assert f'train_dataloader.dataset ({ann_file}): 1 of ' in line
    assert 'instances have an empty segmentation (training with masks ' \
        f'stops at them) (annotation {ann["id"]} of ' in line
    assert not work.exists()


def test_full_disk_names_the_checkpoint_and_keeps_the_previous_one(
        demo_root, tmp_path, capsys, monkeypatch):
    cfg = tiny_seg_cfg(demo_root, str(tmp_path), iters=2,
                       **{'default_hooks.checkpoint.interval': 1})
    work = tmp_path / 'w'
    fsync = os.fsync

    def full_disk(fd):  # the file system runs out when iter_2 is flushed
        if '/.iter_2.pth.' in os.readlink(f'/proc/self/fd/{fd}'):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, 'fsync', full_disk)
    line = fails(train, [cfg, '--work-dir', work], capsys)
    assert line.endswith(
        f'error: could not write checkpoint {work}/iter_2.pth (No space '
        f'left on device); the previous checkpoint {work}/iter_1.pth is '
        'intact and last_checkpoint still names it. Free space (or train '
        'into another --work-dir) and resume with --resume.'), line
    assert not [n for n in os.listdir(work) if n.endswith('.part')]
    assert not (work / 'iter_2.pth').exists()
    assert is_complete_checkpoint(work / 'iter_1.pth')
    assert find_resume_checkpoint(str(work)) == str(work / 'iter_1.pth')


def test_sigterm_saves_a_resumable_checkpoint_and_a_second_run_is_refused(
        demo_root, tmp_path, capsys):
    cfg = tiny_seg_cfg(demo_root, str(tmp_path), iters=500,
                       **{'train_dataloader.num_workers': 1,
                          'default_hooks.checkpoint.interval': 1000})
    work = tmp_path / 'w'
    # a session of its own: SIGTERM goes to the main process and its
    # DataLoader worker, as a scheduler sends it to every process of a job
    proc = subprocess.Popen(
        [sys.executable, osp.join(REPO, 'tools/train.py'), cfg,
         '--work-dir', str(work), '--save-on-sigterm'],
        cwd=REPO, env=tool_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if re.search(r'Iter\(train\) \[\s*2/500\]', line):
                break
        assert proc.poll() is None, ''.join(seen[-30:])
        # a second run on the same work dir: refused, nothing written
        before = sorted(os.listdir(work))
        refused = fails(train, [cfg, '--work-dir', work], capsys)
        assert f'work dir {work} is in use by another training run (pid ' \
            f'{proc.pid} on ' in refused and 'another --work-dir' in refused
        assert sorted(os.listdir(work)) == before
        os.killpg(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = ''.join(seen) + rest
    assert proc.returncode == 143, out[-3000:]
    stops = [ln for ln in out.splitlines() if 'stopped by SIGTERM' in ln
             and ln.startswith('train.py: ')]
    assert len(stops) == 1, out[-3000:]
    found = re.fullmatch(r'train\.py: stopped by SIGTERM after iteration '
                         r'(\d+); saved (\S+): continue with --resume',
                         stops[0])
    assert found, stops[0]
    step, saved = int(found.group(1)), found.group(2)
    assert saved == str(work / f'iter_{step}.pth')
    assert (work / 'last_checkpoint').read_text() == saved
    assert load_checkpoint_file(saved)['meta']['iter'] == step

    # the lock died with the run; --resume continues from the saved state
    capsys.readouterr()
    train.main([cfg, '--work-dir', str(work), '--resume', '--cfg-options',
                f'train_cfg.max_iters={step + 1}',
                'train_dataloader.num_workers=0'])
    assert f'resumed epoch: 0, iter: {step}' in capsys.readouterr().out
    assert (work / f'iter_{step + 1}.pth').is_file()
