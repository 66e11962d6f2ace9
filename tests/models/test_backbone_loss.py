"""A-ViT in Mask R-CNN and UperNet (tiny arch, the real configs): the
halting losses reach the loss dict, count in the total, and the mean depth
is logged. (Layer-wise lr decay: tests/engine/test_layer_decay.py.)"""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope

from mmext.apis.launch import adapt_cfg_to_device

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = dict(embed_dims=48, depth=4, num_heads=3, patch_size=16)
HALTING_KEYS = {'loss_ponder', 'loss_halting_prior', 'mean_depth'}


def tiny_cfg(name):
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    # gate values at which random weights halt some tokens early
    cfg.model.backbone.update(arch=TINY,
                              init_cfg=None,
                              gate_scale=10.,
                              gate_center=1.,
                              halting_loss=dict(prior_target_depth=3))
    adapt_cfg_to_device(cfg)
    return cfg


def check_loss_step(model, data):
    model.train()
    losses = model(**data, mode='loss')
    assert HALTING_KEYS <= set(losses)
    total, log_vars = model.parse_losses(losses)
    assert all(torch.isfinite(v).all() for v in log_vars.values())
    assert 1 <= log_vars['mean_depth'] <= TINY['depth']
    # the halting terms count in the total; the mean depth is only logged
    task = sum(v for k, v in log_vars.items()
               if 'loss' in k and k != 'loss' and k not in HALTING_KEYS)
    assert torch.allclose(
        total, task + log_vars['loss_ponder'] + log_vars['loss_halting_prior'])
    total.backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None


def test_maskrcnn_loss_step():
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    cfg = tiny_cfg('detection/avit_t_maskrcnn_1x.py')
    cfg.model.neck.update(in_channels=TINY['embed_dims'], out_channels=32)
    cfg.model.rpn_head.update(in_channels=32, feat_channels=32)
    cfg.model.roi_head.bbox_head.update(in_channels=32, fc_out_channels=64)
    cfg.model.roi_head.mask_head.update(in_channels=32, conv_out_channels=32)
    for extractor in ('bbox_roi_extractor', 'mask_roi_extractor'):
        cfg.model.roi_head[extractor].out_channels = 32
    with DefaultScope.overwrite_default_scope('mmdet'):
        import mmext.models  # noqa: F401
        model = MODELS.build(cfg.model)
        torch.manual_seed(0)
        packed = demo_mm_inputs(2, [(3, 97, 131), (3, 128, 96)],
                                num_items=[2, 3],
                                num_classes=80,
                                with_mask=True)
        data = model.data_preprocessor(packed, True)
        check_loss_step(model, data)


def test_upernet_loss_step():
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    cfg = tiny_cfg('segmentation/avit_t_upernet_ade20k_160k.py')
    dims = TINY['embed_dims']
    cfg.model.neck.update(in_channels=dims, out_channels=dims)
    cfg.model.decode_head.update(in_channels=[dims] * 4, channels=32)
    cfg.model.auxiliary_head.update(in_channels=dims, channels=16)
    with DefaultScope.overwrite_default_scope('mmseg'):
        import mmext.models  # noqa: F401
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
        torch.manual_seed(0)
        samples = []
        for _ in range(2):
            sample = SegDataSample()
            sample.gt_sem_seg = PixelData(
                data=torch.randint(0, 150, (1, 64, 64)))
            samples.append(sample)
        data = model.data_preprocessor(
            dict(inputs=[
                torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
                for _ in range(2)
            ],
                 data_samples=samples), True)
        check_loss_step(model, data)
