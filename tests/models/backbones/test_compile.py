"""``torch.compile`` of every backbone family (tiny archs, CPU).

Graph capture (dynamo with the 'eager' backend: no code generation, so
cheap): a training step of every family is one graph without graph
breaks, and stays one graph over inputs of other sizes (non-multiples of
32, 16 and 7 among them) once height and width are dynamic. Inductor:
outputs and gradients of a training step equal the eager ones within
``INDUCTOR_TOL`` (measured for every family by
``benchmarks/compile/tiny_check.py``; the test compiles the two families
whose code differs most, to keep the suite fast). See docs/compile.md.
"""
import pytest
import torch
import torch._dynamo

from mmext.engine.compile import GraphCounter, graph_break_count
from tests.families import DUALVIT_TINY, FAMILIES, SHUFFLE_SWIN_TINY

#: the first size is compiled with H and W marked dynamic; the others must
#: reuse its graph (ShuffleSwin's pad_small_map=False guard on maps smaller
#: than a window is stable over this range: see docs/compile.md)
SIZES = [(64, 96), (96, 64), (72, 100)]
#: fewer blocks than the contract's tiny archs where a stage repeats
#: itself (tracing time grows with the blocks; every kind of block stays)
FEWER_BLOCKS = dict(
    DualViT=dict(arch=dict(DUALVIT_TINY, depths=[1, 1, 1, 1])),
    ShuffleSwin=dict(arch=dict(SHUFFLE_SWIN_TINY, depths=[2, 1, 1, 1])))
#: largest relative error of outputs / gradients, inductor vs eager, over
#: the families (tiny archs, float32; benchmarks/compile/tiny.md): at most
#: 3.6e-6 / 1.5e-5 (Dual-ViT's training step), 5.7e-7 in inference; a
#: wrong kernel is off by far more (e.g. 1e-1)
INDUCTOR_TOL = dict(fwd=5e-6, grad=1e-4)


def rel_error(a, b) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def training_step(model, x, weights=None, dynamic=False):
    """Outputs, and gradients (input first, then parameters) of a weighted
    sum of the outputs; ``dynamic`` marks height and width dynamic."""
    x = x.clone().requires_grad_()
    if dynamic:
        torch._dynamo.mark_dynamic(x, 2)
        torch._dynamo.mark_dynamic(x, 3)
    outs = model(x)
    if weights is None:
        torch.manual_seed(1)
        weights = [torch.randn_like(o) for o in outs]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    grads = [x.grad] + [p.grad.clone() for p in model.parameters()
                        if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return [o.detach() for o in outs], grads, weights


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize('family', FAMILIES, ids=lambda f: f.id)
def test_one_graph_no_breaks_any_size(family):
    torch.manual_seed(0)
    model = family.build(**FEWER_BLOCKS.get(family.type, {})).train()
    counter = GraphCounter('eager')
    compiled = torch.compile(model, backend=counter)
    for i, (h, w) in enumerate(SIZES):
        x = torch.randn(2, 3, h, w)
        outs, grads, weights = training_step(compiled, x, dynamic=i == 0)
        ref_outs, ref_grads, _ = training_step(model, x, weights)
        for got, ref in zip(outs + grads, ref_outs + ref_grads):
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert graph_break_count() == 0, torch._dynamo.utils.counters[
        'graph_break']
    assert counter.count == 1, f'{counter.count} graphs for {SIZES}'


def test_avit_token_removal_compiles():
    """A-ViT's inference drops halted tokens: data-dependent shapes, so
    graph breaks by design; the compiled result is still exact."""
    family = next(f for f in FAMILIES if f.type == 'AViT')
    torch.manual_seed(0)
    model = family.build().eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        ref_depth = model.halting_state['depth']
        assert 1 < ref_depth.float().mean() < 4  # some tokens halt
        outs = torch.compile(model, backend='eager')(x)
    assert graph_break_count() > 0  # what docs/compile.md reports
    for got, expected in zip(outs, ref):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.halting_state['depth'], ref_depth)


class BlockOnMap(torch.nn.Module):
    """A token block called as ``block(tokens, hw, *extra)``, on an image-
    like ``(B, C, H, W)`` input (so that a test can treat it as a model)."""

    def __init__(self, block, *extra):
        super().__init__()
        self.block = block
        self.extra = torch.nn.ParameterList(extra)

    def forward(self, x):
        hw = tuple(x.shape[2:])
        out = self.block(x.flatten(2).transpose(1, 2), hw, *self.extra)
        return out if isinstance(out, tuple) else (out, )


def training_blocks():
    """The blocks with training-only code: Dual-ViT's (dual attention;
    the conv-FFN recomputed in the backward through a checkpoint, around
    its GELU-linear autograd function) and ELSA's (the ELSA filter as a
    custom op with its hand-written backward)."""
    from mmext.models.backbones.dualvit import DualBlock
    from mmext.models.backbones.elsa_swin import ELSABlock
    torch.manual_seed(0)
    semantic = torch.nn.Parameter(torch.randn(2, 4, 16))
    return dict(
        dual=BlockOnMap(DualBlock(16, 2, 2., 0., layer_scale_init=1.),
                        semantic),
        elsa=BlockOnMap(ELSABlock(16, 2, dict(group_width=8))))


@pytest.mark.parametrize('name', ['dual', 'elsa'])
def test_inductor_training_blocks_match_eager(name):
    block = training_blocks()[name].train()
    x = torch.randn(2, 16, 9, 11)
    outs, grads, weights = training_step(torch.compile(block), x)
    ref_outs, ref_grads, _ = training_step(block, x, weights)
    assert len(grads) == len(ref_grads) == 1 + len(list(block.parameters()))
    fwd = max(rel_error(a, b) for a, b in zip(outs, ref_outs))
    grad = max(rel_error(a, b) for a, b in zip(grads, ref_grads))
    assert fwd <= INDUCTOR_TOL['fwd'] and grad <= INDUCTOR_TOL['grad'], \
        (fwd, grad)


def test_inductor_inference_matches_eager():
    """The whole (tiny) Dual-ViT in inference: BatchNorm folded into the
    stem convs, conv-FFN without bands, the bicubic query resize."""
    family = next(f for f in FAMILIES if f.type == 'DualViT')
    torch.manual_seed(0)
    model = family.build().eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outs = torch.compile(model)(x)
        ref = model(x)
    fwd = max(rel_error(a, b) for a, b in zip(outs, ref))
    assert fwd <= INDUCTOR_TOL['fwd'], fwd


def test_conv_ffn_bands_stay_eager(monkeypatch):
    """Without autograd a conv-FFN splits large maps into bands of rows (a
    Python loop over the height); compiled, it runs the map at once, so a
    new height is no new graph once heights are dynamic (the second
    one)."""
    from mmext.models.layers import ffn
    monkeypatch.setattr(ffn, 'FFN_BAND_BYTES', 1024)
    torch.manual_seed(0)
    block = ffn.ConvFFN(8, 16).eval()
    counter = GraphCounter('eager')
    compiled = torch.compile(block, backend=counter)
    with torch.no_grad():
        for h in (40, 52, 64):
            x = torch.randn(1, h * 12, 8)
            assert block._band_rows(x, (h, 12)) > 0  # eager: bands
            torch.testing.assert_close(compiled(x, (h, 12)), block(x, (h, 12)))
    assert counter.count == 2
