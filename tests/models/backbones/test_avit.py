"""A-ViT backbone (CPU, tiny archs).

Equivalence with the official code: ``tests/data/avit_golden.pth`` holds a
tiny official model (float64, random weights, two images whose tokens halt
at depths 1-4, the class token at 2) run through one official training step
(``engine_act.train_one_epoch``); made by ``tests/data/make_avit_golden.py``.
"""
import os.path as osp

import pytest
import torch

from mmext.converters import get_converter
from mmext.models.backbones.avit import AViT, halting_prior
from tests.data.golden64 import max_rel_error as max_rel

GOLDEN = osp.join(osp.dirname(__file__), '..', '..', 'data', 'avit_golden.pth')
TINY = dict(embed_dims=48, depth=4, num_heads=3, patch_size=16)
# float64 against the official float64 run: the largest error measured is
# 6e-15 (parameter gradients); 1e-12 leaves rounding room and no more
TOL64 = 1e-12
# removal vs masked (and batch vs one image) in fp32, max relative error:
# the issue allows 1e-4; measured here at most 3.8e-7, so 2e-6
TOL32 = 2e-6


def converted(golden, keep_head=False):
    """The golden official weights through the converter."""
    converter = get_converter('avit', img_size=golden['img_size'])
    state, _, _ = converter.convert(golden['state_dict'],
                                    keep_head=keep_head,
                                    arch=golden['arch'])
    return state


@pytest.fixture(scope='module')
def golden():
    return torch.load(GOLDEN, weights_only=True)


def golden_model(golden, dtype=torch.float64, **kwargs):
    cfg = dict(arch=golden['arch'],
               img_size=golden['img_size'],
               gate_scale=golden['gate_scale'],
               gate_center=golden['gate_center'],
               halting_eps=golden['halting_eps'],
               halting_loss=dict(
                   ponder_weight=golden['ponder_token_scale'],
                   prior_weight=golden['distr_prior_alpha'],
                   prior_target_depth=golden['prior_target_depth'],
                   prior_skip_first_image=True))
    cfg.update(kwargs)
    model = AViT(**cfg)
    model.load_state_dict(converted(golden))
    return model.to(dtype)


def golden_head(golden, dtype=torch.float64):
    head = torch.nn.Linear(golden['arch']['embed_dims'], golden['num_classes'])
    state = converted(golden, keep_head=True)
    head.load_state_dict({
        k[len('head.layers.head.'):]: v
        for k, v in state.items() if k.startswith('head.')
    })
    return head.to(dtype)


def as_map(tokens, model, hw):
    """Official ``norm(output)`` tokens -> our featmap layout."""
    patches = tokens[:, 1:]
    return patches.transpose(1, 2).reshape(len(tokens), -1, *hw)


# -- equivalence with the official code ---------------------------------------
def test_training_step_matches_official(golden):
    model = golden_model(golden, out_type='cls_token').train()
    head = golden_head(golden)
    images = golden['images'].clone().requires_grad_(True)
    cls, = model(images)
    logits = head(cls)
    losses = model.losses()
    state = model.halting_state
    assert max_rel(logits, golden['logits']) < TOL64
    assert torch.equal(state['depth'], golden['depths'])
    assert max_rel(state['rho'], golden['rho']) < TOL64
    assert max_rel(
        torch.stack(state['scores']).flatten(1)[:, 16:].mean(1),
        golden['layer_halting']) < TOL64
    assert max_rel(losses['loss_ponder'], golden['loss_ponder']) < TOL64
    assert max_rel(losses['loss_halting_prior'], golden['loss_prior']) < TOL64
    assert losses['mean_depth'].item() == golden['depths'].mean().item()
    total = (logits * golden['logit_weights']).sum() + \
        losses['loss_ponder'] + losses['loss_halting_prior']
    assert max_rel(total, golden['loss_total']) < TOL64
    total.backward()
    assert max_rel(images.grad, golden['grad_images']) < TOL64
    ours = dict(model.named_parameters())
    # the official gradients under our names, through the converter's rules
    renamed = get_converter('avit', img_size=golden['img_size']).convert(
        golden['grads'], keep_head=True, arch=golden['arch'])[0]
    renamed = {
        k[len('backbone.'):] if k.startswith('backbone.') else k: v
        for k, v in renamed.items()
    }
    ours.update({
        f'head.layers.head.{k}': v
        for k, v in head.named_parameters()
    })
    assert set(renamed) == set(ours)
    for name, grad in renamed.items():
        assert max_rel(ours[name].grad, grad) < TOL64, name


@pytest.mark.parametrize('removal_mode', ['padded', 'packed'])
def test_inference_matches_official(golden, removal_mode):
    """Token removal, on a batch whose images halt differently."""
    model = golden_model(golden, removal_mode=removal_mode).eval()
    with torch.no_grad():
        feat, = model(golden['images'])
    hw = feat.shape[-2:]
    assert torch.equal(model.halting_state['depth'], golden['depths'])
    assert max_rel(feat, as_map(golden['features'], model, hw)) < TOL64
    assert torch.equal(model.depth_map(), golden['depths'][:,
                                                           1:].reshape(2, *hw))


def test_prior_over_all_images(golden):
    """Default: the prior averages the halting scores over every image.
    The official code skips image 0 (it slices the batch); halting is per
    image, so our prior on image 1 alone is the official one on both."""
    model = golden_model(golden).train()
    model.halting_loss['prior_skip_first_image'] = False
    model(golden['images'][1:])
    assert max_rel(model.losses()['loss_halting_prior'],
                   golden['loss_prior']) < TOL64
    model(golden['images'])
    assert model.losses()['loss_halting_prior'].item() != pytest.approx(
        golden['loss_prior'].item(), rel=1e-3)


def test_halting_prior(golden):
    assert max_rel(halting_prior(4, 3), golden['prior_target']) < TOL64
    prior = halting_prior(12, 8)  # the released models' prior
    assert prior[:8].sum().item() == pytest.approx(0.98)
    assert prior.argmax().item() == 8
    with pytest.raises(ValueError, match='prior_target_depth'):
        AViT(arch=TINY, halting_loss=dict(prior_target_depth=4))


# -- token removal ----------------------------------------------------------
def fp32_model(golden, **kwargs):
    return golden_model(golden, torch.float32, **kwargs).eval()


@pytest.mark.parametrize('shape', [(2, 3, 48, 80), (1, 3, 97, 131),
                                   (3, 3, 33, 50)])
@pytest.mark.parametrize('removal_mode', ['padded', 'packed'])
def test_removal_equals_masked(golden, shape, removal_mode):
    torch.manual_seed(shape[2])
    x = torch.randn(shape) * torch.linspace(0.3, 1.2, shape[0])[:, None, None,
                                                                None]
    model = fp32_model(golden, removal_mode=removal_mode, out_indices=(1, 3))
    with torch.no_grad():
        removed = model(x)
        depth = model.halting_state['depth']
        model.token_removal = False
        masked = model(x)
    assert torch.equal(depth, model.halting_state['depth'])
    assert depth.min() < depth.max()  # halting did differ between tokens
    for a, b in zip(removed, masked):
        assert a.shape == b.shape == (shape[0], 48, -(-shape[2] // 16),
                                      -(-shape[3] // 16))
        assert max_rel(a, b) < TOL32


@pytest.mark.parametrize('removal_mode', ['padded', 'packed'])
def test_batch_with_different_halting(golden, removal_mode):
    """Each image of a batch gives what it gives alone."""
    torch.manual_seed(0)
    x = torch.randn(3, 3, 64, 96) * torch.tensor([1., .4, .7])[:, None, None,
                                                               None]
    model = fp32_model(golden, removal_mode=removal_mode)
    with torch.no_grad():
        batch, = model(x)
        depth = model.halting_state['depth']
        alone = []
        for image in x:
            alone.append(model(image[None])[0])
            assert torch.equal(model.halting_state['depth'][0],
                               depth[len(alone) - 1])
    counts = (depth > torch.arange(4)[:, None, None]).sum(-1)  # per block
    assert (counts != counts[:, :1]).any()  # images kept different numbers
    assert max_rel(batch, torch.cat(alone)) < TOL32


@pytest.mark.parametrize('removal_mode', ['padded', 'packed'])
def test_block_on_a_batch_with_a_finished_image(golden, removal_mode):
    """Image 0 has no running token left while images 1 and 2 go on."""
    model = fp32_model(golden, removal_mode=removal_mode)
    block = model.blocks[0]
    x = torch.randn(5, 48)
    image = torch.tensor([1, 1, 1, 2, 2])
    with torch.no_grad():
        y = model._run_block(block, x, image, 3)
        alone = torch.cat([block(x[None, :3])[0], block(x[None, 3:])[0]])
    assert torch.isfinite(y).all() and max_rel(y, alone) < TOL32


def test_everything_halts_early(golden):
    """Once no token runs, the remaining blocks are skipped."""
    # h = sigmoid(20) for every token: all halt at block 1
    model = fp32_model(golden, gate_scale=0., gate_center=-20.)
    calls = []
    for block in model.blocks:
        block.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        feat, = model(torch.randn(1, 3, 32, 32))
    assert len(calls) == 1 and model.halting_state['depth'].max() == 1
    assert torch.isfinite(feat).all()


# -- construction and training-mode behaviour -------------------------------
def test_losses_need_a_training_forward(golden):
    model = fp32_model(golden)
    with pytest.raises(RuntimeError, match='losses'):
        model.losses()
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(RuntimeError, match='training mode'):
        model.losses()


def test_bad_arguments():
    with pytest.raises(ValueError, match='out_type'):
        AViT(arch=TINY, out_type='map')
    with pytest.raises(ValueError, match='with_cls_token'):
        AViT(arch=TINY, out_type='cls_token', with_cls_token=False)
    with pytest.raises(ValueError, match='removal_mode'):
        AViT(arch=TINY, removal_mode='loop')
    with pytest.raises(ValueError, match='halting_loss'):
        AViT(arch=TINY, halting_loss=dict(ponder=1.))
    with pytest.raises(ValueError, match='divisible'):
        AViT(arch=dict(TINY, num_heads=5))


def test_without_cls_token():
    model = AViT(arch=TINY, with_cls_token=False).eval()
    model.init_weights()
    with torch.no_grad():
        feat, = model(torch.randn(1, 3, 40, 56))
    assert feat.shape == (1, 48, 3, 4)
    assert model.halting_state['depth'].shape == (1, 12)


def test_training_with_checkpointing_and_drop_path(golden):
    model = golden_model(golden,
                         torch.float32,
                         with_cp=True,
                         drop_path_rate=0.2).train()
    x = torch.randn(2, 3, 48, 80)
    feat, = model(x)
    loss = feat.mean() + sum(v
                             for k, v in model.losses().items() if 'loss' in k)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize('arch, params', [('tiny', 5_717_416),
                                          ('small', 22_050_664)])
def test_classifier_parameter_count(arch, params):
    """As an mmpretrain ImageClassifier: exactly DeiT's parameters."""
    pytest.importorskip('mmpretrain')
    from mmpretrain.registry import MODELS
    import mmext.models  # noqa: F401
    cfg = dict(type='ImageClassifier',
               backbone=dict(type='mmext.AViT',
                             arch=arch,
                             out_type='cls_token'),
               head=dict(type='VisionTransformerClsHead',
                         num_classes=1000,
                         in_channels=192 if arch == 'tiny' else 384))
    from mmengine.registry import DefaultScope
    with torch.device('meta'), \
            DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    assert sum(p.numel() for p in model.parameters()) == params


def test_layer_depths_of_the_embeddings_and_the_final_norm():
    """The stem is layer 0; the final norm, which every output uses,
    shares the depth of the last block (the contract test checks blocks)."""
    model = AViT(arch=TINY)
    n = TINY['depth'] + 2
    for name in ('cls_token', 'pos_embed', 'patch_embed.projection.weight'):
        assert model.get_layer_depth('backbone.' + name,
                                     'backbone.') == (0, n)
    assert model.get_layer_depth('backbone.norm.weight',
                                 'backbone.') == (TINY['depth'], n)
