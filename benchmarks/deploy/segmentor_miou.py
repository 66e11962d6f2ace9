"""mIoU of a segmentor in PyTorch and through its ONNX export in
onnxruntime, on the config's test set (mmseg's IoUMetric on both).

    python -m mmext.datasets.demo --root data/demo
    python tools/train.py configs/demo/dualvit_tiny_upernet_demo_400i.py \\
        --work-dir work_dirs/upernet_demo
    python benchmarks/deploy/segmentor_miou.py \\
        configs/demo/dualvit_tiny_upernet_demo_400i.py \\
        work_dirs/upernet_demo/iter_400.pth

Writes ``benchmarks/deploy/segmentor_miou.json`` (``--out``).
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--shape', type=int, nargs=2, default=(192, 256))
    parser.add_argument('--out', default=osp.join(HERE,
                                                  'segmentor_miou.json'))
    args = parser.parse_args()
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from mmext.apis.config_check import load_config
    from mmext.deploy.export_tool import load_model, main as export
    from mmext.deploy.onnx_export import ort_session
    from mmext.deploy.segmentor import (evaluate_iou, predict_onnx,
                                        predict_torch)
    from mmext.utils.fileio import atomic_write
    onnx_file = osp.join(tempfile.mkdtemp(), 'segmentor.onnx')
    if export([args.config, args.checkpoint, onnx_file, '--shape',
               *map(str, args.shape)]):
        raise SystemExit('export failed')
    cfg = load_config(args.config)
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = load_model(cfg, 'mmseg', args.checkpoint)
        loader = Runner.build_dataloader(cfg.test_dataloader)
        meta = loader.dataset.metainfo
        result = dict(
            config=args.config,
            checkpoint=osp.basename(args.checkpoint),
            images=len(loader.dataset),
            pytorch={k: float(v) for k, v in evaluate_iou(
                predict_torch(model), loader, meta).items()},
            onnxruntime={k: float(v) for k, v in evaluate_iou(
                predict_onnx(model, ort_session(onnx_file)), loader,
                meta).items()},
            load=os.getloadavg()[0])
    with atomic_write(args.out, 'w', force=True) as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
