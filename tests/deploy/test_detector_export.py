"""Mask R-CNN to ONNX (mmext.deploy.detector) and back in onnxruntime
(mmext.deploy.detector_runtime): the exportable forward equals mmdet's
predict, the graph exported at one size runs at others and equals PyTorch,
box / mask AP on demo images are PyTorch's, bad requests are refused."""
import copy
import os.path as osp
import sys

import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime')

from mmext.deploy.detector import (  # noqa: E402
    DetectorExportError, MaskRCNNExport, export_detector, mmdet_predict)
from mmext.deploy.detector_runtime import (  # noqa: E402
    OnnxMaskRCNN, evaluate, paste_masks)

DATA = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data')
sys.path.insert(0, DATA)
from make_maskrcnn_tiny import tiny_cfg  # noqa: E402

CKPT = osp.join(DATA, 'maskrcnn_tiny_demo.pth')
CASCADE = osp.join(osp.dirname(DATA), '..', 'configs', 'detection',
                   'dualvit_s_cascade_maskrcnn_3x.py')
EXPORT_HW = (96, 128)
OTHER_HW = (75, 113)  # not multiples of 32


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    from mmext.datasets.demo import make_demo_data
    return make_demo_data(
        str(tmp_path_factory.mktemp('demo')), splits=dict(val=6))


@pytest.fixture(scope='module')
def cfg(demo_root):
    from mmengine.registry import init_default_scope
    import mmext.models  # noqa: F401
    init_default_scope('mmdet')
    return tiny_cfg(demo_root)


def _build(cfg, seed=0, **test_cfg):
    from mmdet.registry import MODELS
    cfg = copy.deepcopy(cfg)
    cfg.model.test_cfg.rcnn.update(test_cfg)
    torch.manual_seed(seed)
    return MODELS.build(cfg.model).eval()


@pytest.fixture(scope='module')
def random_model(cfg):
    return _build(cfg)


@pytest.fixture(scope='module')
def cascade_cfg(cfg):
    """The Cascade Mask R-CNN config (4conv1fc box heads with SyncBN,
    class-specific regression) with the tiny model's widths."""
    from mmengine.config import Config
    cascade = Config.fromfile(CASCADE)
    model, tiny = cascade.model, cfg.model
    model.backbone.update(arch=tiny.backbone.arch, init_cfg=None)
    model.neck = tiny.neck
    model.rpn_head.update(in_channels=tiny.rpn_head.in_channels,
                          feat_channels=tiny.rpn_head.feat_channels)
    width = tiny.neck.out_channels
    model.roi_head.bbox_roi_extractor.out_channels = width
    model.roi_head.mask_roi_extractor.out_channels = width
    for head in model.roi_head.bbox_head:
        head.update(in_channels=width, conv_out_channels=16,
                    fc_out_channels=32, num_classes=4)
    model.roi_head.mask_head.update(in_channels=width, conv_out_channels=16,
                                    num_classes=4)
    return cascade


@pytest.fixture(scope='module')
def random_onnx(random_model, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('onnx') / 'det.onnx')
    export_detector(random_model, torch.zeros(1, 3, *EXPORT_HW), out)
    return out


def _image(hw, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, *hw), generator=gen).float()


def _forward_equals_mmdet(model, image):
    """The exportable forward's outputs, checked against mmdet's predict
    bit for bit (boxes, scores, labels, pasted masks)."""
    ref = mmdet_predict(model, image)
    with torch.no_grad():
        boxes, scores, labels, probs = MaskRCNNExport(model)(image)
    assert len(ref) > 0
    torch.testing.assert_close(boxes, ref.bboxes, rtol=0, atol=0)
    torch.testing.assert_close(scores, ref.scores, rtol=0, atol=0)
    assert torch.equal(labels, ref.labels)
    masks = paste_masks(probs.numpy(), boxes.numpy(), tuple(image.shape[-2:]))
    assert np.array_equal(masks, ref.masks.numpy())
    return boxes, scores, labels, probs


@pytest.mark.parametrize('hw', [EXPORT_HW, OTHER_HW])
def test_exportable_forward_is_mmdets_predict(random_model, hw):
    _forward_equals_mmdet(random_model, _image(hw, 1))


@pytest.mark.parametrize('hw', [EXPORT_HW, OTHER_HW, (33, 47)])
def test_onnxruntime_equals_pytorch(random_model, random_onnx, hw):
    image = _image(hw, 2)
    with torch.no_grad():
        ref = MaskRCNNExport(random_model)(image)
    out = OnnxMaskRCNN(random_onnx).run(image.numpy())
    assert len(out[0]) == len(ref[0]) > 0
    assert np.array_equal(out[2], ref[2].numpy())  # labels, in order
    np.testing.assert_allclose(out[0], ref[0].numpy(), rtol=0, atol=2e-3)
    np.testing.assert_allclose(out[1], ref[1].numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(out[3], ref[3].numpy(), rtol=0, atol=1e-4)


def test_cascade_exports(cascade_cfg, tmp_path):
    """Cascade: three refining box stages, logits averaged, masks averaged
    over three mask heads; eager equals mmdet, onnxruntime equals eager."""
    model = _build(cascade_cfg)
    assert type(model.roi_head).__name__ == 'CascadeRoIHead'
    out = str(tmp_path / 'cascade.onnx')
    export_detector(model, torch.zeros(1, 3, *EXPORT_HW), out)
    runner = OnnxMaskRCNN(out)
    for hw in (EXPORT_HW, OTHER_HW):
        image = _image(hw, 4)
        boxes, _, labels, probs = _forward_equals_mmdet(model, image)
        got = runner.run(image.numpy())
        assert np.array_equal(got[2], labels.numpy())
        np.testing.assert_allclose(got[0], boxes.numpy(), rtol=0, atol=2e-3)
        np.testing.assert_allclose(got[3], probs.numpy(), rtol=0, atol=1e-4)


def test_graph_uses_onnx_ops_only(random_onnx):
    import onnx
    nodes = onnx.load(random_onnx).graph.node
    assert {n.domain for n in nodes} <= {'', 'ai.onnx'}
    ops = {n.op_type for n in nodes}
    assert {'RoiAlign', 'NonMaxSuppression'} <= ops
    for node in nodes:
        if node.op_type == 'RoiAlign':
            attrs = {a.name: onnx.helper.get_attribute_value(a)
                     for a in node.attribute}
            assert attrs['coordinate_transformation_mode'] == b'half_pixel'
            assert attrs['sampling_ratio'] == 0


def test_no_detections_gives_empty_results(cfg, tmp_path):
    model = _build(cfg, score_thr=1.0)  # softmax scores never exceed 1
    out = str(tmp_path / 'none.onnx')
    export_detector(model, torch.zeros(1, 3, *EXPORT_HW), out)
    runner = OnnxMaskRCNN(out)
    boxes, scores, labels, probs = runner.run(_image(OTHER_HW, 3).numpy())
    assert boxes.shape == (0, 4) and probs.shape[0] == 0
    result = runner.to_instances(
        (boxes, scores, labels, probs),
        dict(ori_shape=(150, 226), scale_factor=(0.5, 0.5)))
    assert tuple(result.masks.shape) == (0, 150, 226)


def test_paste_masks_is_mmdets(tmp_path):
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import \
        _do_paste_mask
    rng = np.random.RandomState(0)
    height, width = 60, 80
    x1, y1 = rng.uniform(0, width, 40), rng.uniform(0, height, 40)
    size = rng.exponential(20, (2, 40))
    size[:, :3] = 0  # boxes of zero width / height
    boxes = np.stack([x1, y1, x1 + size[0], y1 + size[1]], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    boxes = boxes.astype(np.float32)
    probs = rng.uniform(0, 1, (40, 28, 28)).astype(np.float32)
    ours = paste_masks(probs, boxes, (height, width))
    for i in range(len(boxes)):
        masks, where = _do_paste_mask(
            torch.from_numpy(probs[i:i + 1, None]),
            torch.from_numpy(boxes[i:i + 1]), height, width)
        ref = np.zeros((height, width), bool)
        ref[where] = (masks[0] >= 0.5).numpy()
        assert np.array_equal(ours[i], ref), i


@pytest.mark.skipif(not osp.isfile(CKPT),
                    reason='make it: python tests/data/make_maskrcnn_tiny.py')
def test_box_and_mask_ap_equal_pytorch(cfg, tmp_path):
    """The stored tiny demo model (tests/data/make_maskrcnn_tiny.py) on
    six demo val images: onnxruntime's box and mask AP are PyTorch's."""
    from mmext.utils.checkpoint import load_checkpoint_file
    model = _build(cfg)
    state = load_checkpoint_file(CKPT, map_location='cpu')['state_dict']
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in state.items()})
    out = str(tmp_path / 'trained.onnx')
    export_detector(model, torch.zeros(1, 3, *EXPORT_HW), out)
    with torch.no_grad():
        ref = evaluate(cfg, model.test_step)
    got = evaluate(cfg, OnnxMaskRCNN(out).predict)
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50',
                'coco/segm_mAP_50'):
        assert ref[key] > 0.2, (key, ref)  # a model that detects
        assert abs(got[key] - ref[key]) <= 0.002, (key, got[key], ref[key])


# -- refusals ---------------------------------------------------------------
def test_refuses_bad_requests(random_model, random_onnx, tmp_path):
    image = torch.zeros(1, 3, *EXPORT_HW)
    with pytest.raises(FileExistsError, match='overwrite'):
        export_detector(random_model, image, random_onnx)
    with pytest.raises(DetectorExportError, match='opset >= 16'):
        export_detector(random_model, image, str(tmp_path / 'a.onnx'),
                        opset=13)
    with pytest.raises(DetectorExportError, match=r'one image tensor \(1, 3'):
        export_detector(random_model, torch.zeros(2, 3, 64, 64),
                        str(tmp_path / 'b.onnx'))
    with pytest.raises(DetectorExportError, match='exporter='):
        export_detector(random_model, image, str(tmp_path / 'c.onnx'),
                        exporter='jit')
    assert not osp.exists(tmp_path / 'a.onnx')


def test_refuses_other_detectors(cfg):
    model = _build(cfg)
    model.roi_head.mask_roi_extractor.roi_layers[0].pool_mode = 'max'
    with pytest.raises(DetectorExportError, match='RoIAlign'):
        MaskRCNNExport(model)
    model = _build(cfg)
    del model.rpn_head
    with pytest.raises(DetectorExportError, match='no rpn_head'):
        MaskRCNNExport(model)
