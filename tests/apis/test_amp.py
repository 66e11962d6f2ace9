"""What ``--amp`` and a config's AMP setting become without a GPU."""
import pytest
from mmengine.config import Config

from mmext.apis.amp import amp_for_cpu, enable_amp
from mmext.errors import ConfigError


def _cfg(**optim):
    return Config(dict(optim_wrapper=dict(optimizer=dict(type='SGD'),
                                          **optim)))


@pytest.mark.parametrize('kind', ['AmpOptimWrapper',
                                  'mmext.DeviceAmpOptimWrapper'])
def test_amp_configs_run_bfloat16_on_cpu(kind):
    cfg = _cfg(type=kind, loss_scale='dynamic')
    amp_for_cpu(cfg)
    assert cfg.optim_wrapper.type == 'mmext.DeviceAmpOptimWrapper'
    assert cfg.optim_wrapper.get('dtype') is None  # bfloat16 on a CPU

    cfg = _cfg(type=kind, dtype='float16')
    amp_for_cpu(cfg)
    assert cfg.optim_wrapper.dtype == 'bfloat16'

    cfg = _cfg(type=kind, dtype='float32')  # AMP switched off
    amp_for_cpu(cfg)
    assert cfg.optim_wrapper.dtype == 'float32'


def test_plain_configs_stay_float32():
    cfg = _cfg(type='OptimWrapper')
    amp_for_cpu(cfg)
    assert cfg.optim_wrapper.type == 'OptimWrapper'


def test_amp_flag():
    cfg = _cfg(type='OptimWrapper')
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'mmext.DeviceAmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    cfg = _cfg(type='AmpOptimWrapper')
    enable_amp(cfg)  # already on: unchanged
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    with pytest.raises(ConfigError, match='--amp only applies to'):
        enable_amp(_cfg(type='ApexOptimWrapper'))
