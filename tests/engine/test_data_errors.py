"""Guarded dataset pipelines (mmext.engine.data_errors) with mmdet's and
mmseg's own transforms: a failing sample names its file (and annotation
id), a label map of another size is stopped before mmseg stretches it, and
an error re-raised by a DataLoader worker becomes its last line again."""
import json
import os.path as osp
import pickle

import cv2
import numpy as np
import pytest

from mmext.engine.data_errors import GuardedPipeline, clean_cause
from mmext.errors import DataLoadError, worker_error_summary


def _compose(transforms, scope):
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        return Compose(transforms)


def test_instance_without_a_mask_names_image_and_annotation(
        small_demo_root, tmp_path):
    import mmdet.datasets  # noqa: F401 (registers the transforms)
    root = osp.join(small_demo_root, 'coco')
    ann_file = tmp_path / 'instances.json'
    coco = json.load(open(osp.join(root, 'annotations',
                                   'instances_train.json')))
    ann = coco['annotations'][0]
    ann['segmentation'] = []
    ann_file.write_text(json.dumps(coco))
    image = next(i for i in coco['images'] if i['id'] == ann['image_id'])
    pipeline = GuardedPipeline(_compose([
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    ], 'mmdet'), str(ann_file))
    x, y, w, h = ann['bbox']
    results = dict(  # what mmdet's CocoDataset makes of that annotation
        img_path=osp.join(root, 'train', image['file_name']),
        img_id=image['id'],
        instances=[dict(bbox=[x, y, x + w, y + h], bbox_label=0,
                        ignore_flag=0)])
    with pytest.raises(DataLoadError) as err:
        pipeline(results)
    assert str(err.value) == (
        'an instance without a mask (an empty "segmentation") in image '
        f'{results["img_path"]} (img_id {image["id"]}), annotation id(s) '
        f'{ann["id"]} of {ann_file}; give it a polygon or remove it '
        '(tools/check_data.py CONFIG lists them all)')
    assert isinstance(err.value.__cause__, KeyError)  # kept for the log
    # a worker process gets it by pickling
    assert pickle.loads(pickle.dumps(pipeline)).ann_file == str(ann_file)


def test_label_map_of_another_size_is_stopped(small_demo_root, tmp_path):
    import mmseg.datasets  # noqa: F401
    ade = osp.join(small_demo_root, 'ade')
    image = osp.join(ade, 'images', 'training', 'demo_training_0000.jpg')
    label = cv2.imread(osp.join(ade, 'annotations', 'training',
                                'demo_training_0000.png'),
                       cv2.IMREAD_UNCHANGED)
    small = str(tmp_path / 'label.png')
    cv2.imwrite(small, label[:100, :80])
    pipeline = GuardedPipeline(_compose([
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs'),
    ], 'mmseg'))
    results = dict(img_path=image, seg_map_path=small, reduce_zero_label=False,
                   seg_fields=[])
    with pytest.raises(DataLoadError, match=(
            f'^label map {small} is 80x100 but its image {image} is '
            f'{label.shape[1]}x{label.shape[0]}; they must be the same size')):
        pipeline(dict(results))
    results['seg_map_path'] = osp.join(ade, 'annotations', 'training',
                                       'demo_training_0000.png')
    assert 'data_samples' in pipeline(dict(results))  # a good pair passes


def test_worker_texts_and_causes_become_one_line():
    text = ('Caught DataLoadError in DataLoader worker process 0.\n'
            'Original Traceback (most recent call last):\n'
            '  File "x.py", line 1, in f\n'
            'mmext.errors.DataLoadError: /d/a.jpg is empty (0 bytes)\n')
    err = DataLoadError(text)  # as the DataLoader re-raises it
    assert str(err) == '/d/a.jpg is empty (0 bytes)' and err.detail == text
    assert worker_error_summary(text.replace('DataLoadError', 'KeyError')) \
        == "mmext.errors.KeyError: /d/a.jpg is empty (0 bytes)"
    assert worker_error_summary('plain message') is None
    try:
        cv2.imdecode(np.zeros(0, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        cause = clean_cause(exc)
    # no second "error:" in the tool's line
    assert cause.startswith('OpenCV Assertion failed:') and 'error' not in \
        cause, cause
