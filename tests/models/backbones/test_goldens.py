"""Float64 forward AND gradient goldens of the official code.

``tests/data/dualvit_golden64.pth`` and ``elsa_swin_golden64.pth`` hold the
official models' outputs and the gradients of a fixed weighted sum of all
outputs (``golden64.weighted_sum``) with respect to the input and every
parameter (see ``make_dualvit_golden.py`` / ``make_elsa_swin_golden.py``).
Our backbones load the same weights through the converters; the official
gradients go through the same converter (it only renames, concatenates and
permutes tensors, which maps gradients exactly like weights).

The training-time paths (``with_cp``, Dual-ViT's FFN recomputation and its
GELU-linear autograd function, the ELSA filter's hand-written backward) are
each compared with the official gradients, never with one another. The
Dual-ViT golden also holds the official classifier's logits and the
official segmentation backbone's tiled inference.

Error measure: ``max|ours - official| / max|official|`` per tensor.
"""
import pytest
import torch
import torch.utils.checkpoint

from mmext.converters import get_converter
from mmext.models.backbones import DualViT
from mmext.models.backbones.elsa_swin import ELSASwin
from mmext.models.layers import ffn as ffn_module
from mmext.ops import elsa as elsa_op

from tests.data import golden64

# Tolerances, from the largest errors reached (torch 2.13, CPU, 1 and 2
# threads): Dual-ViT forward (eval, train mode with BatchNorm on batch
# statistics, classifier, tiled) 1.3e-14, gradients 3.3e-14; ELSA-Swin
# forward 1.7e-15, gradients 7.7e-15. The bounds are ~15x those, and far
# below what a real bug does: eps 1e-6 instead of 1e-5 in the one
# LayerNorm of the semantic queries moved the outputs by 1.4e-8, a
# BatchNorm fold without eps by 3.8e-5 (both pass a 1e-4 float32 check).
TOL = dict(dualvit=dict(fwd=2e-13, grad=5e-13),
           elsa_swin=dict(fwd=2e-14, grad=1e-13))


def _check(actual, expected, tol, what):
    assert actual.shape == expected.shape, what
    err = golden64.max_rel_error(actual, expected)
    assert err <= tol, f'{what}: relative error {err:.3g} > {tol:g}'


def _check_grads(model, x, golden_input_grad, golden_grads, tol):
    grads = {n: p.grad for n, p in model.named_parameters()}
    no_grad = sorted(n for n, g in grads.items() if g is None)
    assert not no_grad, f'parameters cut from the graph: {no_grad}'
    assert grads.keys() == golden_grads.keys()
    _check(x.grad, golden_input_grad, tol, 'input gradient')
    for name, ref in golden_grads.items():
        _check(grads[name], ref, tol, f'gradient of {name}')


class _CallCounter:
    """Wraps a function and counts its calls (to prove that a test ran the
    path it is about)."""

    def __init__(self, fn):
        self.fn, self.count = fn, 0

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self.fn(*args, **kwargs)


# -- Dual-ViT -------------------------------------------------------------
@pytest.fixture(scope='module')
def dualvit_golden():
    return golden64.load_golden('dualvit_golden64.pth', 'dualvit',
                                lambda g: g['train']['param_grads'])


def _dualvit(g, **kwargs):
    model = DualViT(arch=g['arch'], drop_path_rate=0., **kwargs).double()
    missing, unexpected = model.load_state_dict(g['state'], strict=False)
    # the golden stores float tensors only: no BN step counters
    assert not unexpected and all(
        k.endswith('num_batches_tracked') for k in missing), missing
    return model


def test_dualvit_forward_matches_official_float64(dualvit_golden):
    g = dualvit_golden
    model = _dualvit(g).eval()
    with torch.no_grad():
        outs = model(golden64.smooth_input(**g['eval']['input']).double())
    assert len(outs) == len(g['eval']['outputs'])
    for i, (out, ref) in enumerate(zip(outs, g['eval']['outputs'])):
        _check(out, ref, TOL['dualvit']['fwd'], f'output {i}')


@pytest.mark.parametrize('variant', ['default', 'no_recompute', 'with_cp'])
def test_dualvit_gradients_match_official(dualvit_golden, variant,
                                          monkeypatch):
    """Train mode (BatchNorm on batch statistics): outputs, input gradient
    and every parameter's gradient.

    ``default``: the ConvFFNs recompute their hidden activations
    (``recompute_hidden``, a checkpoint of the FFN); ``no_recompute``: the
    FFNs keep ``fc1``/``dwconv`` outputs and use the GELU-linear autograd
    function; ``with_cp``: whole blocks are checkpointed (FFN recomputation
    off inside them).
    """
    g = dualvit_golden
    model = _dualvit(g, with_cp=variant == 'with_cp').train()
    ffns = [m for m in model.modules() if isinstance(m, ffn_module.ConvFFN)]
    if variant == 'no_recompute':
        for m in ffns:
            m.recompute_hidden = False
    # count what runs, so that each variant provably takes its path
    checkpoint = _CallCounter(torch.utils.checkpoint.checkpoint)
    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', checkpoint)
    gelu_linear = _CallCounter(ffn_module._GeluLinear.apply)
    monkeypatch.setattr(ffn_module._GeluLinear, 'apply', gelu_linear)

    x = golden64.smooth_input(**g['train']['input']).double()
    x.requires_grad_()
    outs = model(x)
    for i, (out, ref) in enumerate(zip(outs, g['train']['outputs'])):
        _check(out, ref, TOL['dualvit']['fwd'], f'train-mode output {i}')
    golden64.weighted_sum(outs).backward()
    _check_grads(model, x, g['train']['input_grad'], g['grads'],
                 TOL['dualvit']['grad'])

    # (checkpoint calls, GELU-linear calls): a checkpointed FFN or block
    # runs its forward again in the backward pass
    n = len(ffns)
    expected = {
        'default': (n, 2 * n),
        'no_recompute': (0, n),
        'with_cp': (sum(g['arch']['depths']), 2 * n)
    }[variant]
    assert (checkpoint.count, gelu_linear.count) == expected


def test_dualvit_classifier_matches_official_float64(dualvit_golden):
    """mmpretrain ImageClassifier + mmext head == the official token-labeling
    classifier (class logits + 0.5 * max of the auxiliary logits)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS

    import mmext.models.heads  # noqa: F401  (registers DualViTClsHead)
    g = dualvit_golden
    state, meta, dropped = get_converter('dualvit').convert(g['official'],
                                                            keep_head=True,
                                                            arch=g['arch'])
    assert not dropped and meta['num_classes'] == g['cls']['num_classes']
    cfg = meta['model_cfg']
    cfg['backbone']['arch'] = g['arch']  # custom arch: no name in the zoo
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = PRETRAIN_MODELS.build(cfg).double().eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(
        k.endswith('num_batches_tracked') for k in missing), missing
    with torch.no_grad():
        for spec, ref in zip(g['cls']['inputs'], g['cls']['logits']):
            x = golden64.smooth_input(**spec).double()
            _check(model(x, mode='tensor'), ref, TOL['dualvit']['fwd'],
                   f'logits of a {spec["h"]}x{spec["w"]} input')


def test_dualvit_tiled_inference_matches_official_float64(
        dualvit_golden, monkeypatch):
    """``test_tile_size``: the official segmentation backbone's tiling (the
    last row / column of tiles aligned to the border, overlapping)."""
    g = dualvit_golden
    model = _dualvit(g, test_tile_size=g['tiled']['tile']).eval()
    tiles = _CallCounter(model.forward_single)
    monkeypatch.setattr(model, 'forward_single', tiles)
    with torch.no_grad():
        outs = model(golden64.smooth_input(**g['tiled']['input']).double())
    assert tiles.count == 6  # 100x150 in 64x64 tiles: 2 rows, 3 columns
    for i, (out, ref) in enumerate(zip(outs, g['tiled']['outputs'])):
        _check(out, ref, TOL['dualvit']['fwd'], f'tiled output {i}')


# -- ELSA-Swin ------------------------------------------------------------
@pytest.fixture(scope='module')
def elsa_golden():
    g = golden64.load_golden('elsa_swin_golden64.pth', 'elsa_swin',
                             lambda g: g['param_grads'])
    assert g['meta']['fresh_out_norms'] == []
    return g


def _elsa(g, **kwargs):
    model = ELSASwin(arch=g['arch'],
                     mlp_ratio=g['mlp_ratio'],
                     out_indices=g['out_indices'],
                     drop_path_rate=0.,
                     **kwargs).double()
    model.load_state_dict(g['state'], strict=True)
    return model


def test_elsa_swin_forward_matches_official_float64(elsa_golden):
    g = elsa_golden
    model = _elsa(g).eval()
    with torch.no_grad():
        outs = model(golden64.smooth_input(**g['input']).double())
    assert len(outs) == len(g['outputs'])
    for i, (out, ref) in enumerate(zip(outs, g['outputs'])):
        _check(out, ref, TOL['elsa_swin']['fwd'], f'output {i}')


@pytest.mark.parametrize('with_cp', [False, True])
def test_elsa_swin_gradients_match_official(elsa_golden, with_cp, monkeypatch):
    """Gradients through the ELSA filter's hand-written backward (the
    official CPU path is an unfold with plain autograd), with and without
    per-block checkpointing."""
    g = elsa_golden
    model = _elsa(g, with_cp=with_cp, elsa_cfg=dict(impl='pytorch')).train()
    checkpoint = _CallCounter(torch.utils.checkpoint.checkpoint)
    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', checkpoint)
    shift_acc = _CallCounter(elsa_op._ShiftAccumulate.apply)
    monkeypatch.setattr(elsa_op._ShiftAccumulate, 'apply', shift_acc)

    x = golden64.smooth_input(**g['input']).double().requires_grad_()
    outs = model(x)
    for i, (out, ref) in enumerate(zip(outs, g['outputs'])):
        _check(out, ref, TOL['elsa_swin']['fwd'], f'output {i}')
    golden64.weighted_sum(outs).backward()
    _check_grads(model, x, g['input_grad'], g['grads'],
                 TOL['elsa_swin']['grad'])

    elsa_blocks = sum(g['arch']['depths'][:-1])
    # with_cp recomputes each block's forward in the backward pass
    assert shift_acc.count == elsa_blocks * (2 if with_cp else 1)
    assert checkpoint.count == (sum(g['arch']['depths']) if with_cp else 0)
