"""The embedded demo data: deterministic, well-formed COCO / ADE20K files."""
import hashlib
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from mmext.datasets.demo import (OBJECT_CLASSES, SEG_CLASSES, make_demo_data)

SPLITS = dict(train=6, val=3)


def _digest(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = hashlib.md5(
                    f.read()).hexdigest()
    return out


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    return make_demo_data(
        str(tmp_path_factory.mktemp('demo')), splits=SPLITS)


def test_generation_is_deterministic(demo_root, tmp_path):
    again = make_demo_data(str(tmp_path / 'again'), splits=SPLITS)
    first, second = _digest(demo_root), _digest(again)
    assert first == second
    # stamp + COCO (9 jpg, 2 json) + ADE (9 jpg, 9 png)
    assert len(first) == 1 + 9 + 2 + 2 * 9


def test_other_seed_gives_other_images(demo_root, tmp_path):
    other = make_demo_data(str(tmp_path / 'other'), seed=1, splits=SPLITS)
    a = _digest(demo_root)
    b = _digest(other)
    assert a['coco/train/train_0000.jpg'] != b['coco/train/train_0000.jpg']


def test_existing_data_is_reused_and_stale_data_replaced(tmp_path):
    root = str(tmp_path / 'd')
    make_demo_data(root, splits=dict(train=2, val=1))
    img = osp.join(root, 'coco', 'train', 'train_0000.jpg')
    mtime = os.stat(img).st_mtime_ns
    make_demo_data(root, splits=dict(train=2, val=1))
    assert os.stat(img).st_mtime_ns == mtime
    make_demo_data(root, splits=dict(train=3, val=1))
    assert osp.isfile(osp.join(root, 'coco', 'train', 'train_0002.jpg'))
    with open(osp.join(root, 'coco/annotations/instances_train.json')) as f:
        assert len(json.load(f)['images']) == 3


def test_coco_annotations_match_masks(demo_root):
    from pycocotools.coco import COCO
    for split, num in SPLITS.items():
        coco = COCO(osp.join(demo_root, 'coco', 'annotations',
                             f'instances_{split}.json'))
        names = [c['name'] for c in coco.loadCats(coco.getCatIds())]
        assert names == list(OBJECT_CLASSES)
        assert len(coco.getImgIds()) == num
        anns = coco.loadAnns(coco.getAnnIds())
        assert len(anns) >= num  # at least one object per image
        for ann in anns:
            info = coco.loadImgs(ann['image_id'])[0]
            img = cv2.imread(
                osp.join(demo_root, 'coco', split, info['file_name']))
            assert img.shape[:2] == (info['height'], info['width'])
            mask = coco.annToMask(ann)
            # the polygon rasterises back to (nearly) the recorded area
            assert abs(mask.sum() - ann['area']) <= 0.2 * ann['area']
            ys, xs = np.nonzero(mask)
            x, y, w, h = ann['bbox']
            assert xs.min() >= x - 1 and xs.max() <= x + w
            assert ys.min() >= y - 1 and ys.max() <= y + h
            assert ann['iscrowd'] == 0 and w >= 8 and h >= 8


def test_ade_label_maps(demo_root):
    seen = set()
    for sub, num in (('training', 6), ('validation', 3)):
        imgs = sorted(os.listdir(osp.join(demo_root, 'ade', 'images', sub)))
        anns = sorted(
            os.listdir(osp.join(demo_root, 'ade', 'annotations', sub)))
        assert len(imgs) == len(anns) == num
        for img_name, ann_name in zip(imgs, anns):
            assert osp.splitext(img_name)[0] == osp.splitext(ann_name)[0]
            img = cv2.imread(osp.join(demo_root, 'ade', 'images', sub,
                                      img_name))
            label = cv2.imread(
                osp.join(demo_root, 'ade', 'annotations', sub, ann_name),
                cv2.IMREAD_UNCHANGED)
            assert label.ndim == 2 and label.shape == img.shape[:2]
            assert label.max() <= len(SEG_CLASSES)  # 0 = ignored clutter
            seen |= set(np.unique(label).tolist())
    # sky and ground and at least two object classes appear
    assert {1, 2} <= seen and len(seen - {0, 1, 2}) >= 2
