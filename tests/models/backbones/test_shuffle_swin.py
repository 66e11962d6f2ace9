"""Tests of mmext.ShuffleSwin and the channel shuffle (tiny archs, small
inputs). The golden data come from the authors' code
(tests/data/make_shuffle_swin_golden.py)."""
import os.path as osp

import pytest
import torch
import torch.nn as nn

from mmext.converters.shuffle_swin import ShuffleSwinConverter
from mmext.models.backbones.shuffle_swin import (GroupPatchMerging,
                                                 ShuffleSwin)

GOLDEN = osp.join(osp.dirname(__file__), '..', '..', 'data',
                  'shuffle_swin_golden.pth')
TINY = dict(embed_dims=8, depths=[2, 2, 2, 2], num_heads=[1, 1, 2, 2])


def tiny(**kwargs):
    kwargs.setdefault('drop_path_rate', 0.)
    kwargs.setdefault('window_size', 3)
    return ShuffleSwin(arch=dict(TINY), **kwargs)


def rel_err(ours, ref):
    return ((ours.double() - ref).abs().max() / ref.abs().max()).item()


def test_group_patch_merging_gather_order():
    merge = GroupPatchMerging(4)
    for m in list(merge.norms) + list(merge.reductions):
        m.requires_grad_(False)
    merge.norms[0].weight.fill_(1)
    merge.norms[0].bias.zero_()
    merge.reductions[0].weight.copy_(torch.eye(8)[:4])  # first 4 of 8
    x = torch.arange(2 * 2 * 4.).view(1, 4, 4)  # 2x2 map, C = 4
    out, hw = merge(x, (2, 2))
    assert hw == (1, 1)
    # first half (channels 0, 1) of positions (0,0), (1,0): tokens 0 and 2
    gathered = torch.tensor([0., 1., 8., 9., 4., 5., 12., 13.])
    expected = nn.functional.layer_norm(gathered, (8, ))[:4]
    assert torch.allclose(out[0, 0, :4], expected, atol=1e-6)


# -- equivalence with the authors' code --------------------------------------
def _golden_model(golden, dtype):
    from mmpretrain.registry import MODELS
    from mmengine.registry import DefaultScope
    import mmext.models  # noqa: F401
    converted, meta, _ = ShuffleSwinConverter().convert(
        golden['state_dict'], keep_head=True)
    cfg = meta['model_cfg']
    cfg['backbone']['out_indices'] = (0, 1, 2, 3)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg).to(dtype)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert not unexpected
    assert sorted(missing) == [f'backbone.norm{i}.{p}' for i in range(3)
                               for p in ('bias', 'weight')]
    # the authors' stage outputs 0-2 have no norm
    for i in range(3):
        setattr(model.backbone, f'norm{i}', nn.Identity())
    return model.eval()


def _run(model, x):
    feats = model.backbone(x)
    logits = model.head(model.neck(feats))
    return logits, feats


@pytest.mark.parametrize('case', [0, 1])
def test_forward_and_gradients_match_authors_float64(case):
    golden = torch.load(GOLDEN)
    model = _golden_model(golden, torch.float64)
    ref = golden['cases'][case]
    x = ref['input'].double().requires_grad_(True)
    logits, feats = _run(model, x)
    # float64: the largest relative errors reached were 1.4e-15 (outputs)
    # and 3.9e-15 (gradients); the bounds leave a margin of ~300x
    assert rel_err(logits, ref['logits']) < 1e-12
    for ours, theirs in zip(feats, ref['features']):
        assert ours.shape == theirs.shape
        assert rel_err(ours, theirs) < 1e-12
    if 'grad_input' not in ref:
        return
    weights = [w.double() for w in ref['loss_weights']]
    loss = sum((t * w).sum() for t, w in zip([logits, *feats], weights))
    loss.backward()
    assert rel_err(x.grad, ref['grad_input']) < 1e-12
    grads, _, _ = ShuffleSwinConverter().convert(ref['grad_params'],
                                                 keep_head=True)
    params = dict(model.named_parameters())
    assert set(grads) == set(params)
    for name, grad in grads.items():
        assert rel_err(params[name].grad, grad) < 1e-12, name


def test_forward_matches_authors_float32():
    golden = torch.load(GOLDEN)
    model = _golden_model(golden, torch.float32)
    worst = 0.
    with torch.no_grad():
        for ref in golden['cases']:
            logits, feats = _run(model, ref['input'])
            worst = max([worst, rel_err(logits, ref['logits'])] + [
                rel_err(o, t) for o, t in zip(feats, ref['features'])])
    # the bound; reached: 1.5e-6
    assert worst <= 1e-4


def test_learnable_rescale_starts_equal_to_fixed(tmp_path):
    torch.manual_seed(0)
    fixed = tiny().eval()
    path = str(tmp_path / 'fixed.pth')
    torch.save({'state_dict': fixed.state_dict()}, path)
    # a checkpoint of the released form loads; the factors keep 1/2
    learnable = tiny(rescale='learnable',
                     init_cfg=dict(type='Pretrained', checkpoint=path))
    learnable.init_weights()
    learnable.eval()
    assert len([n for n, _ in learnable.named_parameters()
                if 'shortcut_scales' in n]) == sum(TINY['depths'])
    x = torch.randn(1, 3, 40, 40)
    for a, b in zip(fixed(x), learnable(x)):
        torch.testing.assert_close(a, b)
    sum(o.sum() for o in learnable(x)).backward()
    grad = learnable.stages[0].blocks[0].shortcut_scales.grad
    assert grad is not None and grad.abs().min() > 0
    with pytest.raises(ValueError, match='rescale must be one of'):
        tiny(rescale='half')


# -- sizes, options ---------------------------------------------------------
def test_pad_small_map_decides_the_shift_on_small_maps():
    torch.manual_seed(0)
    a = tiny(out_indices=(3, )).eval()
    b = tiny(out_indices=(3, ), pad_small_map=True).eval()
    b.load_state_dict(a.state_dict())
    big, small = torch.randn(1, 3, 192, 192), torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        # last stage 6x6 > window 3: both shift
        torch.testing.assert_close(a(big)[0], b(big)[0])
        # last stage 3x3 = one window: only pad_small_map=True shifts
        assert not torch.allclose(a(small)[0], b(small)[0], atol=1e-4)


def test_input_smaller_than_the_stride():
    model = tiny().eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 3, 2))  # padded to one patch
    shapes = [tuple(o.shape) for o in outs]
    assert shapes == [(1, 8 * 2**i, 1, 1) for i in range(4)]


def test_arch_errors():
    with pytest.raises(ValueError, match='not divisible by num_heads'):
        ShuffleSwin(arch=dict(embed_dims=8, depths=[1], num_heads=[3]))
    with pytest.raises(ValueError, match='same length'):
        ShuffleSwin(arch=dict(embed_dims=8, depths=[1, 1], num_heads=[1]))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        tiny()(torch.randn(1, 1, 32, 32))


# -- the classifier ----------------------------------------------------------
def test_classifier_parameter_count_xtiny():
    from mmpretrain.registry import MODELS
    from mmengine.registry import DefaultScope
    import mmext.models  # noqa: F401
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(type='mmext.ShuffleSwin', arch='xtiny',
                      out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=1000, in_channels=768))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    # counted from the authors' SwinTransformer(shuffle=True) with
    # configs/swin_eXtraTiny_shuffle.yaml and 1000 classes
    assert sum(p.numel() for p in model.parameters()) == 7_182_826
