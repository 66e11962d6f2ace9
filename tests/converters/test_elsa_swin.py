"""What is particular to the ELSA-Swin converter (the shared contract is in
``test_contract.py``): qkv row order, relative-position table orientation,
patch-merging order, the ImageNet layout and the ghost heads."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmext.converters import ConversionError, get_converter
from mmext.models.backbones.elsa_swin import ELSASwin

TINY = dict(embed_dims=8, depths=[1, 1, 1, 2], num_heads=[1, 2, 2, 4],
            group_width=4)
GOLDEN = osp.join(osp.dirname(__file__), '..', 'data',
                  'elsa_swin_golden.pth')


@pytest.fixture(scope='module')
def official_sd():
    g = torch.load(GOLDEN, map_location='cpu', weights_only=True)
    return {k: v.float() for k, v in g['official_state_dict'].items()}


@pytest.fixture(scope='module')
def convert():
    return get_converter('elsa_swin').convert


def test_official_round_trip_is_identity(official_sd, convert):
    state, meta, dropped = convert(official_sd)
    assert dropped == [] and meta['arch_settings'] == TINY
    back = get_converter('elsa_swin').to_official(state, TINY)
    relative_ids = {k for k in official_sd if k.endswith('relative_id')}
    assert back.keys() == official_sd.keys() - relative_ids
    for k, v in back.items():
        assert torch.equal(official_sd[k], v), k


def test_qkv_rows_reordered(official_sd, convert):
    key = 'layers.3.blocks.0.attn.pre_proj.'
    state, _, _ = convert(official_sd)
    new = 'stages.3.blocks.0.attn.w_msa.qkv.'
    c = official_sd[key + 'weight'].shape[1]
    for leaf in ('weight', 'bias'):
        v, q, k = official_sd[key + leaf].split(c)
        assert torch.equal(state[new + leaf], torch.cat([q, k, v]))
    # ELSA stages keep q, k, v
    assert torch.equal(state['stages.0.blocks.0.attn.qkv.weight'],
                       official_sd['layers.0.blocks.0.attn.pre_proj.weight'])


def test_table_orientation(official_sd, convert):
    """Official: rb[head, idx(key - query)]; ours: table[idx(query - key),
    head]. Check every (query, key) pair of the 7x7 window."""
    rb = official_sd['layers.3.blocks.1.attn.rb']
    state, _, _ = convert(official_sd)
    model = ELSASwin(arch=dict(TINY))
    model.load_state_dict(state)
    ours = model.stages[3].blocks[1].attn.w_msa.relative_bias()  # (h, N, N)
    ys, xs = torch.meshgrid(torch.arange(7), torch.arange(7), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[None, :] - ys[:, None] + 6  # key - query
    dx = xs[None, :] - xs[:, None] + 6
    torch.testing.assert_close(ours, rb[:, dy * 13 + dx], rtol=0, atol=0)


def test_patch_merging_order(official_sd, convert):
    """The official 2x2 concat + norm + reduction equals mmcv's unfold-order
    PatchMerging with the converted weights."""
    state, _, _ = convert(official_sd)
    model = ELSASwin(arch=dict(TINY)).eval()
    model.load_state_dict(state)
    merge = model.stages[1].downsample
    c = 16
    x = torch.randn(2, 5, 7, c)
    norm_w = official_sd['layers.1.downsample.norm.weight']
    norm_b = official_sd['layers.1.downsample.norm.bias']
    red = official_sd['layers.1.downsample.reduction.weight']
    xp = F.pad(x, (0, 0, 0, 1, 0, 1))
    cat = torch.cat([xp[:, 0::2, 0::2], xp[:, 1::2, 0::2], xp[:, 0::2, 1::2],
                     xp[:, 1::2, 1::2]], -1).flatten(1, 2)
    ref = F.linear(F.layer_norm(cat, (4 * c, ), norm_w, norm_b), red)
    out, size = merge(x.flatten(1, 2), (5, 7))
    assert size == (3, 4)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_imagenet_layout(official_sd, convert):
    converter = get_converter('elsa_swin')
    cls = {k: v for k, v in official_sd.items() if not k.startswith('norm')}
    cls['norm.weight'] = torch.ones(64)
    cls['norm.bias'] = torch.zeros(64)
    cls['head.weight'] = torch.zeros(5, 64)
    cls['head.bias'] = torch.zeros(5)
    state, meta, dropped = convert(cls)
    assert sorted(dropped) == ['head.bias', 'head.weight', 'norm.bias',
                               'norm.weight']
    assert meta['fresh_out_norms'] == ['norm0', 'norm1', 'norm2', 'norm3']
    converter.verify(state, meta)  # missing output norms allowed here only
    state, meta, _ = convert(cls, keep_head=True)
    assert 'backbone.norm3.weight' in state and 'head.fc.weight' in state
    assert meta['model_cfg']['head']['num_classes'] == 5
    converter.verify(state, meta)
    state.pop('backbone.norm3.weight')
    with pytest.raises(ConversionError, match='missing'):
        converter.verify(state, meta)


def test_lambda_ghost_pair_is_split(official_sd, convert):
    """A model trained with lambda != 0 stores (2, 1, C, K, K) ghost heads:
    the multiplicative and additive matrices."""
    sd = dict(official_sd)
    key = 'layers.0.blocks.0.attn.ghost_head'
    mul, add = torch.rand(8, 7, 7) + 0.5, sd[key][0]
    sd[key] = torch.stack([mul, add])[:, None]
    with pytest.raises(ConversionError, match='ghost head shape'):
        convert(dict(sd, **{key: torch.zeros(3, 8, 7, 7)}))
    state, meta, _ = convert(sd)
    assert torch.equal(state['stages.0.blocks.0.attn.ghost_mul'], mul)
    assert torch.equal(state['stages.0.blocks.0.attn.ghost_add'], add)
    assert meta['lam_gamma'] == (1., 1.)
    back = get_converter('elsa_swin').to_official(state, TINY)
    assert torch.equal(back[key], sd[key])
