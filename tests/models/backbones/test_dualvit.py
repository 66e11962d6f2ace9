"""DualViT backbone and classifier head (CPU, tiny archs).

What every backbone shares is in ``test_contract.py``; this file holds what
is particular to Dual-ViT. Equivalence with the official code is checked
against golden tensors made by it (``tests/data/dualvit_golden.pth``).
"""
import pytest
import torch

from mmext.converters import get_converter
from mmext.models.backbones import DualViT
from tests.data import dualvit_golden as golden_utils
from tests.data.dualvit_golden import TINY, max_rel_error

TOL = 1e-4  # fp32 max relative error allowed against the official code

# parameter counts of the official models (detection backbone / ImageNet
# classifier with 1000 classes)
OFFICIAL_PARAMS = {
    's': (21_741_280, 25_054_000),
    'b': (38_448_128, 42_627_024),
    'l': (68_787_648, 72_966_544),
}


@pytest.fixture(scope='module')
def golden():
    return golden_utils.load_golden()


@pytest.fixture(scope='module')
def converted(golden):
    state, meta, _ = get_converter('dualvit').convert(
        golden['official_state_dict'], arch=TINY)
    return state


def tiny(**kwargs):
    kwargs.setdefault('drop_path_rate', 0.)
    return DualViT(arch=TINY, **kwargs)


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


# -- equivalence with the official code ---------------------------------------
def test_matches_official_detection_backbone(golden, converted):
    model = tiny().eval()
    model.load_state_dict(converted, strict=True)
    with torch.no_grad():
        outs = model(golden['input'])
    for out, ref in zip(outs, golden['feats']):
        assert out.shape == ref.shape
        assert max_rel_error(out, ref) <= TOL


def test_tiled_inference_matches_official_segmentation(golden, converted):
    model = tiny(test_tile_size=golden['tile']).eval()
    model.load_state_dict(converted, strict=True)
    with torch.no_grad():
        outs = model(golden['tiled_input'])
    for out, ref in zip(outs, golden['tiled_feats']):
        assert out.shape == ref.shape
        assert max_rel_error(out, ref) <= TOL
    # tiles only in eval mode, and only inputs larger than a tile
    model.forward_tiled = lambda x: pytest.fail('unexpected tiling')
    with torch.no_grad():
        model.train()
        model(golden['tiled_input'])
        model.eval()
        model(golden['input'])  # 61x83 < 96


def test_classifier_matches_official(golden):
    """mmpretrain ImageClassifier + mmext head == official token-labeling
    classifier (class logits + 0.5 * max of the aux logits)."""
    pytest.importorskip('mmpretrain')
    from mmengine.registry import DefaultScope

    import mmext.models.heads  # noqa: F401  (registers DualViTClsHead)
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    convert = get_converter('dualvit')
    state, meta, dropped = convert.convert(
        golden['official_state_dict'], keep_head=True, arch=TINY)
    assert not dropped
    cfg = meta['model_cfg']
    cfg['backbone']['arch'] = TINY  # custom arch: no name in the zoo
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = PRETRAIN_MODELS.build(cfg).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        for x, ref in ((golden['input'], golden['logits']),
                       (golden['input_224'], golden['logits_224'])):
            logits = model(x, mode='tensor')
            assert logits.shape == ref.shape
            assert max_rel_error(logits, ref) <= TOL


# -- training behaviour ------------------------------------------------------
def test_stem_norm_cfg():
    model = tiny(stem_norm_cfg=dict(type='BN', requires_grad=False))
    bn = model.stem.convs[1].norm
    assert isinstance(bn, torch.nn.BatchNorm2d)
    assert not bn.weight.requires_grad


def test_drop_path_is_stochastic_in_train_only(converted):
    model = tiny(drop_path_rate=0.5)
    model.load_state_dict(converted)
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
    from mmext.converters import convert_checkpoint
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmext.pth'
    torch.save({'model': golden['official_state_dict']}, src)
    convert_checkpoint('dualvit', str(src), str(dst), arch=TINY)
    model = tiny(init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    model.eval()
    with torch.no_grad():
        outs = model(golden['input'])
    for out, ref in zip(outs, golden['feats']):
        assert max_rel_error(out, ref) <= TOL


def test_head_rejects_feature_maps():
    pytest.importorskip('mmpretrain')
    from mmext.models.heads import DualViTClsHead
    head = DualViTClsHead(10, 32, 2)
    with pytest.raises(TypeError, match="out_type='tokens'"):
        head(tiny().eval()(torch.randn(1, 3, 64, 64)))


def test_banded_ffn_inside_the_model(monkeypatch, converted):
    from mmext.models.layers import ffn
    model = tiny().eval()
    model.load_state_dict(converted)
    x = torch.randn(2, 3, 160, 136)  # stage 2 (merged tokens) has 10 rows
    with torch.no_grad():
        ref = model(x)
        monkeypatch.setattr(ffn, 'FFN_BAND_BYTES', 1)  # bands everywhere
        banded = model(x)
    torch.testing.assert_close(banded, ref, rtol=1e-5, atol=1e-5)
