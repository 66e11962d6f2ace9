"""The UperNet segmentor through tools/export_onnx.py and onnxruntime: the
same mIoU as PyTorch on demo images, from mmseg's IoUMetric over both
prediction sets (the data preprocessor and the resize to the original
image are mmseg's own in both)."""
import numpy as np
import pytest

from mmext.deploy.export_tool import main
from mmext.deploy.onnx_export import ort_session
from mmext.deploy.segmentor import evaluate_iou, predict_onnx, predict_torch


@pytest.fixture(scope='module')
def exported(seg_demo, tmp_path_factory):
    config, checkpoint = seg_demo
    out = str(tmp_path_factory.mktemp('seg_onnx') / 'upernet.onnx')
    assert main([config, checkpoint, out, '--shape', '96', '128']) == 0
    return config, checkpoint, out


def _model_and_loader(config, checkpoint):
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from mmext.apis.config_check import load_config
    from mmext.deploy.export_tool import load_model
    cfg = load_config(config)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = load_model(cfg, 'mmseg', checkpoint)
        loader = Runner.build_dataloader(cfg.test_dataloader)
    return model, loader


def test_onnxruntime_miou_equals_pytorch(exported, capsys):
    config, checkpoint, out = exported
    model, loader = _model_and_loader(config, checkpoint)
    meta = loader.dataset.metainfo
    torch_preds, onnx_preds = [], []

    def keep(predict, into):
        def wrapped(batch):
            samples = predict(batch)
            into.extend(s.pred_sem_seg.data.numpy() for s in samples)
            return samples
        return wrapped

    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        ours = evaluate_iou(keep(predict_torch(model), torch_preds), loader,
                            meta)
        theirs = evaluate_iou(
            keep(predict_onnx(model, ort_session(out)), onnx_preds), loader,
            meta)
    labels = np.concatenate([p.ravel() for p in torch_preds])
    assert len(np.unique(labels)) >= 2, 'constant predictions prove nothing'
    agree = np.mean(np.concatenate(
        [(a == b).ravel() for a, b in zip(torch_preds, onnx_preds)]))
    assert agree >= 0.999, agree
    for key in ('mIoU', 'aAcc', 'mAcc'):
        assert abs(float(ours[key]) - float(theirs[key])) <= 0.01, \
            (key, ours, theirs)
