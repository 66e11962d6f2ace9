"""Tests of mmext.ShuffleViT (tiny arch, small inputs). The golden data come
from the authors' code (tests/data/make_shuffle_vit_golden.py)."""
import os.path as osp

import pytest
import torch
import torch.nn as nn

from mmext.converters.shuffle_vit import ShuffleViTConverter
from mmext.models.backbones.shuffle_vit import ShuffleViT

GOLDEN = osp.join(osp.dirname(__file__), '..', '..', 'data',
                  'shuffle_vit_golden.pth')
TINY = dict(embed_dims=32, depth=3, num_heads=2, patch_size=8)


def tiny(**kwargs):
    kwargs.setdefault('img_size', 48)
    return ShuffleViT(arch=dict(TINY), **kwargs)


def rel_err(ours, ref):
    return ((ours.double() - ref).abs().max() / ref.abs().max()).item()


def _golden_models(golden, dtype):
    """The converted classifier and a backbone with featmap outputs of the
    middle and last blocks (no output norms: the authors have none)."""
    from mmpretrain.registry import MODELS
    from mmengine.registry import DefaultScope
    import mmext.models  # noqa: F401
    conv = ShuffleViTConverter()
    arch = dict(TINY)
    converted, meta, _ = conv.convert(golden['state_dict'], keep_head=True,
                                      arch=arch)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        clf = MODELS.build(meta['model_cfg']).to(dtype)
    clf.load_state_dict(converted)
    backbone, _, _ = conv.convert(golden['state_dict'], arch=arch)
    feat = tiny(out_indices=(golden['mid_block'] - 1, -1)).to(dtype)
    missing, unexpected = feat.load_state_dict(backbone, strict=False)
    assert not unexpected and sorted(missing) == [
        f'norm{i}.{p}' for i in (0, 2) for p in ('bias', 'weight')]
    feat.norm0, feat.norm2 = nn.Identity(), nn.Identity()
    return clf.eval(), feat.eval()


def test_forward_and_gradients_match_authors_float64():
    golden = torch.load(GOLDEN)
    clf, feat = _golden_models(golden, torch.float64)
    x = golden['input'].double().requires_grad_(True)
    logits = clf(x)
    mid, last = feat(x)
    # float64: the largest relative errors reached were 8e-16 (outputs) and
    # 1.6e-15 (gradients); the bounds leave a margin of ~1000x
    assert rel_err(logits, golden['logits']) < 1e-12
    assert rel_err(last, golden['last_tokens']) < 1e-12
    # what the authors' next block attends: the first half of our output
    assert rel_err(mid[:, :16], golden['mid_attended']) < 1e-12

    w_logits, w_last = (w.double() for w in golden['loss_weights'])
    loss = (logits * w_logits).sum() + (last * w_last).sum()
    loss.backward()
    assert rel_err(x.grad, golden['grad_input']) < 1e-12
    grads, _, _ = ShuffleViTConverter().convert(
        golden['grad_params'], keep_head=True, arch=dict(TINY))
    # the feature model holds a copy of the backbone: add its gradients
    params = dict(clf.named_parameters())
    for name, p in feat.named_parameters():
        if p.grad is not None:
            g = params['backbone.' + name].grad
            params['backbone.' + name].grad = p.grad if g is None else g + \
                p.grad
    assert set(grads) == set(params)
    for name, grad in grads.items():
        assert rel_err(params[name].grad, grad) < 1e-12, name


def test_forward_matches_authors_float32():
    golden = torch.load(GOLDEN)
    clf, feat = _golden_models(golden, torch.float32)
    with torch.no_grad():
        errs = [rel_err(clf(golden['input']), golden['logits']),
                rel_err(feat(golden['input'])[1], golden['last_tokens'])]
    # the bound; reached: 6.8e-7
    assert max(errs) <= 1e-4


def test_shared_norm_on_shuffled_tokens_equals_norm_then_shuffle():
    from mmext.models.layers import channel_shuffle
    model = tiny()
    with torch.no_grad():
        model.shared_norm.weight.normal_()
        model.shared_norm.bias.normal_()
    t = torch.randn(2, 7, 32)
    torch.testing.assert_close(
        model._shared_norm_shuffled(channel_shuffle(t)),
        channel_shuffle(model.shared_norm(t)))


def test_cls_token_output_and_errors():
    model = tiny(out_type='cls_token').eval()
    assert not any(n.startswith('norm') for n, _ in model.named_children())
    assert model(torch.randn(2, 3, 40, 56))[0].shape == (2, 32)
    with pytest.raises(ValueError, match='out_type must be one of'):
        tiny(out_type='tokens')
    with pytest.raises(ValueError, match='must be divisible by num_heads'):
        ShuffleViT(arch=dict(TINY, num_heads=3))
    # an input smaller than one patch is padded to it
    assert tiny()(torch.randn(1, 3, 5, 7))[0].shape == (1, 32, 1, 1)


def test_learnable_rescale_starts_equal_to_released():
    torch.manual_seed(0)
    plain = tiny().eval()
    learnable = tiny(rescale='learnable').eval()
    learnable.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(1, 3, 48, 48)
    torch.testing.assert_close(plain(x)[0], learnable(x)[0])


def test_frozen_stages_and_layer_depth():
    model = tiny(frozen_stages=2, out_indices=(0, 1, 2))
    model.train()
    assert not model.pos_embed.requires_grad
    assert not model.embed_norm.weight.requires_grad
    assert not any(p.requires_grad for p in model.blocks[1].parameters())
    assert not model.norm1.weight.requires_grad
    assert all(p.requires_grad for p in model.blocks[2].parameters())
    assert model.shared_norm.weight.requires_grad
    assert not model.blocks[0].training and model.blocks[2].training
    assert model.get_layer_depth('backbone.cls_token', 'backbone.') == (0, 5)
    assert model.get_layer_depth('backbone.blocks.1.attn.qkv.weight',
                                 'backbone.') == (2, 5)
    assert model.get_layer_depth('backbone.shared_norm.weight',
                                 'backbone.') == (3, 5)


def test_classifier_parameter_count_deit_tiny():
    from mmpretrain.registry import MODELS
    from mmengine.registry import DefaultScope
    import mmext.models  # noqa: F401
    cfg = dict(
        type='ImageClassifier',
        backbone=dict(type='mmext.ShuffleViT', arch='deit-tiny',
                      out_type='cls_token'),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=1000,
                  in_channels=384))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    # counted from the authors' deit_tiny_shuffle_patch16_224
    assert sum(p.numel() for p in model.parameters()) == 6_096_232
