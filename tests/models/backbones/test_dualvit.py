"""DualViT backbone and classifier head (CPU, tiny archs).

What every backbone shares is in ``test_contract.py``; equivalence with the
official code (float64 goldens, forward and gradients) in
``test_goldens.py``; this file holds the rest that is particular to
Dual-ViT.
"""
import pytest
import torch

from mmext.models.backbones import DualViT
from tests.data import golden64
from tests.families import DUALVIT_TINY as TINY

# parameter counts of the official models (detection backbone / ImageNet
# classifier with 1000 classes)
OFFICIAL_PARAMS = {
    's': (21_741_280, 25_054_000),
    'b': (38_448_128, 42_627_024),
    'l': (68_787_648, 72_966_544),
}


@pytest.fixture(scope='module')
def golden():
    """The official weights (float64 golden, its own tiny arch)."""
    return golden64.load_golden('dualvit_golden64.pth', 'dualvit',
                                lambda g: g['train']['param_grads'])


def tiny(**kwargs):
    kwargs.setdefault('drop_path_rate', 0.)
    return DualViT(arch=TINY, **kwargs)


def golden_model(golden, **kwargs):
    model = DualViT(arch=golden['arch'], drop_path_rate=0., **kwargs)
    model.load_state_dict(golden['state'], strict=False)
    return model


# -- shapes -----------------------------------------------------------------
@pytest.mark.parametrize('shape', [(1, 3, 97, 131), (1, 3, 28, 200)])
def test_output_shapes_predicts_the_outputs(shape):
    model = tiny().eval()
    with torch.no_grad():
        outs = model(torch.randn(shape))
    assert [tuple(o.shape[1:]) for o in outs] == model.output_shapes(
        *shape[2:])


def test_out_indices_subset_skips_later_stages():
    model = tiny(out_indices=(0, 2)).eval()
    assert len(model.stages) == 3  # stage 3 is never built
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [8, 24]


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match='at least 25x25'):
        tiny()(torch.randn(1, 3, 20, 64))


# -- arch / arguments ---------------------------------------------------------
def test_bad_arch_errors():
    with pytest.raises(ValueError, match="unknown DualViT arch 'xl'.*'s'"):
        DualViT(arch='xl')
    with pytest.raises(ValueError, match='missing .*depths'):
        DualViT(arch={k: v for k, v in TINY.items() if k != 'depths'})
    with pytest.raises(ValueError, match='4 entries'):
        DualViT(arch=dict(TINY, depths=[1, 1, 1]))
    with pytest.raises(ValueError, match='divisible'):
        DualViT(arch=dict(TINY, num_heads=[3, 2, 2, 2]))
    with pytest.raises(ValueError, match='out_type'):
        tiny(out_type='cls_token')
    with pytest.raises(ValueError, match='tokens'):
        tiny(out_type='tokens', out_indices=(2, 3))
    with pytest.raises(ValueError, match='out_indices'):
        tiny(out_indices=(4, ))


@pytest.mark.parametrize('arch', ['s', 'b', 'l'])
def test_parameter_counts_match_official(arch):
    from mmext.models.heads import DualViTClsHead
    with torch.device('meta'):
        backbone = DualViT(arch=arch)
        trunk = DualViT(arch=arch, out_type='tokens')
        s = DualViT.parse_arch(arch)
        head = DualViTClsHead(1000, s['embed_dims'][-1], s['num_heads'][-1])

    def count(*modules):
        return sum(p.numel() for m in modules for p in m.parameters())

    assert count(backbone) == OFFICIAL_PARAMS[arch][0]
    assert count(trunk, head) == OFFICIAL_PARAMS[arch][1]


# -- training behaviour ------------------------------------------------------
def test_stem_norm_cfg():
    model = tiny(stem_norm_cfg=dict(type='BN', requires_grad=False))
    bn = model.stem.convs[1].norm
    assert isinstance(bn, torch.nn.BatchNorm2d)
    assert not bn.weight.requires_grad


def test_drop_path_is_stochastic_in_train_only(golden):
    model = golden_model(golden)
    for block in (b for s in model.stages for b in s.blocks):
        block.drop_path = 0.5
    x = torch.randn(1, 3, 64, 64)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    model.stem.eval()  # BN statistics aside
    torch.manual_seed(0)
    a = model(x)[-1]
    torch.manual_seed(1)
    b = model(x)[-1]
    assert not torch.allclose(a, b)


def test_layer_depth_for_lr_decay():
    model = tiny()
    num = sum(TINY['depths']) + 2
    assert model.get_layer_depth('backbone.stem.proj.weight',
                                 'backbone.') == (0, num)
    assert model.get_layer_depth(
        'backbone.stages.0.semantic_embed.queries', 'backbone.')[0] == 1
    assert model.get_layer_depth(
        'backbone.stages.2.blocks.1.attn.qkv.weight', 'backbone.')[0] == 5
    assert model.get_layer_depth('backbone.stages.1.downsample.proj.weight',
                                 'backbone.')[0] == 2
    assert model.get_layer_depth('backbone.stages.1.norm.weight',
                                 'backbone.')[0] == 3
    assert model.get_layer_depth('head.fc.weight', 'backbone.')[0] == num - 1


def test_pretrained_init_cfg_loads_converted_file(tmp_path, golden):
    """Official file -> convert_checkpoint -> init_cfg: the official
    outputs (float32: the error reached is ~2e-7)."""
    from mmext.converters import convert_checkpoint
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmext.pth'
    torch.save({'model': {k: v.float() for k, v in
                          golden['official'].items()}}, src)
    convert_checkpoint('dualvit', str(src), str(dst), arch=golden['arch'])
    model = DualViT(arch=golden['arch'], drop_path_rate=0.,
                    init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        outs = model(golden64.smooth_input(**golden['eval']['input']))
    for out, ref in zip(outs, golden['eval']['outputs']):
        assert golden64.max_rel_error(out.double(), ref) <= 2e-6


def test_head_rejects_feature_maps():
    pytest.importorskip('mmpretrain')
    from mmext.models.heads import DualViTClsHead
    head = DualViTClsHead(10, 32, 2)
    with pytest.raises(TypeError, match="out_type='tokens'"):
        head(tiny().eval()(torch.randn(1, 3, 64, 64)))


def test_banded_ffn_inside_the_model(monkeypatch, golden):
    from mmext.models.layers import ffn
    model = golden_model(golden).float().eval()
    x = torch.randn(2, 3, 160, 136)  # stage 2 (merged tokens) has 10 rows
    with torch.no_grad():
        ref = model(x)
        monkeypatch.setattr(ffn, 'FFN_BAND_BYTES', 1)  # bands everywhere
        banded = model(x)
    torch.testing.assert_close(banded, ref, rtol=1e-5, atol=1e-5)
