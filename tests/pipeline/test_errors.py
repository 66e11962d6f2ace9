"""Bad input stops early with an error that names the problem and the fix."""
import importlib
import os.path as osp

import pytest

from tests.pipeline.pipeline_utils import REPO, tiny_seg_cfg, tool
from mmext.utils.config_check import ConfigError

DET_1X = osp.join(REPO, 'configs/detection/dualvit_s_maskrcnn_1x.py')
SEG_S = osp.join(REPO, 'configs/segmentation/dualvit_s_upernet_ade20k_160k.py')


train = importlib.import_module('tools.train')
test_tool = importlib.import_module('tools.test')


def _setup(argv):
    return train.setup_cfg(train.parse_args(argv))


def test_missing_pretrained_says_how_to_convert(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        _setup([DET_1X, '--work-dir', str(tmp_path)])
    msg = str(err.value)
    assert 'checkpoints/dualvit_s_in1k.pth' in msg
    assert 'python tools/convert_imagenet.py dualvit' in msg
    assert 'model.backbone.init_cfg=None' in msg


def test_missing_coco_says_where_data_goes(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        _setup([
            DET_1X, '--work-dir',
            str(tmp_path), '--cfg-options', 'model.backbone.init_cfg=None',
            f'train_dataloader.dataset.data_root={tmp_path}/nowhere/coco/'
        ])
    msg = str(err.value)
    assert 'nowhere/coco' in msg and 'data_root' in msg
    assert 'data/coco/' in msg and 'instances_' in msg


def test_missing_ade_says_where_data_goes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ here
    with pytest.raises(FileNotFoundError) as err:
        _setup([SEG_S, '--cfg-options', 'model.backbone.init_cfg=None'])
    msg = str(err.value)
    assert 'data/ade/ADEChallengeData2016' in msg
    assert 'ADEChallengeData2016.zip' in msg


def test_missing_demo_data_says_how_to_generate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        _setup([osp.join(REPO, 'configs/demo',
                         'dualvit_tiny_upernet_demo_400i.py')])
    assert 'python -m mmext.datasets.demo' in str(err.value)


@pytest.mark.parametrize('option, expect', [
    ('model.backbone.archh=s', "takes no argument 'archh'"),
    ('model.bakbone.arch=s', "takes no argument 'bakbone'"),
    ('optim_wraper.optimizer.lr=0.1', "no top-level key 'optim_wraper'"),
    ('model.decode_head.pool_scales.7=1', 'is not an index'),
    ('train_cfg.max_itres=5', "takes no argument 'max_itres'"),
    ('trian_dataloader=1', "no top-level key 'trian_dataloader'"),
    ('train_dataloader.dataset.pipeline.9.scale=1', 'is not an index'),
])
def test_unknown_config_key(option, expect, tmp_path):
    with pytest.raises(ConfigError) as err:
        _setup([SEG_S, '--work-dir', str(tmp_path), '--cfg-options', option])
    assert expect in str(err.value)


def test_close_match_is_suggested(tmp_path):
    with pytest.raises(ConfigError) as err:
        _setup([SEG_S, '--cfg-options', 'model.decode_head.chanels=256'])
    assert "Did you mean 'channels'" in str(err.value)


def test_known_keys_are_accepted(tmp_path, demo_root):
    cfg = tiny_seg_cfg(demo_root, str(tmp_path))
    cfg = _setup([
        cfg, '--work-dir',
        str(tmp_path), '--cfg-options', 'model.backbone.drop_path_rate=0.1',
        'randomness.seed=1', 'train_cfg.val_begin=3',
        'model.test_cfg.mode=whole', 'optim_wrapper.clip_grad.max_norm=1'
    ])
    assert cfg.model.backbone.drop_path_rate == 0.1
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # AMP off on CPU


def test_cli_prints_a_clean_error(tmp_path):
    code, out = tool('train.py', SEG_S, '--work-dir', str(tmp_path),
                     '--cfg-options', 'model.backbone.archh=s', check=False)
    assert code != 0
    assert "takes no argument 'archh'" in out
    assert 'Traceback' not in out


def test_test_tool_checks_checkpoint_and_tta(tmp_path, demo_root):
    with pytest.raises(FileNotFoundError, match='checkpoint to test'):
        test_tool.setup_cfg(test_tool.parse_args([SEG_S, 'missing.pth']))
    ckpt = tmp_path / 'x.pth'
    ckpt.write_bytes(b'')
    # an upstream Mask R-CNN config has no TTA; the error names our base
    no_tta = tmp_path / 'mask_rcnn_no_tta.py'
    no_tta.write_text(
        "_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'")
    with pytest.raises(ConfigError,
                       match='no tta_model.*_base_/instance_tta.py'):
        test_tool.setup_cfg(
            test_tool.parse_args([
                str(no_tta),
                str(ckpt), '--tta', '--work-dir',
                str(tmp_path)
            ]))


def test_amp_and_auto_scale_lr_flags(tmp_path, demo_root):
    cfg = tiny_seg_cfg(demo_root, str(tmp_path))
    out = _setup([cfg, '--amp', '--auto-scale-lr', '--work-dir',
                  str(tmp_path)])
    assert out.auto_scale_lr == dict(enable=True, base_batch_size=16)
    # no GPU here: AMP falls back to fp32 without AMP-only arguments
    assert out.optim_wrapper.type == 'OptimWrapper'
    assert 'loss_scale' not in out.optim_wrapper
    assert out.env_cfg.dist_cfg.backend == 'gloo'
