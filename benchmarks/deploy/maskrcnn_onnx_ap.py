"""Box and mask AP of an exported Mask R-CNN in onnxruntime against PyTorch.

Exports the detector of CONFIG + CHECKPOINT (both exporters), runs the
config's test set through PyTorch (``model.test_step``, mmdet's own
predict) and through onnxruntime (:class:`mmext.deploy.detector_runtime.
OnnxMaskRCNN`), scores both with the config's evaluator (CocoMetric) and
compares the predictions detection by detection. PyTorch is run twice:
with the config's RoI layers as they are and with mmcv's RoIAlign kernel
(``use_torchvision=False``, what the COCO configs use).

    python -m mmext.datasets.demo --root data/demo
    python tools/train.py configs/demo/dualvit_tiny_maskrcnn_demo_12e.py \\
        --work-dir work_dirs/demo_det
    python benchmarks/deploy/maskrcnn_onnx_ap.py \\
        configs/demo/dualvit_tiny_maskrcnn_demo_12e.py \\
        work_dirs/demo_det/epoch_12.pth
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import tempfile
import time

import torch

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))

from mmext.deploy.detector import export_detector  # noqa: E402
from mmext.deploy.detector_runtime import OnnxMaskRCNN, evaluate  # noqa


def build(cfg, checkpoint, mmcv_roi_align=False):
    from mmdet.registry import MODELS
    from mmengine.runner import load_checkpoint
    cfg = copy.deepcopy(cfg)
    if mmcv_roi_align:
        for key in ('bbox_roi_extractor', 'mask_roi_extractor'):
            cfg.model.roi_head[key].roi_layer.use_torchvision = False
    model = MODELS.build(cfg.model).eval()
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    return model


class Recorder:
    """Wraps a predict function; keeps the predictions per image id."""

    def __init__(self, predict):
        self.predict, self.by_id, self.seconds = predict, {}, 0.

    def __call__(self, batch):
        start = time.perf_counter()
        with torch.no_grad():
            samples = self.predict(batch)
        self.seconds += time.perf_counter() - start
        for s in samples:
            self.by_id[s.img_id] = s.pred_instances
        return samples


def agreement(ref: Recorder, other: Recorder) -> dict:
    """Detection-by-detection differences (same order: best score first)."""
    same_count = same_labels = 0
    box = score = 0.
    mask_px = mask_diff = 0
    for img_id, a in ref.by_id.items():
        b = other.by_id[img_id]
        if len(a) != len(b):
            continue
        same_count += 1
        if not torch.equal(a.labels, b.labels):
            continue
        same_labels += 1
        if len(a):
            box = max(box, float((a.bboxes - b.bboxes).abs().max()))
            score = max(score, float((a.scores - b.scores).abs().max()))
            mask_px += int(a.masks.sum())
            mask_diff += int((a.masks != b.masks).sum())
    return dict(images=len(ref.by_id),
                same_number_of_detections=same_count,
                same_labels_in_order=same_labels,
                max_box_diff_px=box,
                max_score_diff=score,
                mask_pixels_differing=mask_diff,
                mask_pixels=mask_px)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--exporters', nargs='+',
                        default=['torchscript', 'dynamo'])
    parser.add_argument('--out',
                        default=osp.join(HERE, 'maskrcnn_onnx_ap.json'))
    args = parser.parse_args()
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    import mmext.models  # noqa: F401
    torch.set_num_threads(1)
    init_default_scope('mmdet')
    cfg = Config.fromfile(args.config)
    cfg.test_dataloader.update(batch_size=1, num_workers=0,
                               persistent_workers=False)

    runs, records = {}, {}
    for name, mmcv_kernel in (('pytorch', False), ('pytorch_mmcv_roi_align',
                                                   True)):
        rec = Recorder(build(cfg, args.checkpoint, mmcv_kernel).test_step)
        runs[name] = dict(metrics=evaluate(cfg, rec), seconds=rec.seconds,
                          load=os.getloadavg())
        records[name] = rec
    model = build(cfg, args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        for exporter in args.exporters:
            out = osp.join(tmp, f'{exporter}.onnx')
            start = time.perf_counter()
            export_detector(model, torch.zeros(1, 3, 256, 192), out,
                            exporter=exporter)
            export_s = time.perf_counter() - start
            rec = Recorder(OnnxMaskRCNN(out, threads=1).predict)
            name = f'onnxruntime_{exporter}'
            runs[name] = dict(metrics=evaluate(cfg, rec), seconds=rec.seconds,
                              export_seconds=export_s, load=os.getloadavg(),
                              vs_pytorch=agreement(records['pytorch'], rec),
                              vs_pytorch_mmcv_roi_align=agreement(
                                  records['pytorch_mmcv_roi_align'], rec))
    keys = ('coco/bbox_mAP', 'coco/segm_mAP')
    result = dict(
        config=args.config,
        checkpoint=osp.basename(args.checkpoint),
        note='seconds: inference over the test set, one thread, batch 1, '
        'not a speed benchmark (shared VM)',
        ap={name: {k: r['metrics'][k] for k in keys}
            for name, r in runs.items()},
        runs=runs,
        versions=dict(torch=torch.__version__,
                      onnxruntime=__import__('onnxruntime').__version__),
        load=os.getloadavg())
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result['ap'], indent=1))


if __name__ == '__main__':
    main()
