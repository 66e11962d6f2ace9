"""A detection and a segmentation run each train a few iterations, save,
resume and test through the real command-line tools."""
import json
import os.path as osp

from tests.pipeline.pipeline_utils import tiny_det_cfg, tiny_seg_cfg, tool


def _metrics(out):
    line = [ln for ln in out.splitlines() if 'test results' in ln][-1]
    return json.loads(line.split('): ', 1)[1])


def test_detection_train_resume_test(demo_root, tmp_path):
    work = str(tmp_path / 'det')
    cfg = tiny_det_cfg(demo_root, work)
    _, out = tool('train.py', cfg, '--work-dir', work, '--cfg-options',
                  'train_cfg.val_begin=100')
    assert "optim_wrapper.dtype='float32': training in float32" in out
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))

    # resume from the latest checkpoint and train one more epoch
    _, out = tool('train.py', cfg, '--work-dir', work, '--resume',
                  '--cfg-options', 'train_cfg.max_epochs=2',
                  'train_cfg.val_begin=100')
    assert 'resumed epoch: 1' in out
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))

    _, out = tool('test.py', cfg, osp.join(work, 'epoch_2.pth'), '--work-dir',
                  work, '--show-dir', str(tmp_path / 'vis'), '--out',
                  str(tmp_path / 'det.pkl'))
    metrics = _metrics(out)
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert key in metrics and 0.0 <= metrics[key] <= 1.0
    assert osp.isfile(str(tmp_path / 'det.pkl'))
    assert len(list((tmp_path / 'vis').glob('*.jpg'))) == 4


def test_segmentation_train_resume_test(demo_root, tmp_path):
    work = str(tmp_path / 'seg')
    cfg = tiny_seg_cfg(demo_root, work, iters=2)
    _, out = tool('train.py', cfg, '--work-dir', work, '--cfg-options',
                  'train_cfg.val_begin=100')
    assert 'SyncBN -> BN' in out and 'single process' in out
    assert osp.isfile(osp.join(work, 'iter_2.pth'))

    _, out = tool('train.py', cfg, '--work-dir', work, '--resume',
                  osp.join(work, 'iter_2.pth'), '--cfg-options',
                  'train_cfg.max_iters=4', 'train_cfg.val_begin=100')
    assert 'resumed epoch: 0, iter: 2' in out
    assert osp.isfile(osp.join(work, 'iter_4.pth'))

    _, out = tool('test.py', cfg, osp.join(work, 'iter_4.pth'), '--work-dir',
                  work)
    single = _metrics(out)
    assert 'mIoU' in single and 'per class results' in out
    _, out = tool('test.py', cfg, osp.join(work, 'iter_4.pth'), '--work-dir',
                  work, '--tta')
    multi = _metrics(out)
    assert 'multi-scale + flip' in out and 'mIoU' in multi
    assert 'per class results' in out
