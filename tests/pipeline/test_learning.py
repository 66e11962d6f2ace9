"""A tiny segmentor learns on the demo data: after about a minute of CPU
training its mIoU is far above what trivial predictors get."""
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest

from tests.pipeline.pipeline_utils import tiny_seg_cfg, tool
from mmext.datasets.demo import SEG_CLASSES, make_demo_data


@pytest.fixture(scope='module')
def full_demo(tmp_path_factory):
    return make_demo_data(str(tmp_path_factory.mktemp('learn_data')))


def _trivial_baselines(ann_dir):
    """mIoU (%) and pixel accuracy (%) of the best constant prediction."""
    counts = np.zeros(len(SEG_CLASSES) + 1)
    for name in os.listdir(ann_dir):
        label = cv2.imread(osp.join(ann_dir, name), cv2.IMREAD_UNCHANGED)
        counts += np.bincount(label.ravel(), minlength=len(counts))
    counts = counts[1:]  # label 0 is ignored (reduce_zero_label)
    freq = counts / counts.sum()
    # predicting class c everywhere: IoU_c = freq_c, other IoUs 0
    return 100 * freq.max() / len(SEG_CLASSES), 100 * freq.max()


def test_tiny_segmentor_beats_chance(full_demo, tmp_path):
    work = str(tmp_path / 'learn')
    iters = 100
    cfg = tiny_seg_cfg(full_demo,
                       work,
                       crop=128,
                       iters=iters,
                       test_scale=(1024, 192),
                       param_scheduler=[
                           dict(type='LinearLR',
                                start_factor=0.1,
                                by_epoch=False,
                                begin=0,
                                end=10),
                           dict(type='PolyLR',
                                power=1.0,
                                begin=10,
                                end=iters,
                                by_epoch=False,
                                eta_min=0.0)
                       ])
    # trains, then evaluates on the 16 validation images
    _, out = tool('train.py', cfg, '--work-dir', work, '--cfg-options',
                  'default_hooks.logger.interval=25')
    line = [ln for ln in out.splitlines() if 'Iter(val)' in ln][-1]
    miou = float(re.search(r'mIoU: ([\d.]+)', line).group(1))
    aacc = float(re.search(r'aAcc: ([\d.]+)', line).group(1))
    base_miou, base_acc = _trivial_baselines(
        osp.join(full_demo, 'ade', 'annotations', 'validation'))
    assert base_miou < 15  # e.g. "everything is ground"
    assert miou > 3 * base_miou and miou > 25, (miou, base_miou)
    assert aacc > base_acc + 15, (aacc, base_acc)
