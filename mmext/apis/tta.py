"""``--tta`` for the test entry point: test a config with its
``tta_model`` / ``tta_pipeline``."""
import copy

from mmengine.config import Config, ConfigDict

from mmext.errors import ConfigError

_DET_HINT = (' For the detection configs inherit '
             "'configs/detection/_base_/instance_tta.py' (multi-scale + "
             'flip with masks), or set both keys yourself.')


def apply_tta(cfg: Config, config_name: str, task: str) -> None:
    """Make ``cfg`` test with its ``tta_model`` / ``tta_pipeline``; a
    config without them, or one whose TTA model would drop masks, is a
    :class:`ConfigError` that says what to add."""
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise ConfigError(
            f'--tta: {config_name} defines no tta_model / tta_pipeline.' +
            (_DET_HINT if task == 'mmdet' else ''))
    if task == 'mmdet' and cfg.tta_model.get('type') == 'DetTTAModel' and \
            cfg.model.get('roi_head', {}).get('mask_head') is not None:
        raise ConfigError(
            f"--tta: {config_name} uses mmdet's DetTTAModel, which drops "
            "instance masks; use type='mmext.InstanceSegTTAModel'.")
    # a copy: TestTimeAug builds its transforms into the lists it is given
    cfg.test_dataloader.dataset.pipeline = copy.deepcopy(cfg.tta_pipeline)
    tta_model = ConfigDict(cfg.tta_model)
    tta_model['module'] = cfg.model
    cfg.model = tta_model
