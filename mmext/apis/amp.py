"""What ``--amp`` and a config's ``AmpOptimWrapper`` become on each device.

On a GPU a config's ``AmpOptimWrapper`` stays mmengine's (float16 with
dynamic loss scaling). Without one, it becomes
:class:`mmext.engine.DeviceAmpOptimWrapper`: bfloat16 autocast on the CPU
(mmengine's wrapper refuses to be built there). ``--amp`` selects
``mmext.DeviceAmpOptimWrapper`` for a config without mixed precision, which
is mmengine's wrapper on a GPU and bfloat16 on a CPU. With
``optim_wrapper.dtype='float32'`` (e.g. ``--cfg-options
optim_wrapper.dtype=float32``) an AMP config trains in float32 on any
device.
"""
from mmengine.config import Config
from mmengine.logging import print_log

from mmext.errors import ConfigError

#: the optimizer wrappers that train in mixed precision
AMP_WRAPPERS = ('AmpOptimWrapper', 'mmext.DeviceAmpOptimWrapper')
DEVICE_AMP = 'mmext.DeviceAmpOptimWrapper'


def enable_amp(cfg: Config) -> None:
    """``--amp``: mixed precision (float16 with dynamic loss scaling on a
    GPU, bfloat16 on a CPU)."""
    optim = cfg.optim_wrapper
    kind = optim.get('type', 'OptimWrapper')
    if kind in AMP_WRAPPERS:
        print_log('AMP is already enabled in the config.', logger='current')
        return
    if kind != 'OptimWrapper':
        raise ConfigError(
            f'--amp only applies to OptimWrapper, but the config uses {kind}')
    optim['type'] = DEVICE_AMP
    optim.setdefault('loss_scale', 'dynamic')


def amp_for_cpu(cfg: Config) -> None:
    """Without a GPU: ``AmpOptimWrapper`` -> bfloat16 autocast on the CPU
    (``mmext.DeviceAmpOptimWrapper``); a float16 ``dtype`` becomes
    bfloat16, ``dtype='float32'`` trains without mixed precision. Announced
    in the log."""
    optim = cfg.get('optim_wrapper')
    if optim is None or optim.get('type') not in AMP_WRAPPERS:
        return
    optim['type'] = DEVICE_AMP
    dtype = optim.get('dtype')
    if dtype == 'float32':
        print_log("optim_wrapper.dtype='float32': training in float32",
                  logger='current')
        return
    if dtype not in (None, 'bfloat16'):
        print_log(f"no GPU: optim_wrapper.dtype={dtype!r} becomes "
                  "'bfloat16' (CPU autocast)", logger='current')
        optim['dtype'] = 'bfloat16'
    print_log(
        'no GPU: mixed-precision training runs as bfloat16 autocast on the '
        'CPU (mmext.DeviceAmpOptimWrapper, no loss scaling; weights and '
        "checkpoints stay float32; optim_wrapper.dtype='float32' turns it "
        'off)',
        logger='current')
