import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmext.models.backbones.dualvit import DualViT
from mmext.ops import elsa_filter
from mmext.utils.complexity import count_macs, record_macs

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = dict(stem_width=8, embed_dims=[16, 32, 48, 64], num_heads=[1, 2, 3, 4],
            mlp_ratios=[2, 2, 2, 2], depths=[1, 1, 2, 2])


class _Attention(nn.Module):
    """SDPA on parameters, so a backward count sees nothing else."""

    def __init__(self, b, h, n, m, d, dv):
        super().__init__()
        self.q = nn.Parameter(torch.randn(b, h, n, d))
        self.k = nn.Parameter(torch.randn(b, h, m, d))
        self.v = nn.Parameter(torch.randn(b, h, m, dv))

    def forward(self, _):
        return F.scaled_dot_product_attention(self.q, self.k, self.v)


def test_linear_and_conv_macs():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(2))
    report = count_macs(model, torch.randn(2, 3, 10, 12))
    assert report['macs_by_kind'] == {'conv': 2 * 8 * 10 * 12 * 3 * 9}
    report = count_macs(nn.Linear(16, 24), torch.randn(5, 7, 16))
    assert report['total_macs'] == 5 * 7 * 16 * 24
    assert report['params'] == 16 * 24 + 24


def test_depthwise_conv_backward():
    conv = nn.Conv2d(6, 6, 3, padding=1, groups=6)
    x = torch.randn(2, 6, 10, 12, requires_grad=True)
    forward = 2 * 6 * 10 * 12 * 9
    assert count_macs(conv, x)['total_macs'] == forward
    # gradients of the input and of the weight
    both = count_macs(conv, x, backward=True)
    assert both['macs_by_kind'] == {'conv': 3 * forward}
    x.requires_grad_(False)
    assert count_macs(conv, x, backward=True)['total_macs'] == 2 * forward


def test_cpu_attention_forward_and_backward():
    b, h, n, m, d, dv = 2, 3, 40, 24, 8, 8  # fused kernel: d == dv
    model = _Attention(b, h, n, m, d, dv)
    fwd = count_macs(model, torch.zeros(1))
    assert fwd['macs_by_kind'] == {'attention': b * h * n * m * (d + dv)}
    both = count_macs(model, torch.zeros(1), backward=True)
    backward = b * h * n * m * (3 * d + 2 * dv)
    assert both['macs_by_kind'] == {
        'attention': b * h * n * m * (d + dv) + backward}


def test_elsa_filter_reports_its_macs():
    v = torch.randn(1, 4, 9, 11, requires_grad=True)
    attn = torch.randn(1, 2 * 49, 9, 11).softmax(1).requires_grad_()

    class Filter(nn.Module):

        def forward(self, x):
            return elsa_filter(x, attn, impl='pytorch')

    fwd = count_macs(Filter(), v)
    assert fwd['macs_by_kind'] == {'elsa_filter': v.numel() * 49}
    both = count_macs(Filter(), v, backward=True)
    # grad of v and of the attention maps: one product each
    assert both['macs_by_kind'] == {'elsa_filter': 3 * v.numel() * 49}
    # outside a count, reporting is a no-op
    record_macs('elsa_filter', 10**9)
    assert count_macs(Filter(), v)['total_macs'] == v.numel() * 49


def _dualvit_attention_macs(model, height, width):
    """Attention MACs of DualViT from its token counts (b = 1)."""
    shapes = model.output_shapes(height, width)
    dims = [c for c, _, _ in shapes]
    pixels = [h * w for _, h, w in shapes]
    _, h0, w0 = shapes[0]
    m = (h0 // 7) * (w0 // 7)  # semantic tokens: 7x7 pooling of stage 0
    total = m * m * 2 * dims[0]  # learned queries over the pooled tokens
    for i, (c, n) in enumerate(zip(dims, pixels)):
        for j in range(model.depths[i]):
            if i < 2:  # dual: sem self, sem <- pixels, pixels <- sem
                total += (m * m + 2 * n * m) * 2 * c
            elif i == 3 and j == model.depths[i] - 1:  # pixel queries only
                total += n * (n + m) * 2 * c
            else:
                total += (n + m)**2 * 2 * c
    return total


@pytest.mark.parametrize('size', [(97, 131), (64, 64)])
def test_dualvit_attention_count_matches_token_counts(size):
    model = DualViT(arch=TINY).eval()
    report = count_macs(model, torch.randn(1, 3, *size), depth=1)
    assert report.gmacs('attention') * 1e9 == \
        _dualvit_attention_macs(model, *size)
    assert set(report['macs_by_module']) == {'stem', 'stages'}
    assert sum(report['macs_by_module'].values()) == report['total_macs']


def _get_flops():
    from mmext.apis import flops
    return flops


def test_get_flops_cli(tmp_path, capsys):
    out = tmp_path / 'sub' / 'flops.json'
    arch = json.dumps(TINY)
    _get_flops().main([
        'DualViT', '--set', f'arch={arch}', '--shape', '1x3x97x131',
        '--out', str(out)
    ])
    record = json.loads(out.read_text())
    assert record['name'] == 'mmext.DualViT-custom'
    assert record['shape'] == '1x3x97x131'
    assert record['total_macs'] == sum(record['macs_by_kind'].values()) > 0
    assert 'GMACs' in capsys.readouterr().out
    assert not (tmp_path / 'sub' / 'flops.json.part').exists()


def test_get_flops_cli_input_too_small():
    with pytest.raises(SystemExit, match='at least 25x25'):
        _get_flops().main(
            ['DualViT', '--arch', 's', '--shape', '1x3x16x16'])
