"""The ELSA filter on float16 / bfloat16 inputs sums its K * K taps in
float32 (both paths) and rounds once, to the dtype of ``v``."""
import pytest
import torch

from mmext.ops import carafe_available, elsa_filter, elsa_filter_unfold
from tests.ops.test_elsa_op import make_inputs

LOW = {'bf16': torch.bfloat16, 'fp16': torch.float16}
#: float32 sums, one rounding: within an ulp of the exact result
#: (2**-7 / 2**-10 relative for bfloat16 / float16) plus float32 noise
ULP = {torch.bfloat16: 2.**-7, torch.float16: 2.**-10}


def _low_inputs(dtype):
    """7x7 taps, the ghost matrices a float32 parameter as in ELSA-Swin."""
    v, attn, ga, _ = make_inputs(B=1, heads=2, cg=4, H=9, W=10, K=7,
                                 dtype=torch.float32)
    return v.to(dtype), attn.to(dtype), ga


@pytest.mark.parametrize('name', LOW)
def test_low_precision_output_is_rounded_once(name):
    dtype = LOW[name]
    v, attn, ga = _low_inputs(dtype)
    out = elsa_filter(v, attn, ga, impl='pytorch')
    assert out.dtype == dtype
    # the exact filter of the same (already rounded) inputs
    ref = elsa_filter_unfold(v.double(), attn.double(), ga.double(),
                             kernel_size=7)
    bound = ULP[dtype] * ref.abs() + 1e-6
    excess = ((out.double() - ref).abs() - bound).max().item()
    assert excess <= 0, f'error above one ulp by {excess:.3g}'


@pytest.mark.parametrize('name', LOW)
def test_low_precision_gradients(name):
    dtype = LOW[name]
    v, attn, ga = (t.requires_grad_() for t in _low_inputs(dtype))
    out = elsa_filter(v, attn, ga, impl='pytorch')
    weight = torch.linspace(-1, 1, out.numel()).view_as(out)
    (out.float() * weight).sum().backward()
    assert (v.grad.dtype, attn.grad.dtype, ga.grad.dtype) == \
        (dtype, dtype, torch.float32)
    ref_in = [t.detach().double().requires_grad_() for t in (v, attn, ga)]
    ref = elsa_filter_unfold(*ref_in, kernel_size=7)
    (ref * weight.double()).sum().backward()
    for got, exact in zip((v.grad, attn.grad, ga.grad), ref_in):
        err = (got.double() - exact.grad).abs().max() / exact.grad.abs().max()
        assert err <= ULP[dtype], f'gradient error {err:.3g}'


def test_under_autocast_in_the_dtype_of_v():
    """ELSA-Swin passes float32 attention (its softmax) and half-precision
    values; the filter neither fails on the mix nor casts inside autocast
    (its depthwise ghost term would otherwise run in float16)."""
    v, attn, ga = _low_inputs(torch.float16)
    with torch.autocast('cpu', dtype=torch.float16):
        out = elsa_filter(v, attn.float(), ga)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, elsa_filter(v, attn.float(), ga),
                               rtol=0, atol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not carafe_available()[0],
                    reason=f'CARAFE path unavailable: {carafe_available()[1]}')
@pytest.mark.parametrize('name', ['fp16'])
def test_carafe_path_sums_in_float32(name):
    """mmcv's half CARAFE kernel would sum the taps in half: the CARAFE path
    gets float32 copies, as the PyTorch path does."""
    dtype = LOW[name]
    v, attn, ga = (t.cuda() for t in _low_inputs(dtype))
    out = elsa_filter(v, attn, ga, impl='carafe')
    assert out.dtype == dtype
    ref = elsa_filter_unfold(v.double(), attn.double(), ga.double(),
                             kernel_size=7)
    bound = ULP[dtype] * ref.abs() + 1e-6
    assert ((out.double() - ref).abs() - bound).max().item() <= 0
    torch.testing.assert_close(out, elsa_filter(v, attn, ga, impl='pytorch'),
                               rtol=2 * ULP[dtype], atol=1e-5)
