"""mmdet's ``DetInferencer`` and mmseg's ``MMSegInferencer`` on every config
with a checkpoint (tiny models with random weights, tests/tiny_configs.py),
and what mmext's strict inferencers add."""
import os.path as osp

import numpy as np
import pytest
import torch

from mmext.apis.inferencers import (StrictDetInferencer, StrictSegInferencer,
                                    config_metainfo)
from mmext.errors import CheckpointMismatchError, NonFiniteCheckpointError
from tests.tiny_configs import (CONFIGS, REPO, build_model, save_checkpoint,
                                tiny_config)

ADE_CONFIG = osp.join(REPO, 'configs/segmentation/'
                      'shuffle_swin_xtiny_upernet_ade20k_160k.py')


def _image(root, scope):
    if scope == 'mmdet':
        return osp.join(root, 'coco', 'val', 'val_0000.jpg')
    return osp.join(root, 'ade', 'images', 'validation',
                    'demo_validation_0000.jpg')


def _num_classes(model):
    if hasattr(model, 'decode_head'):
        return model.decode_head.num_classes
    head = model.roi_head.bbox_head
    return (head[-1] if isinstance(head, torch.nn.ModuleList)
            else head).num_classes


def _upstream(cfg, checkpoint):
    if cfg.default_scope == 'mmdet':
        from mmdet.apis import DetInferencer
        return DetInferencer(cfg, checkpoint, device='cpu',
                             show_progress=False)
    from mmseg.apis import MMSegInferencer
    return MMSegInferencer(cfg, checkpoint, device='cpu')


@pytest.mark.parametrize('path', CONFIGS,
                         ids=lambda p: osp.relpath(p, REPO))
def test_upstream_inferencer_on_every_config(path, tmp_path,
                                             infer_demo_root):
    cfg = tiny_config(path)
    scope = cfg.default_scope
    model = build_model(cfg)
    meta = config_metainfo(cfg, scope)
    ckpt = save_checkpoint(model, tmp_path / 'model.pth', meta)
    inferencer = _upstream(cfg, ckpt)

    # the checkpoint's weights and classes, through mmext's weights_only
    # loader (the checkpoint holds mmengine's HistoryBuffer)
    loaded = inferencer.model.state_dict()
    assert all(torch.equal(loaded[k], v)
               for k, v in model.state_dict().items())
    classes = inferencer.model.dataset_meta['classes']
    assert tuple(classes) == tuple(meta['classes'])
    assert len(classes) == _num_classes(inferencer.model)

    image = _image(infer_demo_root, scope)
    import mmcv
    h, w = mmcv.imread(image).shape[:2]
    if scope == 'mmdet':
        out = inferencer(image, return_vis=True, pred_score_thr=0.)
        pred = out['predictions'][0]
        n = len(pred['labels'])
        assert n > 0
        assert len(pred['scores']) == len(pred['bboxes']) == n
        assert [m['size'] for m in pred['masks']] == [[h, w]] * n
        boxes = np.array(pred['bboxes'])
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= w).all() \
            and (boxes[:, [1, 3]] <= h).all()
        assert max(pred['labels']) < len(classes)
        drawing = out['visualization'][0]
    else:
        out = inferencer(image, return_vis=True)
        assert out['predictions'].shape == (h, w)
        assert out['predictions'].max() < len(classes)
        drawing = out['visualization']
    assert drawing.shape == (h, w, 3)


@pytest.mark.parametrize('path, upstream_classes', [
    (ADE_CONFIG, 19),  # mmseg falls back to Cityscapes
    (osp.join(REPO, 'configs/demo/dualvit_tiny_maskrcnn_demo_12e.py'), 80),
])
def test_checkpoint_without_class_names(path, upstream_classes, tmp_path):
    """The upstream inferencers name the classes of such a checkpoint after
    COCO / Cityscapes (an ADE20K model then draws only 19 of its 150
    classes); the strict ones take the config's."""
    cfg = tiny_config(path)
    ckpt = save_checkpoint(build_model(cfg), tmp_path / 'bare.pth')
    with pytest.warns(UserWarning, match='dataset_meta or class names'):
        upstream = _upstream(cfg, ckpt)
    assert len(upstream.model.dataset_meta['classes']) == upstream_classes
    kind = StrictDetInferencer if cfg.default_scope == 'mmdet' \
        else StrictSegInferencer
    strict = kind(cfg, ckpt, device='cpu')
    assert strict.model.dataset_meta == config_metainfo(cfg,
                                                        cfg.default_scope)
    assert len(strict.model.dataset_meta['classes']) == \
        _num_classes(strict.model)


def test_strict_inferencer_refuses_weights_of_another_model(tmp_path):
    cfg = tiny_config(ADE_CONFIG)
    other = tiny_config(ADE_CONFIG, width=8)
    ckpt = save_checkpoint(build_model(other), tmp_path / 'other.pth')
    with pytest.raises(CheckpointMismatchError,
                       match=r'does not fit the model .* of another shape'):
        StrictSegInferencer(cfg, ckpt, device='cpu')
    # upstream loads what fits and keeps the rest random, with a warning
    # only; strict=False does the same
    loose = StrictSegInferencer(cfg, ckpt, device='cpu', strict=False)
    assert loose.model.decode_head.conv_seg.in_channels == 16


def test_strict_inferencer_refuses_nonfinite_weights(tmp_path):
    cfg = tiny_config(ADE_CONFIG)
    model = build_model(cfg)
    with torch.no_grad():
        model.decode_head.conv_seg.weight[0, 0] = float('inf')
    ckpt = save_checkpoint(model, tmp_path / 'inf.pth')
    for strict in (True, False):  # never drawn with, whatever strict says
        with pytest.raises(NonFiniteCheckpointError,
                           match=f'^checkpoint {ckpt} has non-finite weights'
                           r': 1 of \d+ tensors hold NaN or inf: '
                           'decode_head.conv_seg.weight'):
            StrictSegInferencer(cfg, ckpt, device='cpu', strict=strict)
