"""Instance-mask TTA (mmext/models/test_time_augs/) with a known answer.

The probe detector (det_tta_probe.py) returns the ground truth of each image
as a detector would in each view (mirrored in flipped views), plus one extra
object seen by a single view per image. Through the real detection config's
``tta_pipeline`` the merged result must be the ground truth exactly: every
scale and flip evaluated, every flip undone. Two controls show that the
check fails when a flip is not undone or the flipped views are dropped.
"""
import copy
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from mmext.apis import test as test_tool
from mmext.models.test_time_augs import views as tta_views
from mmext.models.test_time_augs.fusion import (average_mask, fuse_nms,
                                                fuse_wbf, merge_views)
from mmext.models.test_time_augs.instance_seg_tta import InstanceSegTTAModel
from mmext.models.test_time_augs.views import MaskCrop
from tests.models.test_time_augs.det_tta_probe import (TTAProbeDetector,
                                                       write_probe_data)

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
DET_1X = osp.join(REPO, 'configs/detection/dualvit_s_maskrcnn_1x.py')


def _views(cfg):
    """The (short side, flip) combinations of a config's tta_pipeline (the
    probe images are small, so the short side is the scale's short side)."""
    resizes, flips = cfg.tta_pipeline[1].transforms[:2]
    return [(min(t.scale), f.prob == 1.) for t in resizes for f in flips]


@pytest.fixture(scope='module')
def det_cfg():
    return Config.fromfile(DET_1X)


@pytest.fixture(scope='module')
def probe_data(tmp_path_factory, det_cfg):
    root = str(tmp_path_factory.mktemp('det_tta'))
    return root, write_probe_data(root, len(_views(det_cfg)))


def _dataset(root, ann_file, pipeline):
    from mmdet.datasets import CocoDataset
    return CocoDataset(
        data_root=root, ann_file=ann_file, data_prefix=dict(img='img/'),
        metainfo=dict(classes=('a', 'b')), pipeline=pipeline, test_mode=True)


def _run_tta(cfg, root, ann_file, pipeline=None, images=None, **tta_cfg):
    """{image id: pred_instances} of the probe through ``pipeline``
    (default: the config's tta_pipeline) for ``images`` (indices, default
    all), two images per batch."""
    init_default_scope('mmdet')
    probe = TTAProbeDetector(ann_file, combos=_views(cfg),
                             data_preprocessor=cfg.model.data_preprocessor)
    model = InstanceSegTTAModel(probe, tta_cfg=dict(cfg.tta_model.tta_cfg,
                                                    **tta_cfg))
    # TestTimeAug builds its transforms into the lists it is given
    dataset = _dataset(root, ann_file,
                       copy.deepcopy(pipeline or cfg.tta_pipeline))
    images = list(range(len(dataset))) if images is None else images
    preds = {}
    for start in range(0, len(images), 2):
        batch = pseudo_collate([dataset[i] for i in images[start:start + 2]])
        for sample in model.test_step(batch):
            preds[sample.img_id] = sample.pred_instances
    # restored after the soft-mask views
    assert probe.roi_head.test_cfg['mask_thr_binary'] == 0.5
    return probe, preds


def _check_known_answer(probe, preds):
    """Every image comes back as its ground truth: same boxes, labels and
    (bool) masks, nothing else."""
    for iid, pred in preds.items():
        objs = probe.truth(iid)
        assert len(pred) == len(objs), (iid, len(pred))
        for box, label, mask in objs:
            k = int(torch.nonzero(pred.labels == label)[0])
            # float32 round-off through the scale factors and the WBF mean:
            # at most 7.6e-6 px measured on these images (< 66 px wide)
            assert torch.allclose(pred.bboxes[k], box.float(), atol=1e-4), \
                (iid, label, pred.bboxes[k], box)
            assert pred.masks.dtype == torch.bool
            assert torch.equal(pred.masks[k], mask), (iid, label)


@pytest.mark.parametrize('fusion', ['nms', 'wbf'])
def test_known_answer_through_the_config_pipeline(det_cfg, probe_data,
                                                  fusion):
    probe, preds = _run_tta(det_cfg, *probe_data, fusion=fusion)
    _check_known_answer(probe, preds)


def test_not_undoing_a_flip_fails(det_cfg, probe_data, monkeypatch):
    monkeypatch.setattr(tta_views, 'unflip_boxes', lambda b, *a: b)
    monkeypatch.setattr(MaskCrop, 'unflip', lambda self, *a: self)
    probe, preds = _run_tta(det_cfg, *probe_data, images=[0, 1])
    with pytest.raises(AssertionError):
        _check_known_answer(probe, preds)


def test_dropping_the_flip_fails(det_cfg, probe_data):
    pipeline = [dict(t) for t in det_cfg.tta_pipeline]
    aug = dict(pipeline[1])
    aug['transforms'] = [aug['transforms'][0], [aug['transforms'][1][0]]] + \
        aug['transforms'][2:]
    assert aug['transforms'][1][0]['prob'] == 0.
    pipeline[1] = aug
    # image 1's extra object is seen only by the flipped 640 view
    assert _views(det_cfg)[1] == (640, True)
    probe, preds = _run_tta(det_cfg, *probe_data, pipeline=pipeline,
                            images=[0, 1])
    with pytest.raises(AssertionError):
        _check_known_answer(probe, preds)


def test_tools_test_tta_end_to_end(det_cfg, probe_data, tmp_path,
                                   monkeypatch):
    """``tools/test.py CONFIG CKPT --tta`` (in this process, to save the
    imports): every view of every image runs at the config's scales, and
    box and mask AP are both 100."""
    root, ann_file = probe_data
    cfg = copy.deepcopy(det_cfg)
    cfg.custom_imports = dict(
        imports=['mmext.models',
                 'tests.models.test_time_augs.det_tta_probe'],
        allow_failed_imports=False)
    cfg.model = dict(type='TTAProbeDetector', ann_file=ann_file,
                     data_preprocessor=cfg.model.data_preprocessor)
    cfg.test_dataloader.dataset.update(
        data_root=root, ann_file=ann_file, data_prefix=dict(img='img/'),
        metainfo=dict(classes=('a', 'b')))
    cfg.test_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.test_evaluator.ann_file = ann_file
    cfg_path = str(tmp_path / 'probe_det.py')
    cfg.dump(cfg_path)
    ckpt = str(tmp_path / 'probe.pth')
    torch.save(dict(state_dict=dict(dummy=torch.zeros(1)), meta=dict()), ckpt)
    log = str(tmp_path / 'calls.jsonl')
    monkeypatch.setenv('TTA_PROBE_LOG', log)
    monkeypatch.setenv('TTA_PROBE_VIEWS', json.dumps(_views(det_cfg)))

    metrics = test_tool.main(
        [cfg_path, ckpt, '--tta', '--work-dir', str(tmp_path / 'work')])

    seen = {}
    with open(log) as f:
        for line in f:
            name, short, flip = json.loads(line)
            seen.setdefault(name, set()).add((short, flip))
    assert len(seen) == len(_views(det_cfg))
    for name, views in seen.items():
        assert views == set(_views(det_cfg)), name
    assert metrics['coco/bbox_mAP'] == 1.0
    assert metrics['coco/segm_mAP'] == 1.0


def test_bad_tta_cfg_is_a_clear_error():
    with pytest.raises(ValueError, match="use one of \\('nms', 'wbf'\\)"):
        InstanceSegTTAModel(torch.nn.Linear(1, 1), tta_cfg=dict(fusion='x'))
    with pytest.raises(ValueError, match='unknown key'):
        InstanceSegTTAModel(torch.nn.Linear(1, 1), tta_cfg=dict(iou=0.5))


# --------------------------------------------------------------------------
# the merge on hand-made views
# --------------------------------------------------------------------------
def _boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_fusions_on_a_known_cluster():
    # two views see one object (scores 0.9 / 0.6), one view a second object
    # of another class at the same place, and a far-away box
    boxes = _boxes([10, 10, 30, 30], [12, 10, 32, 30], [10, 10, 30, 30],
                   [60, 60, 70, 70])
    scores = torch.tensor([0.9, 0.6, 0.5, 0.4])
    labels = torch.tensor([0, 0, 1, 0])
    b, s, l, members = fuse_nms(boxes, scores, labels, 0.5)
    assert torch.equal(b, boxes[[0, 2, 3]])
    assert torch.equal(l, labels[[0, 2, 3]])
    assert [m.tolist() for m in members] == [[0, 1], [2], [3]]
    b, s, l, members = fuse_wbf(boxes, scores, labels, 0.55, num_views=2)
    assert [m.tolist() for m in members] == [[0, 1], [2], [3]]
    # score-weighted mean box; mean score x min(members, views) / views
    assert torch.allclose(b[0], (0.9 * boxes[0] + 0.6 * boxes[1]) / 1.5)
    assert torch.allclose(s, torch.tensor([0.75, 0.25, 0.2]))


def test_masks_are_score_weighted_means_of_the_members():
    # member A (score 3) says 1.0 on columns 0-3, member B (score 1) says
    # 1.0 on columns 2-5 and 0.4 on row 0: mean = 0.75 / 1.0 / 0.25 (+0.1)
    a = MaskCrop(torch.full((4, 4), 255, dtype=torch.uint8), 1, 0)
    probs = torch.full((4, 4), 255, dtype=torch.uint8)
    probs[0] = 102
    b = MaskCrop(probs, 1, 2)
    out = torch.zeros(6, 8, dtype=torch.bool)
    average_mask([a, b], [3., 1.], 0.5, out)
    expected = torch.zeros(6, 8, dtype=torch.bool)
    expected[1:5, 0:4] = True  # >= 0.75 where A is; B alone gives <= 0.25
    assert torch.equal(out, expected)
    out.zero_()
    average_mask([a, b], [1., 3.], 0.5, out)
    expected.zero_()
    expected[1:5, 2:6] = True  # now B dominates, except its 0.4 row...
    expected[1, 4:6] = False  # ...where only B is (0.3 < 0.5)
    assert torch.equal(out, expected)


def test_empty_and_maskless_views():
    empty = tta_views.ViewDetections(torch.zeros(0, 4), torch.zeros(0),
                                   torch.zeros(0, dtype=torch.long), [])
    res = merge_views([empty, empty], (5, 7))
    assert res.bboxes.shape == (0, 4) and res.masks.shape == (0, 5, 7)
    boxes = tta_views.ViewDetections(_boxes([1, 1, 3, 3]), torch.tensor([0.5]),
                                   torch.tensor([2]), None)
    res = merge_views([boxes, boxes], (5, 7), fusion='wbf')
    assert 'masks' not in res and res.labels.tolist() == [2]
