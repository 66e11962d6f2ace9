"""tools/infer.py end to end on demo images (tiny demo models with random
weights): its raw results equal the model's ``test_step`` on the same image
(what tools/test.py evaluates), its files, and every bad input's one-line
error."""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from mmext.apis import inference
from mmext.apis.inferencers import config_metainfo
from tests.pipeline.pipeline_utils import fails, tool_env
from tests.tiny_configs import REPO, build_model, save_checkpoint, \
    tiny_config

DEMO = dict(
    det=osp.join(REPO, 'configs/demo/dualvit_tiny_maskrcnn_demo_12e.py'),
    seg=osp.join(REPO, 'configs/demo/dualvit_tiny_upernet_demo_400i.py'))


def _images(root, task):
    if task == 'det':
        folder = osp.join(root, 'coco', 'val')
    else:
        folder = osp.join(root, 'ade', 'images', 'validation')
    return sorted(osp.join(folder, n) for n in os.listdir(folder))


@pytest.fixture(scope='module')
def demo_models(infer_demo_root, tmp_path_factory):
    """Per task: the tiny demo config (a file, reading the demo data), its
    model with random weights, and checkpoints of it without class names
    (``bare``) and as training saves it (``trained``)."""
    folder = tmp_path_factory.mktemp('infer_models')
    made = {}
    for task, path in DEMO.items():
        cfg = tiny_config(path)
        sub = 'coco/' if task == 'det' else 'ade'
        cfg.test_dataloader.dataset.data_root = osp.join(infer_demo_root,
                                                         sub)
        cfg_file = str(folder / f'{task}.py')
        cfg.dump(cfg_file)
        model = build_model(cfg)
        made[task] = dict(
            cfg=cfg, cfg_file=cfg_file, model=model,
            bare=save_checkpoint(model, folder / f'{task}_bare.pth'),
            trained=save_checkpoint(
                model, folder / f'{task}_trained.pth',
                config_metainfo(cfg, cfg.default_scope)))
    return made


def _test_step(cfg, model, image):
    """The model's prediction for ``image`` as tools/test.py makes it: the
    config's test data set and pipeline, one image per batch."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        index = [dataset.get_data_info(i)['img_path']
                 for i in range(len(dataset))].index(image)
        with torch.no_grad():
            return model.test_step(pseudo_collate([dataset[index]]))[0]


@pytest.mark.parametrize('task', ['det', 'seg'])
def test_raw_results_equal_test_step(task, demo_models, infer_demo_root,
                                     tmp_path, capsys):
    made = demo_models[task]
    images = _images(infer_demo_root, task)
    out = tmp_path / 'out'
    inference.main([made['cfg_file'], made['bare'], *images, '--out-dir',
                    str(out), '--score-thr', '0'])
    classes = config_metainfo(made['cfg'], made['cfg'].default_scope)[
        'classes']
    for image in images:
        stem = osp.splitext(osp.basename(image))[0]
        with open(out / 'preds' / f'{stem}.json') as f:
            record = json.load(f)
        h, w = cv2.imread(image).shape[:2]
        assert (record['image'], record['height'], record['width']) == (
            image, h, w)
        assert record['classes'] == list(classes)  # bare: from the config
        assert cv2.imread(str(out / 'vis' / f'{stem}.jpg')).shape == (h, w,
                                                                       3)
        expected = _test_step(made['cfg'], made['model'], image)
        if task == 'det':
            from mmdet.structures.mask import encode_mask_results
            want = expected.pred_instances.numpy()
            assert len(record['labels']) > 0
            np.testing.assert_array_equal(
                np.array(record['bboxes'], np.float32), want.bboxes)
            np.testing.assert_array_equal(
                np.array(record['scores'], np.float32), want.scores)
            assert record['labels'] == want.labels.tolist()
            rle = encode_mask_results(want.masks)
            assert [m['counts'] for m in record['masks']] == \
                [m['counts'].decode() for m in rle]
        else:
            labels = cv2.imread(str(out / 'preds' / f'{stem}.png'),
                                cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(
                labels, expected.pred_sem_seg.data[0].numpy())
            assert record['pixels'] == np.bincount(
                labels.ravel(), minlength=len(classes)).tolist()
    printed = capsys.readouterr().out
    assert f'{len(images)} image(s): drawings in {out / "vis"}' in printed


def test_existing_outputs_are_refused_unless_forced(demo_models,
                                                    infer_demo_root,
                                                    tmp_path, capsys):
    made = demo_models['seg']
    image = _images(infer_demo_root, 'seg')[0]
    out = tmp_path / 'out'
    argv = [made['cfg_file'], made['trained'], image, '--out-dir', out]
    inference.main([str(a) for a in argv])
    drawn = out / 'vis' / (osp.splitext(osp.basename(image))[0] + '.jpg')
    before = drawn.read_bytes()
    line = fails(inference, argv, capsys)
    assert f'--out-dir {out} already holds 3 of the 3 files' in line
    assert '--force' in line
    mine = out / 'vis' / 'notes.txt'
    mine.write_text('kept')
    drawn.write_bytes(b'')
    inference.main([str(a) for a in argv] + ['--force'])
    assert drawn.read_bytes() == before and mine.read_text() == 'kept'
    assert not [p for p in out.rglob('*.part')]


def _bad_images(tmp_path):
    """A text file named .jpg, an empty .png, a folder without images, a
    1x600 image, and two images both called x.png."""
    text = tmp_path / 'notes.jpg'
    text.write_text('not an image\n')
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    (tmp_path / 'no_images').mkdir()
    (tmp_path / 'no_images' / 'readme.txt').write_text('x')
    sliver = tmp_path / 'sliver.png'
    cv2.imwrite(str(sliver), np.full((1, 600, 3), 128, np.uint8))
    for sub in ('a', 'b'):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / 'x.png'),
                    np.zeros((40, 40, 3), np.uint8))
    return text, empty, sliver


def test_bad_inputs_are_one_line_errors(demo_models, tmp_path, capsys):
    made = demo_models['det']
    cfg, ckpt = made['cfg_file'], made['trained']
    text, empty, sliver = _bad_images(tmp_path)
    good = sliver.with_name('good.png')
    cv2.imwrite(str(good), np.zeros((40, 60, 3), np.uint8))
    out = ['--out-dir', tmp_path / 'out']
    cases = [
        ([cfg, ckpt, tmp_path / 'missing.jpg'], "image '", 'not found'),
        ([cfg, ckpt, text], str(text), 'not an image that OpenCV can'),
        ([cfg, ckpt, empty], str(empty), 'is empty (0 bytes)'),
        ([cfg, ckpt, tmp_path / 'no_images'], 'no_images', 'holds no image'),
        ([cfg, ckpt, str(tmp_path / 'none_*.jpg')], 'none_*.jpg',
         'no image matches'),
        ([cfg, ckpt, sliver], 'is 1x600 pixels', 'network stride (32)'),
        ([cfg, ckpt, tmp_path / 'a' / 'x.png', tmp_path / 'b' / 'x.png'],
         'would both be written to', 'x.jpg'),
        ([cfg, ckpt, good, '--out-dir', text], '--out-dir', 'is a file'),
    ]
    if not torch.cuda.is_available():
        cases.append(([cfg, ckpt, good, '--device', 'cuda'], '--device cuda',
                      'no CUDA device'))
    for argv, *expect in cases:
        line = fails(inference, argv + (out if '--out-dir' not in argv
                                        else []), capsys)
        assert all(part in line for part in expect), (argv, line)
    line = fails(inference, [cfg, ckpt, good, '--score-thr', '2'], capsys,
                 code=2)
    assert '--score-thr: 2 is not between 0 and 1' in line
    assert not (tmp_path / 'out').exists()


def test_bad_config_or_checkpoint_is_a_one_line_error(demo_models, tmp_path,
                                                      capsys):
    det, seg = demo_models['det'], demo_models['seg']
    good = tmp_path / 'good.png'
    cv2.imwrite(str(good), np.zeros((40, 60, 3), np.uint8))
    other = tmp_path / 'classifier.py'
    other.write_text("default_scope = 'mmpretrain'\nmodel = dict()\n")
    truncated = tmp_path / 'truncated.pth'
    with open(det['trained'], 'rb') as f:
        truncated.write_bytes(f.read()[:3000])
    out = ['--out-dir', tmp_path / 'out']
    cases = [
        ([tmp_path / 'missing.py', det['trained']], 'config file', 'not '
         'found'),
        ([other, det['trained']], "default_scope 'mmpretrain'",
         'handles mmdet (detection) and mmseg (segmentation)'),
        ([det['cfg_file'], truncated], str(truncated), 'is truncated'),
        # another model's weights: refused once the model is built
        ([seg['cfg_file'], det['trained']], 'does not fit the model',
         '--allow-mismatch'),
    ]
    for argv, *expect in cases:
        line = fails(inference, argv + [good] + out, capsys)
        assert all(part in line for part in expect), (argv, line)
    assert not (tmp_path / 'out').exists()


def test_inferencers_need_nothing_but_custom_imports(demo_models,
                                                     infer_demo_root):
    """A fresh interpreter, the config files and checkpoints of a training
    run: mmdet's and mmseg's own inferencers work. Also tools/infer.py as a
    user runs it, with a bad input: one line, exit status 1."""
    det, seg = demo_models['det'], demo_models['seg']
    argv = [det['cfg_file'], det['trained'], _images(infer_demo_root,
                                                     'det')[0],
            seg['cfg_file'], seg['trained'], _images(infer_demo_root,
                                                     'seg')[0]]
    probe = subprocess.Popen(
        [sys.executable, osp.join(osp.dirname(__file__), 'infer_probe.py'),
         *argv], cwd=REPO, env=tool_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    cli = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'infer.py'),
         det['cfg_file'], det['trained'], 'missing.jpg'], cwd=REPO,
        env=tool_env(), capture_output=True, text=True, timeout=300)
    out, err = probe.communicate(timeout=300)
    assert probe.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result['mmext_imported_before'] is False
    assert result['det_classes'] == list(
        det['cfg'].test_dataloader.dataset.metainfo['classes'])
    assert result['det_detections'] > 0
    assert result['seg_classes'] == list(
        seg['cfg'].test_dataloader.dataset.metainfo['classes'])
    assert result['seg_shape'] == list(
        cv2.imread(argv[5]).shape[:2])
    assert cli.returncode == 1
    lines = [line for line in cli.stderr.splitlines() if 'error:' in line]
    assert lines == ["infer.py: error: image 'missing.jpg' not found."]
    assert 'Traceback' not in cli.stderr
