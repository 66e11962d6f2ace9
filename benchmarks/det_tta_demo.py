"""Single-scale vs multi-scale + flip test (``tools/test.py --tta``) of a
detector checkpoint: box and mask AP, NMS vs weighted box fusion, and the
peak memory of the mask merge.

Usage (the numbers in docs/tta.md)::

    python tools/train.py configs/demo/dualvit_tiny_maskrcnn_demo_12e.py \
        --work-dir work_dirs/demo_det
    python benchmarks/det_tta_demo.py work_dirs/demo_det/epoch_12.pth \
        --out benchmarks/det_tta_demo.json

Each evaluation runs ``tools/test.py`` in its own process, one after the
other; the 1-minute load average is recorded beside each row (the machine
is shared). ``--memory`` adds the merge-memory measurement; ``--data-root``
evaluates on another demo set, e.g. a larger, independent validation set::

    python -m mmext.datasets.demo --root work_dirs/demo_val64 --seed 1 \
        --train 1 --val 64
    python benchmarks/det_tta_demo.py work_dirs/demo_det/epoch_12.pth \
        --data-root work_dirs/demo_val64/coco \
        --modes 'single scale' 'TTA, NMS 0.5' 'TTA, WBF 0.55' \
        --out benchmarks/det_tta_demo_val64.json
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = 'configs/demo/dualvit_tiny_maskrcnn_demo_12e.py'
KEYS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'segm_mAP', 'segm_mAP_50',
        'segm_mAP_75')
# (name, tools/test.py arguments after CONFIG CKPT)
MODES = [
    ('single scale', []),
    ('TTA, NMS 0.5', ['--tta', '--cfg-options',
                      'tta_model.tta_cfg.fusion=nms',
                      'tta_model.tta_cfg.iou_thr=0.5']),
    ('TTA, NMS 0.6', ['--tta', '--cfg-options',
                      'tta_model.tta_cfg.fusion=nms',
                      'tta_model.tta_cfg.iou_thr=0.6']),
    ('TTA, WBF 0.55', ['--tta', '--cfg-options',
                       'tta_model.tta_cfg.fusion=wbf',
                       'tta_model.tta_cfg.iou_thr=0.55']),
    ('TTA, WBF 0.7', ['--tta', '--cfg-options',
                      'tta_model.tta_cfg.fusion=wbf',
                      'tta_model.tta_cfg.iou_thr=0.7']),
]


def evaluate(config, ckpt, extra, work_dir):
    env = dict(os.environ, PYTHONPATH=REPO)
    env.setdefault('OMP_NUM_THREADS', '1')
    load = os.getloadavg()[0]
    start = time.time()
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/test.py'), config, ckpt,
         '--work-dir', work_dir, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    seconds = time.time() - start
    if proc.returncode:
        sys.exit(proc.stdout[-3000:])
    line = [ln for ln in proc.stdout.splitlines()
            if 'test results' in ln][-1]
    metrics = json.loads(line.split('): ', 1)[1])
    return dict({k: metrics[f'coco/{k}'] for k in KEYS},
                seconds=round(seconds, 1),
                load=round((load + os.getloadavg()[0]) / 2, 2))


MEMORY_CHILD = r'''
import resource, sys, torch
from mmengine.structures import InstanceData
from mmext.models.test_time_augs import merge_views, view_detections
views, dets, h, w = map(int, sys.argv[1:5])
g = torch.Generator().manual_seed(0)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
compact = []
for v in range(views):
    # one view's detector output: full-image uint8 probability maps
    xy = torch.rand(dets, 2, generator=g) * torch.tensor([w * .8, h * .8])
    wh = torch.rand(dets, 2, generator=g) * torch.tensor([w * .2, h * .2]) + 8
    boxes = torch.cat([xy, xy + wh], 1)
    masks = torch.zeros(dets, h, w, dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[i, y1:y2, x1:x2] = 200
    pred = InstanceData(bboxes=boxes, scores=torch.rand(dets, generator=g),
                        labels=torch.randint(0, 5, (dets,), generator=g),
                        masks=masks)
    compact.append(view_detections(pred, dict(ori_shape=(h, w),
                                              flip=v % 2 == 1)))
    del pred, masks
res = merge_views(compact, (h, w), max_per_img=dets)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) / 1024, len(res))
'''


def memory(views=10, dets=100, h=800, w=1333):
    out = subprocess.run(
        [sys.executable, '-c', MEMORY_CHILD, str(views), str(dets), str(h),
         str(w)], env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1'),
        stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    one_view = dets * h * w / 2**20
    return dict(views=views, detections_per_view=dets, image=[h, w],
                peak_increase_mib=round(float(out[0]), 1),
                one_view_masks_mib=round(one_view, 1),
                all_views_dense_mib=round(views * one_view, 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint')
    parser.add_argument('--config', default=DEMO)
    parser.add_argument('--out', help='write the results to this .json')
    parser.add_argument('--work-dir', default='work_dirs/det_tta_bench')
    parser.add_argument('--memory', action='store_true')
    parser.add_argument(
        '--data-root',
        help='evaluate on this COCO-format demo set instead (a folder with '
        'val/ and annotations/instances_val.json)')
    parser.add_argument('--modes', nargs='+', help='names from MODES')
    args = parser.parse_args()
    data = []
    if args.data_root:
        root = osp.abspath(args.data_root) + '/'
        data = ['--cfg-options', f'test_dataloader.dataset.data_root={root}',
                'test_evaluator.ann_file='
                f'{root}annotations/instances_val.json']
    rows = []
    for name, extra in MODES:
        if args.modes and name not in args.modes:
            continue
        row = dict(mode=name, **evaluate(args.config, args.checkpoint,
                                         extra + data, args.work_dir))
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = dict(config=args.config, checkpoint=args.checkpoint,
                  data_root=args.data_root, rows=rows)
    if args.memory:
        result['merge_memory'] = memory()
        print(json.dumps(result['merge_memory']))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
