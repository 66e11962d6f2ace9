#!/usr/bin/env python
"""Make ``maskrcnn_tiny_demo.pth``: a Mask R-CNN small enough to store
(under 1 MB) and trained long enough on the demo data that its detections
score a box / mask AP well above zero, for the ONNX metric test
(``tests/deploy/test_detector_export.py``).

    python tests/data/make_maskrcnn_tiny.py [--epochs 24] [OUT]

The demo config (``configs/demo/dualvit_tiny_maskrcnn_demo_12e.py``) with
a narrower Dual-ViT and heads (:func:`tiny_cfg`), trained from scratch on
the generated demo set (48 train images, 128 px) on the CPU, one thread.
Stored: the state dict in fp16 (the test loads it into the float32 model)
and the arguments it was made with.
"""
import argparse
import os
import os.path as osp
import sys
import tempfile

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CFG = osp.join(REPO, 'configs/demo/dualvit_tiny_maskrcnn_demo_12e.py')
OUT = osp.join(osp.dirname(osp.abspath(__file__)), 'maskrcnn_tiny_demo.pth')
SCALE = (128, 128)


def tiny_cfg(demo_root: str, work_dir: str = None, epochs: int = 24):
    """The demo Mask R-CNN, narrower (~0.3 M parameters), at 128 px on the
    demo set under ``demo_root``."""
    from mmengine.config import Config
    cfg = Config.fromfile(DEMO_CFG)
    width = 32
    cfg.merge_from_dict({
        'model.backbone.arch':
        dict(stem_width=8,
             embed_dims=[16, 32, 48, 64],
             num_heads=[1, 2, 2, 2],
             mlp_ratios=[2, 2, 2, 2],
             depths=[1, 1, 1, 1]),
        'model.neck.in_channels': [16, 32, 48, 64],
        'model.neck.out_channels': width,
        'model.rpn_head.in_channels': width,
        'model.rpn_head.feat_channels': width,
        'model.roi_head.bbox_roi_extractor.out_channels': width,
        'model.roi_head.bbox_head.in_channels': width,
        'model.roi_head.bbox_head.fc_out_channels': 64,
        'model.roi_head.mask_roi_extractor.out_channels': width,
        'model.roi_head.mask_head.in_channels': width,
        'model.roi_head.mask_head.conv_out_channels': 16,
    })
    root = osp.join(demo_root, 'coco') + '/'
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.data_root = root
        for step in loader.dataset.pipeline:
            if step.type == 'Resize':
                step.scale = SCALE
    cfg.test_dataloader.batch_size = 1
    for split in ('val', 'test'):
        cfg[f'{split}_evaluator'].ann_file = \
            root + 'annotations/instances_val.json'
    cfg.train_cfg.update(max_epochs=epochs, val_begin=epochs + 1)
    cfg.param_scheduler[1].update(end=epochs,
                                  milestones=[epochs * 3 // 4])
    cfg.default_hooks.checkpoint.update(interval=epochs, save_last=True)
    # plain fp32 training (the base config's AMP wrapper needs a GPU)
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.optim_wrapper.pop('loss_scale', None)
    cfg.work_dir = work_dir
    return cfg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', nargs='?', default=OUT)
    parser.add_argument('--epochs', type=int, default=24)
    parser.add_argument('--force', action='store_true')
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    import torch
    from mmengine.runner import Runner

    from mmext.datasets.demo import make_demo_data
    from mmext.utils.fileio import atomic_write
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        demo_root = make_demo_data(osp.join(tmp, 'demo'))
        runner = Runner.from_cfg(
            tiny_cfg(demo_root, osp.join(tmp, 'work'), args.epochs))
        model = runner.train()
    state = {k: v.half() if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    with atomic_write(args.out, 'wb', force=args.force) as f:
        torch.save(dict(state_dict=state,
                        meta=dict(epochs=args.epochs, scale=SCALE,
                                  made_by='tests/data/make_maskrcnn_tiny.py')),
                   f)
    print(f'wrote {args.out} ({osp.getsize(args.out) / 1e6:.2f} MB)')


if __name__ == '__main__':
    main()
