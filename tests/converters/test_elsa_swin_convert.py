"""Tests of the ELSA-Swin checkpoint converter (no official code needed)."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmext.converters import ConversionError, get_converter
from mmext.converters.elsa_swin import (convert, infer_arch, infer_variant,
                                        to_official, verify)
from mmext.models.backbones.elsa_swin import ELSASwin

TINY = dict(embed_dims=8, depths=[1, 1, 1, 2], num_heads=[1, 2, 2, 4],
            group_width=4)
GOLDEN = osp.join(osp.dirname(__file__), '..', 'data',
                  'elsa_swin_golden.pth')


@pytest.fixture(scope='module')
def official_sd():
    g = torch.load(GOLDEN, map_location='cpu', weights_only=True)
    return {k: v.float() for k, v in g['official_state_dict'].items()}


def test_registered_family():
    mod = get_converter('elsa_swin')
    assert mod.convert is convert


def test_round_trip_is_identity(official_sd):
    state, meta, dropped = convert(official_sd)
    assert dropped == [] and meta['layout'] == 'backbone'
    back = to_official(state)
    assert back.keys() == official_sd.keys()
    for k, v in official_sd.items():
        assert torch.equal(back[k], v), k
    # ... and the other way round, starting from an mmext model
    model = ELSASwin(arch=dict(TINY))
    model.init_weights()
    ours = model.state_dict()
    again, _, _ = convert(to_official(ours))
    assert again.keys() == ours.keys()
    for k, v in ours.items():
        assert torch.equal(again[k], v), k


def test_qkv_rows_reordered(official_sd):
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


def test_table_orientation(official_sd):
    """Official: rb[head, idx(key - query)]; ours: table[idx(query - key),
    head]. Check every (query, key) pair of the 7x7 window."""
    rb = official_sd['layers.3.blocks.1.attn.rb']
    state, _, _ = convert(official_sd)
    table = state['stages.3.blocks.1.attn.w_msa.relative_position_bias_table']
    model = ELSASwin(arch=dict(TINY))
    model.load_state_dict(state)
    ours = model.stages[3].blocks[1].attn.w_msa.relative_bias()  # (h, N, N)
    ys, xs = torch.meshgrid(torch.arange(7), torch.arange(7), indexing='ij')
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[None, :] - ys[:, None] + 6  # key - query
    dx = xs[None, :] - xs[:, None] + 6
    official = rb[:, dy * 13 + dx]
    torch.testing.assert_close(ours, official, rtol=0, atol=0)
    assert table.shape == (169, rb.shape[0])


def test_patch_merging_order(official_sd):
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


def test_wrapped_and_prefixed_inputs(official_sd):
    ref, _, _ = convert(official_sd)
    det = {'backbone.' + k: v for k, v in official_sd.items()}
    det['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    for ckpt in ({'state_dict': det, 'meta': {}},
                 {'model': {'module.' + k: v for k, v in
                            official_sd.items()}}):
        state, meta, dropped = convert(ckpt)
        assert state.keys() == ref.keys()
    state, meta, dropped = convert(det)
    assert dropped == ['neck.lateral_convs.0.conv.weight']


def test_imagenet_layout(official_sd):
    cls = {k: v for k, v in official_sd.items() if not k.startswith('norm')}
    cls['norm.weight'] = torch.ones(64)
    cls['norm.bias'] = torch.zeros(64)
    cls['head.weight'] = torch.zeros(5, 64)
    cls['head.bias'] = torch.zeros(5)
    state, meta, dropped = convert(cls)
    assert sorted(dropped) == ['head.bias', 'head.weight', 'norm.bias',
                               'norm.weight']
    assert meta['fresh_out_norms'] == ['norm0', 'norm1', 'norm2', 'norm3']
    verify(state, meta)  # missing output norms are allowed here only
    state, meta, _ = convert(cls, keep_head=True)
    assert 'backbone.norm3.weight' in state and 'head.fc.weight' in state
    assert meta['model_cfg']['head']['num_classes'] == 5
    verify(state, meta)


def test_infer_variant(official_sd):
    assert infer_variant(official_sd) == (None, TINY)
    for name in ('t', 's', 'b'):
        with torch.device('meta'):
            sd = to_official(ELSASwin(arch=name).state_dict())
        assert infer_arch(sd)['name'] == name
    with pytest.raises(ConversionError, match='does not fit the given arch'):
        infer_arch(official_sd, arch='t')


def test_errors(official_sd):
    state, meta, _ = convert(official_sd)
    with pytest.raises(ConversionError, match='already in mmext'):
        convert(state)
    with pytest.raises(ConversionError, match='not an official ELSA-Swin'):
        convert({'foo.weight': torch.zeros(1)})
    with pytest.raises(ConversionError, match='no classifier'):
        convert(official_sd, keep_head=True)
    bad = dict(official_sd)
    bad['layers.0.blocks.0.attn.extra.weight'] = torch.zeros(1)
    with pytest.raises(ConversionError, match='no known ELSA-Swin layer'):
        convert(bad)
    state.pop('stages.0.blocks.0.attn.ghost_add')
    with pytest.raises(ConversionError, match='missing'):
        verify(state, meta)


def test_cli_end_to_end(tmp_path, official_sd):
    import importlib.util
    tool = osp.join(osp.dirname(__file__), '..', '..', 'tools',
                    'convert_imagenet.py')
    if not osp.exists(tool):
        pytest.skip('tools/convert_imagenet.py not present')
    spec = importlib.util.spec_from_file_location('convert_imagenet', tool)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmext.pth'
    torch.save({'state_dict': official_sd}, src)
    assert cli.main(['elsa_swin', str(src), str(dst)]) == 0
    saved = torch.load(dst, weights_only=False)
    model = ELSASwin(arch=saved['meta']['arch_settings'])
    model.load_state_dict(saved['state_dict'], strict=True)
    assert cli.main(['elsa_swin', str(src), str(dst)]) == 1  # no --force
