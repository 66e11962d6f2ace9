"""Tests of mmext.ops.elsa_filter (small shapes, CPU unless noted)."""
import itertools

import pytest
import torch

from mmext.ops import carafe_available, elsa_filter, elsa_filter_unfold

CUDA_OK, CUDA_REASON = carafe_available()


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run thousands of tiny ops; with several OpenMP threads on
    a busy machine each op can wait milliseconds at a barrier."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def direct_reference(v, attn, ghost_add, ghost_mul, kernel_size, dilation):
    """Literal definition: loop over output pixels and taps."""
    B, C, H, W = v.shape
    kk = kernel_size * kernel_size
    heads = attn.shape[1] // kk
    cg = C // heads
    r = kernel_size // 2
    out = torch.zeros_like(v)
    head_of = torch.arange(C) // cg
    for y, x in itertools.product(range(H), range(W)):
        acc = torch.zeros(B, C, dtype=v.dtype)
        for i, j in itertools.product(range(kernel_size), range(kernel_size)):
            yy, xx = y + (i - r) * dilation, x + (j - r) * dilation
            if not (0 <= yy < H and 0 <= xx < W):
                continue
            k = i * kernel_size + j
            a = attn[:, head_of * kk + k, y, x]  # (B, C)
            if ghost_mul is not None:
                a = a * ghost_mul[:, i, j]
            if ghost_add is not None:
                a = a + ghost_add[:, i, j]
            acc += v[:, :, yy, xx] * a
        out[:, :, y, x] = acc
    return out


def make_inputs(B=2, heads=2, cg=3, H=5, W=6, K=3, dtype=torch.float64,
                mul=False, add=True, seed=0, softmax=True):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(B, heads * cg, H, W, generator=g, dtype=dtype)
    attn = torch.randn(B, heads, K * K, H, W, generator=g, dtype=dtype)
    if softmax:
        attn = attn.softmax(2)
    attn = attn.reshape(B, heads * K * K, H, W)
    ga = torch.randn(heads * cg, K, K, generator=g, dtype=dtype) \
        if add else None
    gm = torch.randn(heads * cg, K, K, generator=g, dtype=dtype) \
        if mul else None
    return v, attn, ga, gm


CASES = [
    # B, heads, cg, H, W, K, dilation, mul, add
    (2, 2, 3, 5, 6, 3, 1, False, True),
    (1, 3, 2, 7, 9, 7, 1, False, True),  # released setting: K=7, lambda=0
    (1, 1, 2, 4, 5, 7, 1, False, True),  # image smaller than the kernel
    (2, 2, 2, 6, 5, 3, 2, False, True),  # dilation
    (1, 2, 2, 5, 7, 5, 1, True, True),  # general lambda != 0 form
    (1, 2, 2, 5, 4, 3, 1, True, False),
    (2, 2, 3, 3, 6, 3, 1, False, False),  # attention term only
]


@pytest.mark.parametrize('B,heads,cg,H,W,K,dil,mul,add', CASES)
def test_pytorch_path_matches_direct_loop(B, heads, cg, H, W, K, dil, mul,
                                          add):
    v, attn, ga, gm = make_inputs(B, heads, cg, H, W, K, mul=mul, add=add)
    ref = direct_reference(v, attn, ga, gm, K, dil)
    out = elsa_filter(v, attn, ga, gm, kernel_size=K, dilation=dil,
                      impl='pytorch')
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    unf = elsa_filter_unfold(v, attn, ga, gm, kernel_size=K, dilation=dil)
    torch.testing.assert_close(unf, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('band', [1, 40])
def test_row_bands(monkeypatch, band):
    """Output rows processed in bands (1 row / a few rows at a time)."""
    import mmext.ops.elsa as elsa_mod
    monkeypatch.setattr(elsa_mod, '_BAND_ELEMENTS', band)
    v, attn, ga, gm = make_inputs(2, 2, 2, 7, 5, 3, mul=True)
    ins = [t.clone().requires_grad_() for t in (v, attn, ga, gm)]
    out = elsa_filter(*ins, kernel_size=3, dilation=2, impl='pytorch')
    ref = direct_reference(v, attn, ga, gm, 3, 2)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    out.pow(2).sum().backward()
    ref_ins = [t.clone().requires_grad_() for t in (v, attn, ga, gm)]
    elsa_filter_unfold(*ref_ins, kernel_size=3, dilation=2).pow(2).sum() \
        .backward()
    for a, b in zip(ins, ref_ins):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-10)


def test_auto_on_cpu_is_pytorch_and_float32():
    v, attn, ga, _ = make_inputs(1, 3, 4, 9, 11, 7, dtype=torch.float32)
    out = elsa_filter(v, attn, ga)  # impl='auto'
    ref = direct_reference(v.double(), attn.double(), ga.double(), None, 7,
                           1)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('mul,add,dil', [(False, True, 1), (True, True, 1),
                                         (True, False, 2),
                                         (False, False, 1)])
def test_gradcheck_double(mul, add, dil):
    v, attn, ga, gm = make_inputs(1, 2, 2, 3, 4, 3, mul=mul, add=add,
                                  softmax=False)
    inputs = [t.requires_grad_() for t in (v, attn, ga, gm) if t is not None]

    def fn(*args):
        it = iter(args)
        vv, aa = next(it), next(it)
        gaa = next(it) if add else None
        gmm = next(it) if mul else None
        return elsa_filter(vv, aa, gaa, gmm, kernel_size=3, dilation=dil,
                           impl='pytorch')

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_grads_match_unfold_at_k7():
    v, attn, ga, gm = make_inputs(2, 2, 3, 6, 8, 7, mul=True)
    grads = []
    for f in (lambda *a: elsa_filter(*a, kernel_size=7, impl='pytorch'),
              lambda *a: elsa_filter_unfold(*a, kernel_size=7)):
        ins = [t.clone().requires_grad_() for t in (v, attn, ga, gm)]
        w = torch.randn(2, 6, 6, 8, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
        (f(*ins) * w).sum().backward()
        grads.append([t.grad for t in ins])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_partial_requires_grad():
    v, attn, ga, _ = make_inputs(1, 2, 2, 4, 4, 3)
    attn.requires_grad_()
    out = elsa_filter(v, attn, ga, kernel_size=3, impl='pytorch')
    out.sum().backward()
    assert attn.grad is not None and v.grad is None


def test_forced_carafe_without_cuda_errors():
    if CUDA_OK:
        pytest.skip('CUDA is available; the error path is for CPU-only '
                    'machines')
    v, attn, ga, _ = make_inputs(1, 3, 2, 5, 5, 7, dtype=torch.float32)
    with pytest.raises(RuntimeError, match=r"impl='carafe'.*impl='pytorch'"):
        elsa_filter(v, attn, ga, impl='carafe')


@pytest.mark.parametrize('kwargs,exc,pattern', [
    (dict(impl='cuda'), ValueError, 'impl must be one of'),
    (dict(kernel_size=4), ValueError, 'positive odd'),
    (dict(kernel_size=5), ValueError, 'not a multiple of kernel_size'),
    (dict(dilation=0), ValueError, 'dilation'),
])
def test_bad_arguments(kwargs, exc, pattern):
    v, attn, ga, _ = make_inputs(1, 2, 2, 4, 4, 3)
    kwargs.setdefault('kernel_size', 3)
    ga = ga if kwargs['kernel_size'] == 3 else None
    with pytest.raises(exc, match=pattern):
        elsa_filter(v, attn, ga, **kwargs)


def test_bad_shapes():
    v, attn, ga, _ = make_inputs(1, 2, 3, 4, 4, 3)
    with pytest.raises(ValueError, match='share batch and spatial size'):
        elsa_filter(v, attn[..., :3], ga, kernel_size=3)
    with pytest.raises(ValueError, match='cannot be split into'):
        elsa_filter(v[:, :5], attn, None, kernel_size=3)
    with pytest.raises(ValueError, match=r'ghost_add must have shape'):
        elsa_filter(v, attn, ga[:, :2], kernel_size=3)
    with pytest.raises(ValueError, match='4-D'):
        elsa_filter(v[0], attn, ga, kernel_size=3)
    with pytest.raises(TypeError, match='floating point'):
        elsa_filter(v.long(), attn, ga, kernel_size=3)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA_OK, reason=f'CARAFE path unavailable: '
                    f'{CUDA_REASON}')
@pytest.mark.parametrize('shape', [(2, 3, 32, 17, 23), (1, 4, 16, 9, 8)])
def test_carafe_matches_pytorch_on_cuda(shape):
    B, heads, cg, H, W = shape
    v, attn, ga, _ = make_inputs(B, heads, cg, H, W, 7, dtype=torch.float32)
    v, attn, ga = (t.cuda().requires_grad_() for t in (v, attn, ga))
    outs, grads = [], []
    for impl in ('carafe', 'pytorch'):
        for t in (v, attn, ga):
            t.grad = None
        out = elsa_filter(v, attn, ga, impl=impl)
        (out * torch.linspace(-1, 1, out.numel(), device='cuda').view_as(
            out)).sum().backward()
        outs.append(out.detach())
        grads.append([t.grad.clone() for t in (v, attn, ga)])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # auto picks CARAFE here
    torch.testing.assert_close(
        elsa_filter(v, attn, ga).detach(), outs[0], rtol=0, atol=0)
