"""``tools/train.py --amp`` on a CPU trains in bfloat16 (through
``mmext.DeviceAmpOptimWrapper``) and saves a float32 checkpoint that the
detector loads."""
import math
import os.path as osp
import re

import torch
from mmengine.config import Config

from tests.pipeline.pipeline_utils import tiny_det_cfg, tool

FP32_WRAPPER = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4))


def test_amp_flag_trains_in_bfloat16_on_cpu(demo_root, tmp_path):
    work = str(tmp_path / 'amp')
    cfg = tiny_det_cfg(
        demo_root, work,
        optim_wrapper=FP32_WRAPPER,  # a config without AMP: --amp adds it
        custom_imports=dict(imports=['mmext.models', 'amp_probe'],
                            allow_failed_imports=False),
        custom_hooks=[dict(type='AmpProbeHook')])
    _, out = tool('train.py', cfg, '--amp', '--work-dir', work,
                  '--cfg-options', 'train_cfg.val_begin=100')
    assert 'training runs as bfloat16 autocast on the CPU' in out

    # the backbone's linear layers ran in bfloat16 in both iterations
    probes = re.findall(r'amp probe: iter (\d+) linear outputs \[(.*?)\]',
                        out)
    assert [int(i) for i, _ in probes] == [0, 1], out[-3000:]
    assert all(dtypes == "'torch.bfloat16'" for _, dtypes in probes)
    losses = [
        float(v) for v in re.findall(r'Epoch\(train\).*?\sloss: (\S+)', out)
    ]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)

    # a float32 checkpoint, no loss scaler, that the detector loads strictly
    ckpt = torch.load(osp.join(work, 'epoch_1.pth'), map_location='cpu')
    state = ckpt['state_dict']
    assert {v.dtype for v in state.values() if v.is_floating_point()} == \
        {torch.float32}
    assert 'loss_scaler' not in ckpt['optimizer']
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    model = MODELS.build(
        Config.fromfile(cfg, import_custom_modules=False).model)
    model.load_state_dict(state, strict=True)
