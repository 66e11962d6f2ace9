"""How long the data checks take on sets of COCO val and ADE20K val size,
beside the time the frameworks take to load the same sets.

Generates (once, under ``--root``)

* a COCO-format set of 5000 images (640x480 JPEGs) with COCO val's
  annotation density: 7.3 instances per image on average, polygons of
  10-50 points (about the 25 MB of instances_val2017.json), 1% crowd
  annotations with uncompressed RLE masks;
* an ADE20K-format set of 2000 images (683x512 JPEGs) with label maps.

Then, in one process, alternating rounds of: the quick check (what
``tools/train.py`` runs before training), the framework's own load of the
dataset (``mmdet.datasets.CocoDataset`` / ``mmseg.datasets.
BaseSegDataset`` ``full_init``), and once the full check (every image and
label map decoded) with 1 and 2 worker processes. The 1-minute load
average is recorded beside each figure (the machine is shared).

Usage::

    python benchmarks/data_checks/run.py --root /tmp/data_checks \\
        --out benchmarks/data_checks/results.json
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

import cv2
import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmext.datasets.checks import (DatasetSpec, full_check,  # noqa: E402
                                   quick_check)
from mmext.utils.fileio import atomic_write  # noqa: E402

COCO_CLASSES = tuple(f'class_{i}' for i in range(80))
ADE_CLASSES = tuple(f'class_{i}' for i in range(150))


def _image(rng, h, w):
    """A JPEG-like photo stand-in: smooth colour blobs plus grain (decodes
    at the cost of a real photo of that size)."""
    small = rng.randint(0, 255, (h // 32 + 1, w // 32 + 1, 3), np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = rng.randint(0, 24, (h, w, 3), np.uint8)
    return cv2.add(img, noise)


def _polygon(rng, x, y, w, h):
    n = rng.randint(10, 51)
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.6, 1.0, n)
    px = x + w / 2 + np.cos(t) * r * w / 2
    py = y + h / 2 + np.sin(t) * r * h / 2
    return [round(float(v), 2) for pair in zip(px, py) for v in pair]


def make_coco(root, num=5000, seed=0):
    ann_file = osp.join(root, 'annotations', 'instances_val.json')
    if osp.isfile(ann_file):
        return ann_file
    rng = np.random.RandomState(seed)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    os.makedirs(osp.join(root, 'val'), exist_ok=True)
    images, anns = [], []
    for i in range(num):
        w, h = (640, 480) if i % 3 else (480, 640)
        name = f'{i:012d}.jpg'
        img = _image(rng, h, w)
        if not osp.isfile(osp.join(root, 'val', name)):
            cv2.imwrite(osp.join(root, 'val', name), img,
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append(dict(id=i + 1, file_name=name, width=w, height=h))
        for _ in range(rng.poisson(7.3)):
            bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            crowd = rng.rand() < 0.01
            if crowd:
                counts = rng.randint(1, 400, rng.randint(100, 500)).tolist()
                seg = dict(counts=counts, size=[h, w])
            else:
                seg = [_polygon(rng, x, y, bw, bh)]
            anns.append(dict(
                id=len(anns) + 1, image_id=i + 1,
                category_id=int(rng.randint(1, 81)), iscrowd=int(crowd),
                bbox=[round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                area=round(bw * bh * 0.7, 2), segmentation=seg))
    cats = [dict(id=i + 1, name=n, supercategory='x')
            for i, n in enumerate(COCO_CLASSES)]
    with open(ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return ann_file


def make_ade(root, num=2000, seed=1):
    img_dir = osp.join(root, 'images', 'validation')
    seg_dir = osp.join(root, 'annotations', 'validation')
    if osp.isdir(seg_dir) and len(os.listdir(seg_dir)) == num:
        return img_dir, seg_dir
    rng = np.random.RandomState(seed)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(seg_dir, exist_ok=True)
    for i in range(num):
        w, h = (683, 512) if i % 2 else (512, 683)
        stem = f'ADE_val_{i:08d}'
        cv2.imwrite(osp.join(img_dir, stem + '.jpg'), _image(rng, h, w),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        small = rng.randint(0, 151, (h // 16 + 1, w // 16 + 1), np.uint8)
        label = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(osp.join(seg_dir, stem + '.png'), label)
    return img_dir, seg_dir


def coco_spec(root, ann_file):
    return DatasetSpec(where='val_dataloader.dataset', ann_file=ann_file,
                       img_dir=osp.join(root, 'val') + '/', seg_dir='',
                       img_suffix='.jpg', seg_suffix='.png',
                       classes=COCO_CLASSES, with_mask=True,
                       reduce_zero_label=False, ignore_index=255,
                       test_mode=True)


def ade_spec(img_dir, seg_dir):
    return DatasetSpec(where='val_dataloader.dataset', ann_file='',
                       img_dir=img_dir, seg_dir=seg_dir, img_suffix='.jpg',
                       seg_suffix='.png', classes=ADE_CLASSES,
                       with_mask=False, reduce_zero_label=True,
                       ignore_index=255, test_mode=True)


def mmdet_load(root, ann_file):
    from mmdet.datasets import CocoDataset
    ds = CocoDataset(ann_file=ann_file, data_prefix=dict(img=root + '/val/'),
                     metainfo=dict(classes=COCO_CLASSES), test_mode=True,
                     pipeline=[], lazy_init=True)
    ds.full_init()
    return len(ds)


def mmseg_load(img_dir, seg_dir):
    from mmseg.datasets import BaseSegDataset
    ds = BaseSegDataset(data_prefix=dict(img_path=img_dir,
                                         seg_map_path=seg_dir),
                        img_suffix='.jpg', seg_map_suffix='.png',
                        metainfo=dict(classes=ADE_CLASSES),
                        reduce_zero_label=True, pipeline=[], lazy_init=True)
    ds.full_init()
    return len(ds)


def timed(fn):
    load = os.getloadavg()[0]
    start = time.perf_counter()
    out = fn()
    return dict(seconds=round(time.perf_counter() - start, 3),
                load_1min=round(load, 2)), out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default='/tmp/mmext_data_checks')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--out', default=osp.join(
        REPO, 'benchmarks', 'data_checks', 'results.json'))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    coco_root = osp.join(args.root, 'coco')
    ann_file = make_coco(coco_root)
    img_dir, seg_dir = make_ade(osp.join(args.root, 'ade'))
    made = time.perf_counter() - start
    coco, ade = coco_spec(coco_root, ann_file), ade_spec(img_dir, seg_dir)
    with open(ann_file) as f:
        data = json.load(f)
    sizes = dict(coco_images=len(data['images']),
                 coco_annotations=len(data['annotations']),
                 coco_json_mb=round(osp.getsize(ann_file) / 2**20, 1),
                 ade_images=len(os.listdir(img_dir)))
    del data

    rows = {k: [] for k in ('coco quick check', 'mmdet CocoDataset load',
                            'ADE quick check', 'mmseg BaseSegDataset load')}
    for _ in range(args.rounds):  # alternating, in one process
        for name, fn in (
                ('coco quick check', lambda: quick_check(coco).counts),
                ('mmdet CocoDataset load', lambda: mmdet_load(coco_root,
                                                              ann_file)),
                ('ADE quick check', lambda: quick_check(ade).counts),
                ('mmseg BaseSegDataset load', lambda: mmseg_load(
                    img_dir, seg_dir))):
            row, out = timed(fn)
            row['result'] = out
            rows[name].append(row)
    full = {}
    for workers in (1, 2):
        for name, spec in (('coco', coco), ('ADE', ade)):
            row, out = timed(lambda: full_check(spec, workers=workers))
            row['problems'] = out.counts
            full[f'{name} full check, {workers} worker(s)'] = row

    def best(name):
        return min(r['seconds'] for r in rows[name])

    summary = dict(
        coco_quick_over_mmdet_load=round(
            best('coco quick check') / best('mmdet CocoDataset load'), 3),
        ade_quick_over_mmseg_load=round(
            best('ADE quick check') / best('mmseg BaseSegDataset load'), 3))
    result = dict(sizes=sizes, generation_seconds=round(made, 1),
                  cpu_count=os.cpu_count(), rounds=rows, full_check=full,
                  summary=summary)
    with atomic_write(args.out, 'w', force=True) as f:
        json.dump(result, f, indent=2)
    with atomic_write(osp.splitext(args.out)[0] + '.md', 'w',
                      force=True) as f:
        f.write(_markdown(result))
    print(json.dumps(summary))


def _markdown(result) -> str:
    s = result['sizes']
    lines = [
        '# Data checks: time on sets of COCO val and ADE20K val size',
        '',
        f'Generated by `benchmarks/data_checks/run.py`: a COCO-format set of '
        f'{s["coco_images"]} images (640x480 JPEGs) with '
        f'{s["coco_annotations"]} annotations ({s["coco_json_mb"]} MB of '
        f'JSON: polygons, 1% crowd RLE; COCO val 2017 has 36781 in 25 MB) '
        f'and an ADE20K-format set of '
        f'{s["ade_images"]} images (683x512) with label maps. One process, '
        f'rounds alternating; the 1-minute load average of this shared '
        f'{result["cpu_count"]}-core machine beside each figure.',
        '',
        '| measurement | seconds per round (load) | best |',
        '|---|---|---|',
    ]
    for name, rows in result['rounds'].items():
        cells = ', '.join(f'{r["seconds"]:.2f} ({r["load_1min"]})'
                          for r in rows)
        best = min(r['seconds'] for r in rows)
        lines.append(f'| {name} | {cells} | {best:.2f} |')
    lines += ['', '| full check (every file decoded) | seconds (load) | '
              'files per second |', '|---|---|---|']
    for name, row in result['full_check'].items():
        files = s['coco_images'] if name.startswith('coco') else \
            2 * s['ade_images']
        lines.append(f'| {name} | {row["seconds"]:.1f} ({row["load_1min"]}) '
                     f'| {files / row["seconds"]:.0f} |')
    summ = result['summary']
    lines += ['', f'Quick check / framework load: COCO '
              f'{summ["coco_quick_over_mmdet_load"]:.2f}, ADE20K '
              f'{summ["ade_quick_over_mmseg_load"]:.2f} (best of the rounds '
              'each).', '']
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
