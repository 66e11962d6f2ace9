"""``tools/test.py --tta`` evaluates every scale and flip of the real
ADE20K config's TTA pipeline and merges them correctly (known answer: the
probe model in tta_probe.py is right only on one augmentation per image)."""
import json
import os
import os.path as osp
from collections import defaultdict

import cv2
import numpy as np
import torch
from tests.pipeline.pipeline_utils import REPO, tool
from mmengine.config import Config

from tests.pipeline.tta_probe import COMBOS, RATIOS

NUM_CLASSES = 4
W, H = 40, 32


def _make_data(root):
    """12 images with asymmetric vertical stripes (labels 0..3)."""
    os.makedirs(osp.join(root, 'img'))
    os.makedirs(osp.join(root, 'ann'))
    rng = np.random.RandomState(0)
    for i in range(len(COMBOS)):
        edges = np.sort(rng.choice(np.arange(4, W - 4), 3, replace=False))
        label = np.zeros((H, W), np.uint8)
        for k, e in enumerate(edges):
            label[:, e:] = k + 1
        img = rng.randint(0, 255, size=(H, W, 3)).astype(np.uint8)
        cv2.imwrite(osp.join(root, 'img', f'probe_{i:02d}.jpg'), img)
        cv2.imwrite(osp.join(root, 'ann', f'probe_{i:02d}.png'), label)


def test_tta_evaluates_every_scale_and_flip(tmp_path):
    data = str(tmp_path / 'data')
    _make_data(data)
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/segmentation',
                 'dualvit_s_upernet_ade20k_160k.py'))
    cfg.custom_imports = dict(imports=['mmext.models', 'tta_probe'],
                              allow_failed_imports=False)
    cfg.model = dict(
        type='TTAProbeSegmentor',
        num_classes=NUM_CLASSES,
        base_short=512,  # the config's test scale (2048, 512)
        data_preprocessor=cfg.model.data_preprocessor)
    cfg.test_dataloader.dataset = dict(
        type='BaseSegDataset',
        data_root=data,
        data_prefix=dict(img_path='img', seg_map_path='ann'),
        metainfo=dict(classes=tuple(f'c{i}' for i in range(NUM_CLASSES))),
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=False,
        pipeline=cfg.test_pipeline)
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    cfg_path = str(tmp_path / 'probe_cfg.py')
    cfg.dump(cfg_path)
    ckpt = str(tmp_path / 'probe.pth')
    torch.save(dict(state_dict=dict(dummy=torch.zeros(1)), meta=dict()), ckpt)
    log = str(tmp_path / 'calls.jsonl')
    out_dir = str(tmp_path / 'pred')

    _, out = tool('test.py',
                  cfg_path,
                  ckpt,
                  '--tta',
                  '--out',
                  out_dir,
                  '--work-dir',
                  str(tmp_path / 'work'),
                  env=dict(TTA_PROBE_LOG=log))

    # every image went through all 6 scales x 2 flips, at the right sizes
    calls = defaultdict(set)
    with open(log) as f:
        for line in f:
            name, ratio, flip, shape = json.loads(line)
            calls[name].add((ratio, flip))
            assert abs(min(shape) - 512 * ratio) <= 1
    assert len(calls) == len(COMBOS)
    for name, seen in calls.items():
        assert seen == set(COMBOS), name
    assert len(RATIOS) == 6

    # the merged predictions are the ground truth (the one confident pass
    # per image was resized and un-flipped back correctly)
    for i in range(len(COMBOS)):
        gt = cv2.imread(osp.join(data, 'ann', f'probe_{i:02d}.png'),
                        cv2.IMREAD_UNCHANGED)
        pred = cv2.imread(osp.join(out_dir, f'probe_{i:02d}.png'),
                          cv2.IMREAD_UNCHANGED)
        assert pred is not None and pred.shape == gt.shape
        acc = (pred == gt).mean()
        assert acc >= 0.95, (i, COMBOS[i], acc)
    metrics = [ln for ln in out.splitlines() if 'test results' in ln][-1]
    miou = json.loads(metrics.split('): ', 1)[1])['mIoU']
    assert miou >= 95.0
