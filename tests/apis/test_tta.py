"""``--tta`` on every detection config: each defines the instance-mask TTA
(``configs/detection/_base_/instance_tta.py``) and :func:`apply_tta` turns
it on. A config that loses its ``tta_model`` or ``tta_pipeline`` fails here
(the known-answer tests of the TTA model itself are in
``tests/models/test_time_augs/``)."""
import copy
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope

from mmext.apis.tta import apply_tta
from mmext.errors import ConfigError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: every detection config (mmdet scope), the demo one included
DET_CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                         recursive=True)
    if '/_base_/' not in p and ('/detection/' in p or 'maskrcnn' in p))


def _views(cfg):
    """The (short side, flip) combinations of a config's tta_pipeline."""
    resizes, flips = cfg.tta_pipeline[1].transforms[:2]
    return [(min(t.scale), f.prob == 1.) for t in resizes for f in flips]


def test_every_detection_config_is_listed():
    names = {osp.basename(p) for p in DET_CONFIGS}
    assert len(names) >= 15
    assert {'shuffle_swin_xtiny_maskrcnn_1x.py',
            'shuffle_deit_tiny_maskrcnn_1x.py',
            'dualvit_tiny_maskrcnn_demo_12e.py'} <= names


@pytest.mark.parametrize('path', DET_CONFIGS,
                         ids=lambda p: osp.relpath(p, REPO))
def test_detection_config_supports_tta(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmdet'
    assert 'tta_model' in cfg and 'tta_pipeline' in cfg, \
        f'{osp.relpath(path, REPO)}: no tta_model / tta_pipeline; inherit ' \
        'configs/detection/_base_/instance_tta.py'
    assert cfg.tta_model.type == 'mmext.InstanceSegTTAModel'
    views = _views(cfg)
    assert len(views) == 10 and len({f for _, f in views}) == 2
    if '/demo/' not in path:
        assert sorted({s for s, _ in views}) == [640, 720, 800, 880, 960]
    pack = cfg.tta_pipeline[1].transforms[-1][0]
    assert {'flip', 'flip_direction', 'ori_shape'} <= set(pack.meta_keys)
    init_default_scope('mmdet')
    Compose(copy.deepcopy(cfg.tta_pipeline))
    # what tools/test.py --tta does to it
    model = copy.deepcopy(cfg.model)
    apply_tta(cfg, path, 'mmdet')
    assert cfg.model.type == 'mmext.InstanceSegTTAModel'
    assert cfg.model.module == model
    assert cfg.test_dataloader.dataset.pipeline == cfg.tta_pipeline


def test_apply_tta_refuses_a_tta_model_that_drops_masks():
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/detection/dualvit_s_maskrcnn_1x.py'))
    cfg.tta_model = dict(type='DetTTAModel', tta_cfg=dict())
    with pytest.raises(ConfigError, match='drops instance masks'):
        apply_tta(cfg, 'x.py', 'mmdet')
    cfg = Config(
        {k: v for k, v in cfg.to_dict().items() if k != 'tta_model'})
    with pytest.raises(ConfigError, match='instance_tta.py'):
        apply_tta(cfg, 'x.py', 'mmdet')
