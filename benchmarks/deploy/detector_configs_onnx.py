"""Every detection config through the ONNX export, at full size.

For each config in ``configs/detection/`` (random weights; the backbone's
pretrained file is not needed): build the detector, export it
(:func:`mmext.deploy.detector.export_detector`, TorchScript exporter) at
256x192, then at the export size and at 200x301 (not a multiple of 32)
compare

* the exportable PyTorch forward with mmdet's own ``predict`` (boxes,
  scores, labels), and
* onnxruntime with the exportable forward (boxes, scores, labels, 28x28
  mask probabilities).

``score_thr`` is set to 0: with random weights an 81-way softmax stays near
1/81, below the configs' 0.05, and nothing would be compared. Results go
to ``detector_configs_onnx.json``.

    python benchmarks/deploy/detector_configs_onnx.py [CONFIG ...]
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
import tempfile
import time
import traceback

import numpy as np
import torch

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, REPO)

from mmext.deploy.detector import (  # noqa: E402
    MaskRCNNExport, export_detector, mmdet_predict)
from mmext.deploy.detector_runtime import OnnxMaskRCNN  # noqa: E402

EXPORT_HW, OTHER_HW = (256, 192), (200, 301)


def _image(hw, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, *hw), generator=gen).float()


def _max_diff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max()) if a.size else 0.


def check(config: str, tmp: str) -> dict:
    from mmdet.registry import MODELS
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    wrapper = MaskRCNNExport(model).eval()
    out = osp.join(tmp, 'det.onnx')
    start = time.perf_counter()
    export_detector(model, _image(EXPORT_HW, 0), out, overwrite=True)
    row = dict(export_seconds=time.perf_counter() - start,
               onnx_mb=osp.getsize(out) / 2**20, sizes={})
    runner = OnnxMaskRCNN(out, threads=1)
    for hw in (EXPORT_HW, OTHER_HW):
        image = _image(hw, 1)
        key = 'x'.join(map(str, hw))
        with torch.no_grad():
            ref = mmdet_predict(model, image)
            boxes, scores, labels, probs = wrapper(image)
        try:
            got = runner.run(image.numpy())
        except Exception as err:  # noqa: BLE001 - record, go on
            row['sizes'][key] = dict(onnxruntime_error=str(err)[:600])
            continue
        same = len(got[0]) == len(boxes) == len(ref)
        row['sizes'][key] = dict(
            detections=[len(ref), len(boxes), len(got[0])],
            forward_vs_mmdet=same and dict(
                labels_equal=bool(torch.equal(labels, ref.labels)),
                box=_max_diff(boxes, ref.bboxes),
                score=_max_diff(scores, ref.scores)),
            onnxruntime_vs_forward=same and dict(
                labels_equal=bool(np.array_equal(got[2], labels.numpy())),
                box=_max_diff(got[0], boxes),
                score=_max_diff(got[1], scores),
                mask=_max_diff(got[3], probs)))
    row['load'] = os.getloadavg()
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('configs', nargs='*')
    parser.add_argument('--out',
                        default=osp.join(HERE, 'detector_configs_onnx.json'))
    args = parser.parse_args()
    from mmengine.registry import init_default_scope
    import mmext.models  # noqa: F401
    init_default_scope('mmdet')
    torch.set_num_threads(1)
    configs = args.configs or sorted(
        glob.glob(osp.join(REPO, 'configs/detection/*.py')))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            name = osp.splitext(osp.basename(config))[0]
            try:
                results[name] = check(config, tmp)
            except Exception as err:  # noqa: BLE001 - record, go on
                results[name] = dict(error=repr(err)[:2000],
                                     where=traceback.format_exc()[-2000:])
            print(name, json.dumps(results[name])[:600], flush=True)
    with open(args.out, 'w') as f:
        json.dump(dict(exporter='torchscript', export_size=EXPORT_HW,
                       results=results,
                       versions=dict(torch=torch.__version__),
                       load=os.getloadavg()), f, indent=1)


if __name__ == '__main__':
    main()
