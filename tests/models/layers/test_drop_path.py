"""Drop path (stochastic depth) is checked statistically: the fraction of
dropped samples and the expectation of the output (kept samples rescaled by
``1 / keep``), with tolerances of four binomial standard deviations (a
fixed seed makes each run the same; at 4 sigma a correct implementation
would fail for fewer than 1 seed in 10^4).

Both drop paths in use: :func:`mmext.models.layers.scaled_residual`
(Dual-ViT's blocks) and the mmcv ``DropPath`` of the ELSA-Swin blocks (on
the attention branch and in the FFN).
"""
import math

import pytest
import torch

from mmext.models.backbones import DualViT
from mmext.models.backbones.elsa_swin import ELSABlock, ELSASwin
from mmext.models.layers import scaled_residual

SAMPLES = 20000
SIGMAS = 4


def _check_statistics(factor, drop_prob):
    """``factor``: the per-sample multiplier drop path applied to a branch
    (0 where dropped, ``1 / keep`` where kept)."""
    keep = 1 - drop_prob
    n = factor.numel()
    dropped = factor == 0
    # kept samples are rescaled exactly
    torch.testing.assert_close(factor[~dropped],
                               torch.full_like(factor[~dropped], 1 / keep))
    # drop rate: Binomial(n, p) / n has std sqrt(p (1 - p) / n)
    rate = dropped.double().mean().item()
    assert abs(rate - drop_prob) <= SIGMAS * math.sqrt(
        drop_prob * keep / n), rate
    # expectation: E[factor] = 1, Var[factor] = p / keep
    mean = factor.double().mean().item()
    assert abs(mean - 1) <= SIGMAS * math.sqrt(drop_prob / keep / n), mean


@pytest.mark.parametrize('drop_prob', [0.1, 0.5])
@pytest.mark.parametrize('with_gamma', [True, False])
def test_scaled_residual_drop_path_statistics(drop_prob, with_gamma):
    torch.manual_seed(0)
    x = torch.randn(SAMPLES, 3, 4, dtype=torch.float64)
    y = (1 + torch.rand(SAMPLES, 3, 4, dtype=torch.float64)).requires_grad_()
    gamma = 0.5 + torch.rand(4, dtype=torch.float64) if with_gamma else None
    out = scaled_residual(x, y, gamma, drop_prob, training=True)

    scale = y.detach() if gamma is None else gamma * y.detach()
    factor = (out.detach() - x) / scale  # (samples, tokens, channels)
    # one decision per sample, shared by all its tokens and channels
    per_sample = factor[:, :1, :1].expand_as(factor)
    torch.testing.assert_close(factor, per_sample, rtol=0, atol=1e-12)
    _check_statistics(factor[:, 0, 0], drop_prob)

    # the gradient follows the same mask and rescaling
    out.sum().backward()
    expected = factor if gamma is None else factor * gamma
    torch.testing.assert_close(y.grad, expected, rtol=1e-12, atol=1e-12)


def test_scaled_residual_is_exact_when_not_dropping():
    x, y = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    gamma = torch.rand(4)
    for kwargs in (dict(drop_prob=0.3, training=False),
                   dict(drop_prob=0., training=True)):
        torch.testing.assert_close(
            scaled_residual(x, y, gamma, **kwargs), x + gamma * y)
    torch.testing.assert_close(
        scaled_residual(x, y, None, 0.3, training=False), x + y)


def _branch_factors(block, branch):
    """Run an ELSA block on zero tokens, one per sample, with one branch
    made to output ones and the other zeros: the block's output then is the
    drop-path factor of that branch."""
    dims = block.norm1.normalized_shape[0]
    x = torch.zeros(SAMPLES, 1, dims)
    last_fc = block.ffn.layers[-2]  # Linear(hidden, dims) before dropout
    with torch.no_grad():
        last_fc.weight.zero_()
        last_fc.bias.fill_(1. if branch == 'ffn' else 0.)
    fill = 1. if branch == 'attn' else 0.
    block.attn.forward = lambda t, hw: torch.full_like(t, fill)
    with torch.no_grad():
        out = block(x, (1, 1))
    # one decision per sample, shared by all channels
    torch.testing.assert_close(out, out[:, :, :1].expand_as(out), rtol=0,
                               atol=0)
    return out[:, 0, 0]


@pytest.mark.parametrize('branch', ['attn', 'ffn'])
def test_elsa_block_drop_path_statistics(branch):
    torch.manual_seed(1)
    drop_prob = 0.3
    block = ELSABlock(8, 2, attn_cfg=dict(group_width=4),
                      drop_path_rate=drop_prob).train()
    _check_statistics(_branch_factors(block, branch), drop_prob)
    block.eval()  # no drop path at test time: the branch passes unscaled
    torch.testing.assert_close(_branch_factors(block, branch),
                               torch.ones(SAMPLES))


def test_elsa_swin_drop_path_rates_rise_linearly():
    model = ELSASwin(arch=dict(embed_dims=8, depths=[1, 2, 1, 2],
                               num_heads=[1, 2, 2, 2], group_width=4),
                     drop_path_rate=0.25)
    blocks = [b for s in model.stages for b in s.blocks]
    rates = [b.drop_path.drop_prob for b in blocks]
    ffn_rates = [b.ffn.dropout_layer.drop_prob for b in blocks]
    expected = [0.25 * i / (len(blocks) - 1) for i in range(len(blocks))]
    assert rates == pytest.approx(expected) and ffn_rates == rates


def test_dualvit_drop_path_rates_rise_linearly():

    arch = dict(stem_width=4, embed_dims=[4, 8, 12, 16],
                num_heads=[1, 2, 2, 2], mlp_ratios=[2, 2, 3, 2],
                depths=[1, 2, 2, 2])
    model = DualViT(arch=arch, drop_path_rate=0.25)
    blocks = [b for s in model.stages for b in s.blocks]
    expected = [0.25 * i / (len(blocks) - 1) for i in range(len(blocks))]
    assert [b.drop_path for b in blocks] == pytest.approx(expected)
    # the semantic-token residuals inside a dual block use the block's rate
    assert [b.attn.drop_path for b in blocks[:3]] == \
        pytest.approx(expected[:3])
