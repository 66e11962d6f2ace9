"""A tiny segmentor learns on the demo data: after about a minute of CPU
training its mIoU is far above chance."""
import json
import os.path as osp

import pytest

from conftest import tiny_seg_cfg, tool
from mmext.datasets.demo import make_demo_data


@pytest.fixture(scope='module')
def full_demo(tmp_path_factory):
    return make_demo_data(str(tmp_path_factory.mktemp('learn_data')))


def test_tiny_segmentor_beats_chance(full_demo, tmp_path):
    work = str(tmp_path / 'learn')
    iters = 150
    cfg = tiny_seg_cfg(
        full_demo, work, crop=96, iters=iters,
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                 end=20),
            dict(type='PolyLR', power=1.0, begin=20, end=iters,
                 by_epoch=False, eta_min=0.0)
        ])
    tool('train.py', cfg, '--work-dir', work, '--cfg-options',
         'train_cfg.val_begin=100000', 'default_hooks.logger.interval=25')
    _, out = tool('test.py', cfg, osp.join(work, f'iter_{iters}.pth'),
                  '--work-dir', work)
    line = [l for l in out.splitlines() if 'test results' in l][-1]
    metrics = json.loads(line.split('): ', 1)[1])
    # 6 classes: chance (uniform guessing) gives an mIoU of about 10
    assert metrics['mIoU'] > 40.0, metrics
    assert metrics['aAcc'] > 70.0, metrics
