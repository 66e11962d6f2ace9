"""ELSA's non-default options against a direct reference.

The released models use ``lam=0, gamma=1, dilation=1``; the golden data
cover only those. Here :class:`ELSAttention` with ``lam`` 0.5 and 2 (the
multiplicative ghost matrix raised to ``lam``), other ``gamma`` (factor of
the additive ghost matrix, 0 removing it), dilations and kernel sizes is
compared, forward and gradients, with the formula written out in the test
(float64; the reference gets its gradients from plain autograd).
"""
import pytest
import torch
import torch.nn.functional as F

from mmext.models.backbones.elsa_swin import ELSASwin, ELSAttention

DIMS, HEADS, GROUP_WIDTH = 8, 2, 4

# largest errors reached (relative to each tensor's largest value, 1 and 2
# threads): 8.7e-16 forward, 6.8e-16 gradients; the bound is ~12x that
TOL = 1e-14


def reference(m, x, lam, gamma, dilation, kernel_size):
    """ELSA attention on ``x`` ``(B, H, W, C)``, spelled out: q/k/v from a
    1x1 conv; per-head K*K attention maps from a grouped KxK conv of
    ``q * k``, GELU, a 1x1 conv and a softmax over the K*K taps; each
    channel ``c`` of the output sums its ``v`` over the (dilated, zero
    padded) KxK neighbourhood, weighted by
    ``ghost_mul[c] ** lam * attn[head(c)] + gamma * ghost_add[c]``; then the
    output projection. Options come from the test, not from ``m``."""
    b, h, w, c = x.shape
    k = kernel_size
    pad = (k // 2) * dilation
    qkv = F.conv2d(x.permute(0, 3, 1, 2), m.qkv.weight, m.qkv.bias)
    q, key, v = qkv.split([m.dim_qk, m.dim_qk, c], dim=1)
    conv, _, point = m.attn_gen
    hidden = F.conv2d(q * key, conv.weight, conv.bias, padding=pad,
                      dilation=dilation, groups=conv.groups)
    logits = F.conv2d(F.gelu(hidden), point.weight, point.bias)
    attn = logits.view(b, HEADS, k * k, h, w).softmax(dim=2)
    attn = attn.repeat_interleave(c // HEADS, dim=1)  # (B, C, K*K, H, W)

    mul = torch.ones(c, k, k, dtype=x.dtype) if lam == 0 else \
        m.ghost_mul ** lam
    add = torch.zeros(c, k, k, dtype=x.dtype) if gamma == 0 else \
        gamma * m.ghost_add
    padded = F.pad(v, (pad, pad, pad, pad))
    out = torch.zeros_like(v)
    for i in range(k):
        for j in range(k):
            # v[y + (i - k // 2) * dilation, x + (j - k // 2) * dilation]
            shifted = padded[:, :, i * dilation:i * dilation + h,
                             j * dilation:j * dilation + w]
            weight = mul[None, :, i, j, None, None] * attn[:, :, i * k + j] \
                + add[None, :, i, j, None, None]
            out = out + shifted * weight
    return F.linear(out.permute(0, 2, 3, 1), m.proj.weight, m.proj.bias)


def _rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize('lam, gamma, dilation, kernel_size', [
    (0.5, 1., 1, 7),
    (2., 1., 1, 7),
    (2., 0.5, 2, 5),
    (0.5, 0., 3, 3),
    (0., 2., 2, 7),
    (2., 0., 1, 5),
])
def test_elsa_attention_options_match_reference(lam, gamma, dilation,
                                                kernel_size):
    torch.manual_seed(0)
    m = ELSAttention(DIMS, HEADS, kernel_size=kernel_size,
                     group_width=GROUP_WIDTH, dilation=dilation, lam=lam,
                     gamma=gamma, impl='pytorch').double()
    with torch.no_grad():
        for p in m.parameters():  # informative values everywhere
            p.copy_(torch.randn_like(p) * 0.5)
        if m.ghost_mul is not None and lam != int(lam):
            m.ghost_mul.uniform_(0.5, 1.5)  # a fractional power needs > 0
    assert (m.ghost_mul is None) == (lam == 0)
    assert (m.ghost_add is None) == (gamma == 0)
    x = torch.randn(2, 9, 11, DIMS, dtype=torch.float64, requires_grad=True)

    b, h, w, c = x.shape
    out = m(x.reshape(b, h * w, c), (h, w)).view(b, h, w, c)
    ref = reference(m, x, lam, gamma, dilation, kernel_size)
    assert _rel_err(out, ref) <= TOL

    weights = torch.randn_like(out)
    inputs = [x] + list(m.parameters())
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    ref_grads = torch.autograd.grad((ref * weights).sum(), inputs)
    names = ['x'] + [n for n, _ in m.named_parameters()]
    for name, g, r in zip(names, grads, ref_grads):
        assert _rel_err(g, r) <= TOL, name


def test_backbone_passes_options_to_every_elsa_block():
    model = ELSASwin(arch=dict(embed_dims=8, depths=[1, 2, 1, 1],
                               num_heads=[1, 2, 2, 2], group_width=4),
                     elsa_cfg=dict(lam=2., gamma=0.5, dilation=2,
                                   kernel_size=5))
    attns = [blk.attn for s in model.stages[:-1] for blk in s.blocks]
    assert len(attns) == 4
    for a in attns:
        assert isinstance(a, ELSAttention)
        assert (a.lam, a.gamma, a.dilation, a.kernel_size) == (2., 0.5, 2, 5)
        assert a.ghost_mul.shape == a.ghost_add.shape == (a.embed_dims, 5, 5)
