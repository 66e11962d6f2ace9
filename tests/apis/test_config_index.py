"""``--cfg-options`` with a list index one past the end (the index equal to
the list's length) must be a clear ConfigError naming the valid range, not
a raw IndexError from inside mmengine."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmext.apis.config_check import ConfigError, check_cfg_options

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_S = osp.join(REPO, 'configs/segmentation/dualvit_s_upernet_ade20k_160k.py')


def _cfg():
    return Config(dict(
        model=dict(layers=[1, 2, 3], pool_scales=(1, 2, 3, 6)),
        train_pipeline=[dict(scale=1), dict(scale=2)]))


@pytest.mark.parametrize('key, length', [
    ('model.layers.3', 3),
    ('model.pool_scales.4', 4),
    ('train_pipeline.2.scale', 2),
    ('train_pipeline.2', 2),
])
def test_index_equal_to_length_is_a_config_error(key, length):
    cfg = _cfg()
    with pytest.raises(ConfigError) as err:
        check_cfg_options(cfg, {key: 5})
    msg = str(err.value)
    assert key in msg and f'0..{length - 1}' in msg


def test_last_valid_index_is_accepted():
    cfg = _cfg()
    check_cfg_options(cfg, {'model.layers.2': 5})
    check_cfg_options(cfg, {'train_pipeline.1.scale': 5})
    cfg.merge_from_dict({'train_pipeline.1.scale': 5})
    assert cfg.train_pipeline[1].scale == 5


def test_tool_reports_index_equal_to_length(tmp_path):
    """End to end through tools/train.py's config setup."""
    from mmext.apis import train
    n = len(Config.fromfile(SEG_S).train_dataloader.dataset.pipeline)
    option = f'train_dataloader.dataset.pipeline.{n}.scale=1'
    with pytest.raises(ConfigError, match=f'0..{n - 1}'):
        train.setup_cfg(train.parse_args(
            [SEG_S, '--work-dir', str(tmp_path), '--cfg-options', option]))
