"""Layers shared by the backbones: the conv-FFN and self-attention."""
import pytest
import torch


def test_conv_ffn_banded_inference_equals_full(monkeypatch):
    from mmext.models.layers import ffn
    torch.manual_seed(0)
    layer = ffn.ConvFFN(8, 32).eval()
    hw = (23, 17)
    # pixel tokens split off [pixels, semantic tokens]: a strided view
    x = torch.randn(2, 23 * 17 + 5, 8).split([23 * 17, 5], dim=1)[0]
    with torch.no_grad():
        full = layer.fc2(layer.act(layer._fc1_dwconv(x, hw)))
        monkeypatch.setattr(ffn, 'FFN_BAND_BYTES', 1)  # force tiny bands
        assert layer._band_rows(x, hw) > 0
        banded = layer(x, hw)
    torch.testing.assert_close(banded, full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('recompute', [True, False])
def test_conv_ffn_memory_saving_backward_is_exact(recompute):
    from mmext.models.layers import ConvFFN
    torch.manual_seed(0)
    layer = ConvFFN(4, 8, recompute_hidden=recompute).double()
    x = torch.randn(1, 5 * 6, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t, (5, 6)), (x, ))

    ref = ConvFFN(4, 8).double()
    ref.load_state_dict(layer.state_dict())

    def plain(t):  # autograd of the unfused ops
        h = ref.dwconv(t.transpose(1, 2).reshape(1, 8, 5, 6)).flatten(2)
        return ref.fc2(torch.nn.functional.gelu(h.transpose(1, 2)))

    grads = [
        torch.autograd.grad(f(x).square().sum(), [x, *m.parameters()])
        for f, m in ((lambda t: layer(t, (5, 6)), layer),
                     (lambda t: plain(ref.fc1(t)), ref))
    ]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_self_attention_with_fewer_queries():
    from mmext.models.layers import SelfAttention
    torch.manual_seed(0)
    attn = SelfAttention(16, 2)
    x = torch.randn(2, 11, 16)
    torch.testing.assert_close(attn(x, 7), attn(x)[:, :7])
