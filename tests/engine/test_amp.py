"""mmext.DeviceAmpOptimWrapper on a CPU: bfloat16 autocast without a loss
scaler, float32 weights; mmcv's nms / roi_align under CPU autocast."""
import pytest
import torch
import torch.nn as nn
from mmengine.registry import OPTIM_WRAPPERS

import mmext.engine  # noqa: F401  (registers the wrapper)

#: what the wrapper does on a machine without a GPU
cpu_only = pytest.mark.skipif(torch.cuda.is_available(),
                              reason='the CPU behaviour of the wrapper')


def _wrapper(model, **kwargs):
    return OPTIM_WRAPPERS.build(
        dict(type='mmext.DeviceAmpOptimWrapper',
             optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
             **kwargs))


@cpu_only
def test_bfloat16_step_keeps_float32_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    wrapper = _wrapper(model, loss_scale='dynamic')  # GPU configs say so
    assert wrapper.cast_dtype == torch.bfloat16
    assert wrapper.loss_scaler is None
    before = [p.detach().clone() for p in model.parameters()]
    with wrapper.optim_context(model):
        out = model(torch.randn(16, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    for old, new in zip(before, model.parameters()):
        assert new.dtype == torch.float32 and not torch.equal(old, new)
    state = wrapper.state_dict()
    assert 'loss_scaler' not in state
    # a checkpoint from a GPU run (with a loss scaler) resumes here
    wrapper.load_state_dict(dict(state, loss_scaler={'scale': 65536.}))


@cpu_only
def test_dtypes():
    model = nn.Linear(2, 2)
    with _wrapper(model, dtype='float32').optim_context(model):
        assert model(torch.randn(1, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="runs in bfloat16.*'float32'"):
        _wrapper(model, dtype='float16')
    with pytest.raises(ValueError, match='unknown dtype'):
        _wrapper(model, dtype='half_float')


@cpu_only
def test_mmcv_ops_under_cpu_autocast():
    """nms and roi_align have no bfloat16 CPU kernel in mmcv 2.1: with the
    wrapper built they run on float32 copies under CPU autocast and give
    what they give on those values in float32."""
    from mmcv.ops import RoIAlign, nms
    _wrapper(nn.Linear(1, 1))
    gen = torch.Generator().manual_seed(0)
    boxes = torch.rand(20, 4, generator=gen) * 40
    boxes[:, 2:] += boxes[:, :2] + 1
    boxes, scores = boxes.bfloat16(), torch.rand(20, generator=gen).bfloat16()
    feats = torch.randn(1, 4, 16, 16, generator=gen).bfloat16()
    rois = torch.tensor([[0., 1., 1., 9., 12.], [0., 3., 2., 15., 8.]])
    align = RoIAlign((7, 7), 1.0, 0)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        dets, keep = nms(boxes, scores, 0.5)
        pooled = align(feats.requires_grad_(), rois)
    ref_dets, ref_keep = nms(boxes.float(), scores.float(), 0.5)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(dets.float(), ref_dets, rtol=0, atol=0)
    torch.testing.assert_close(pooled, align(feats.float(), rois))
    pooled.sum().backward()
    assert feats.grad.dtype == torch.bfloat16


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_gpu_defers_to_amp_optim_wrapper():
    """On a GPU the wrapper is mmengine's AmpOptimWrapper: float16 autocast
    and a GradScaler."""
    model = nn.Linear(4, 4).cuda()
    wrapper = _wrapper(model, loss_scale='dynamic')
    assert wrapper.loss_scaler is not None
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 4, device='cuda'))
    assert out.dtype == torch.float16
    wrapper.update_params(out.float().sum())
    assert 'loss_scaler' in wrapper.state_dict()
