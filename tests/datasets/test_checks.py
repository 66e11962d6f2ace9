"""Data checks (mmext.datasets.checks, tools/check_data.py): each problem a
real data set brings is counted and named, at the level that can see it."""
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from mmext.apis import check_data as check_data_tool
from mmext.datasets.checks import (check_before_run, dataset_specs,
                                   full_check, quick_check)
from mmext.datasets.demo import make_demo_data
from mmext.errors import DataCheckError
from tests.pipeline.pipeline_utils import tiny_det_cfg, tiny_seg_cfg


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    """The demo sets, and the tiny configs reading a copy of them (made
    once: loading the demo configs takes seconds)."""
    folder = tmp_path_factory.mktemp('checks')
    clean = make_demo_data(str(folder / 'clean'), splits=dict(train=6,
                                                              val=3))
    root = str(folder / 'demo')
    return dict(clean=clean, root=root, det=tiny_det_cfg(root, str(folder)),
                seg=tiny_seg_cfg(root, str(folder)))


@pytest.fixture
def data(configs):
    """A fresh copy of the demo sets to break, read by the configs."""
    shutil.rmtree(configs['root'], ignore_errors=True)
    shutil.copytree(configs['clean'], configs['root'])
    return configs


def _spec(cfg_path, split='train'):
    specs = dataset_specs(Config.fromfile(cfg_path), [split])
    assert len(specs) == 1
    return specs[0]


def _coco(root, split='train'):
    path = osp.join(root, 'coco', 'annotations', f'instances_{split}.json')
    with open(path) as f:
        return path, json.load(f)


def test_clean_demo_sets_pass_both_levels(data):
    for cfg in (data['det'], data['seg']):
        for split in ('train', 'val'):
            spec = _spec(cfg, split)
            assert full_check(spec).counts == {}, (cfg, split)


def test_coco_annotation_problems_are_counted_and_named(data):
    path, coco = _coco(data['root'])
    images = {i['id']: i for i in coco['images']}
    anns = coco['annotations']
    w = images[anns[0]['image_id']]['width']
    for ann in anns[:5]:  # one problem each, of a class in the config
        ann['category_id'] = 1
    anns[0]['bbox'] = [w + 5, 10, 20, 20]  # entirely outside
    anns[1]['bbox'] = [3, 4, 0.5, 30]  # degenerate
    anns[2]['bbox'][0] = -4.0  # past the left border
    anns[3]['segmentation'] = []  # crashes mask loading
    anns[4]['segmentation'] = [[1, 2, 3, 4]]  # 2 points
    anns[5]['category_id'] = 99
    coco['categories'] = [c for c in coco['categories']
                          if c['name'] != 'star']
    missing = coco['images'][1]['file_name']
    with open(path, 'w') as f:
        json.dump(coco, f)
    os.remove(osp.join(data['root'], 'coco', 'train', missing))

    found = quick_check(_spec(data['det']))
    counts = dict(found.counts)
    no_star = sum(1 for a in anns[6:] if a['category_id'] == 4)
    assert counts.pop('missing_class') == 1
    assert counts.pop('missing_image') == 1
    assert counts.pop('box_outside') == 1
    assert counts.pop('degenerate_box') == 1
    assert counts.pop('box_clipped') == 1
    assert counts.pop('empty_segmentation') == 1
    assert counts.pop('invalid_polygon') == 1
    assert counts.pop('unknown_category') == 1 + no_star
    counts.pop('no_annotations', None)  # images left without a box
    assert counts == {}
    assert f'annotation {anns[0]["id"]} of ' in found.line('box_outside')
    assert found.line('missing_class').startswith(
        "1 of 4 of the config's classes are not among")
    assert missing in found.line('missing_image')
    assert found.line('empty_segmentation').startswith(
        f'1 of {len(anns)} instances have an empty segmentation '
        f'(training with masks stops at them) (annotation {anns[3]["id"]}')

    # before a run: errors stop it in one line, the rest is logged
    logged = []
    with pytest.raises(DataCheckError) as err:
        check_before_run(Config.fromfile(data['det']), ['train'],
                         log=logged.append)
    msg = str(err.value)
    assert '\n' not in msg and msg.startswith(
        f'train_dataloader.dataset ({path}): 1 of 4 of the config')
    assert 'images named in the annotations do not exist' in msg
    assert 'tools/check_data.py CONFIG' in msg
    assert any('boxes lie entirely outside their image (dropped)' in line
               for line in logged)


def test_seg_folder_problems_quick_and_full(data):
    ade = osp.join(data['root'], 'ade')
    imgs = osp.join(ade, 'images', 'training')
    maps = osp.join(ade, 'annotations', 'training')
    names = sorted(n[:-4] for n in os.listdir(imgs))
    os.remove(osp.join(maps, names[0] + '.png'))
    seg = cv2.imread(osp.join(maps, names[1] + '.png'), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(osp.join(maps, names[1] + '.png'), seg[:-3])  # other size
    seg = cv2.imread(osp.join(maps, names[2] + '.png'), cv2.IMREAD_UNCHANGED)
    seg[0, 0] = 7  # the demo has 6 classes: raw 1..6, 0 ignored
    cv2.imwrite(osp.join(maps, names[2] + '.png'), seg)
    cv2.imwrite(osp.join(maps, names[3] + '.png'),
                np.zeros((4, 4, 3), np.uint8))  # colour, not indices
    open(osp.join(imgs, names[4] + '.jpg'), 'wb').close()  # 0 bytes
    cv2.imwrite(osp.join(imgs, names[5] + '.jpg'),
                np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(osp.join(maps, names[5] + '.png'), np.ones((1, 1), np.uint8))

    spec = _spec(data['seg'])
    quick = quick_check(spec)
    assert quick.counts == {'missing_label_map': 1}
    assert names[0] in quick.line('missing_label_map')
    full = full_check(spec, workers=2)
    assert full.counts == {'missing_label_map': 1, 'label_size': 1,
                           'label_values': 1, 'label_channels': 1,
                           'empty_file': 1, 'too_small': 1}
    assert f'{names[2]}.png: 7' in full.line('label_values')
    assert full.line('label_size').startswith(
        '1 of 6 label maps differ in size from their image')


def test_full_check_decodes_coco_images(data):
    folder = osp.join(data['root'], 'coco', 'train')
    path, coco = _coco(data['root'])
    files = [i['file_name'] for i in coco['images']]
    with open(osp.join(folder, files[0]), 'r+b') as f:
        head = f.read()
        f.seek(0)
        f.truncate()
        f.write(head[:len(head) * 9 // 10])  # an interrupted copy
    with open(osp.join(folder, files[1]), 'w') as f:
        f.write('<html>not found</html>')
    coco['images'][2]['width'] += 10
    with open(path, 'w') as f:
        json.dump(coco, f)
    found = full_check(_spec(data['det']))
    assert found.counts == {'unreadable_image': 2, 'size_mismatch': 1}
    line = found.line('unreadable_image')
    assert f'{files[0]}: a JPEG cut short' in line
    assert f"{files[1]}: a text file starting with '<html>" in line
    assert quick_check(_spec(data['det'])).counts == {}  # decodes nothing


def test_check_data_tool_reports_and_exits_1_on_errors(data, tmp_path,
                                                       capsys):
    ade = osp.join(data['root'], 'ade', 'annotations', 'validation')
    first = sorted(os.listdir(ade))[0]
    seg = cv2.imread(osp.join(ade, first), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(osp.join(ade, first), cv2.resize(seg, (40, 30)))
    out = tmp_path / 'report.json'
    code = check_data_tool.main([data['seg'], '--splits', 'val', '--out',
                                 str(out), '--workers', '1'])
    text = capsys.readouterr().out
    assert code == 1
    assert 'ERROR   1 of 3 label maps differ in size from their image' \
        in text and first in text
    report = json.loads(out.read_text())
    assert report['datasets'][0]['problems']['label_size']['count'] == 1
    assert check_data_tool.main([data['seg'], '--splits', 'val',
                                 '--quick']) == 0
