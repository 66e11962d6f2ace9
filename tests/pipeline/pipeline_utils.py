"""Helpers for the pipeline tests: tiny configs derived from the demo
configs and running the real command-line tools."""
import os
import os.path as osp
import subprocess
import sys
import time

import pytest
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DET_DEMO = osp.join(REPO, 'configs/demo/dualvit_tiny_maskrcnn_demo_12e.py')
SEG_DEMO = osp.join(REPO, 'configs/demo/dualvit_tiny_upernet_demo_400i.py')
PROBE_DIR = osp.dirname(osp.abspath(__file__))
#: the demo configs train with AMP (bfloat16 on a CPU); the pipeline tests
#: check the tools, not precision, and train in float32
#: (tests/apis/test_amp.py trains in bfloat16)
FP32 = 'float32'


def tool_env(extra=None):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO, PROBE_DIR] + [p for p in [env.get('PYTHONPATH')] if p])
    # one compute thread per process: on a small shared machine, OpenMP
    # threads that outnumber the free cores spin-wait and slow everything
    env.setdefault('OMP_NUM_THREADS', '1')
    env['PY'] = sys.executable
    env.update(extra or {})
    return env


def run(cmd, timeout=600, check=True, env=None):
    """Run a command in the repo root; return (returncode, output)."""
    start = time.time()
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env=tool_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)
    out = proc.stdout
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(map(str, cmd))} failed '
                             f'({proc.returncode}, {time.time() - start:.0f}s)'
                             f':\n{out[-6000:]}')
    return proc.returncode, out


def tool(name, *args, **kwargs):
    script = osp.join(REPO, 'tools', name)
    return run([sys.executable, script, *map(str, args)], **kwargs)


def _set_scales(pipeline, scale):
    for t in pipeline:
        if t.get('type') in ('Resize', 'RandomResize'):
            t['scale'] = scale


def tiny_det_cfg(demo_root, work_dir, **extra) -> str:
    """The demo Mask R-CNN at 128px on a handful of images, 1 epoch."""
    cfg = Config.fromfile(DET_DEMO)
    root = osp.join(demo_root, 'coco') + '/'
    for split in ('train', 'val', 'test'):
        ds = cfg[f'{split}_dataloader'].dataset
        ds.data_root = root
        _set_scales(ds.pipeline, (128, 128))
        cfg[f'{split}_dataloader'].num_workers = 0
        cfg[f'{split}_dataloader'].persistent_workers = False
    for split in ('val', 'test'):
        cfg[f'{split}_evaluator'].ann_file = \
            root + 'annotations/instances_val.json'
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 1
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.checkpoint.max_keep_ckpts = 3
    cfg.optim_wrapper.dtype = FP32
    cfg.merge_from_dict(extra)
    path = osp.join(work_dir, 'tiny_det.py')
    os.makedirs(work_dir, exist_ok=True)
    cfg.dump(path)
    return path


def tiny_seg_cfg(demo_root, work_dir, crop=64, iters=2, test_scale=(512, 96),
                 **extra) -> str:
    """The demo UperNet, by default with 64px crops of images scaled to a
    short side of 96."""
    cfg = Config.fromfile(SEG_DEMO)
    root = osp.join(demo_root, 'ade')
    for split in ('train', 'val', 'test'):
        ds = cfg[f'{split}_dataloader'].dataset
        ds.data_root = root
        cfg[f'{split}_dataloader'].num_workers = 0
        cfg[f'{split}_dataloader'].persistent_workers = False
    for t in cfg.train_dataloader.dataset.pipeline:
        if t.type == 'RandomResize':
            t.scale = test_scale
        if t.type == 'RandomCrop':
            t.crop_size = (crop, crop)
    _set_scales(cfg.val_dataloader.dataset.pipeline, test_scale)
    _set_scales(cfg.test_dataloader.dataset.pipeline, test_scale)
    tta = cfg.tta_pipeline[1].transforms[0]
    for t, r in zip(tta, cfg.img_ratios):
        t.scale = (int(test_scale[0] * r), int(test_scale[1] * r))
    cfg.model.data_preprocessor.size = (crop, crop)
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = max(1, iters // 2)
    cfg.default_hooks.checkpoint.max_keep_ckpts = 3
    cfg.optim_wrapper.dtype = FP32
    cfg.merge_from_dict(extra)
    path = osp.join(work_dir, 'tiny_seg.py')
    os.makedirs(work_dir, exist_ok=True)
    cfg.dump(path)
    return path


def fails(tool_module, argv, capsys, code=1):
    """Run ``tool_module.main(argv)``; return its one line of error."""
    capsys.readouterr()
    log_to_current_stdout()
    with pytest.raises(SystemExit) as exit_:
        result = tool_module.main([str(a) for a in argv])
        raise SystemExit(result)  # convert_imagenet returns its status
    assert exit_.value.code == code
    err = capsys.readouterr().err
    # (library warnings may come before it)
    lines = [line for line in err.splitlines() if ': error: ' in line]
    assert len(lines) == 1, err
    assert 'Traceback' not in err
    return lines[0]


def log_to_current_stdout():
    # mmengine's logger outlives a test, and its console handler would keep
    # the (closed) stream that pytest gave the previous one
    import logging

    from mmengine.logging import MMLogger
    for logger in MMLogger._instance_dict.values():
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = sys.stdout
