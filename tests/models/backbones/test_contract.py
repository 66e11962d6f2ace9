"""The backbone contract, for every family of ``tests/families.py``: outputs
at any size, index checks, freezing and ``norm_eval``, layer depths of every
parameter, ``with_cp``, and building from the downstream registries."""
import importlib
import math
import re

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmext.models.backbones.base import BaseBackbone
from tests.families import FAMILIES

pytestmark = pytest.mark.parametrize('family', FAMILIES,
                                     ids=[f.id for f in FAMILIES])


@pytest.mark.parametrize('shape', [(1, 3, 97, 131), (2, 3, 64, 80)])
def test_outputs_at_any_size(family, shape):
    """Every output has the declared channels and stride (timm's
    ``feature_info``): ``ceil(H / stride)`` positions for any ``H``."""
    model = family.build().eval()
    assert isinstance(model, BaseBackbone)
    with torch.no_grad():
        outs = model(torch.randn(shape))
    assert isinstance(outs, tuple)
    assert len(outs) == len(model.out_indices) == len(model.out_channels) \
        == len(model.out_strides)
    h, w = shape[2:]
    for out, c, stride in zip(outs, model.out_channels, model.out_strides):
        assert out.shape == (shape[0], c, math.ceil(h / stride),
                             math.ceil(w / stride))
        assert out.is_contiguous()


def test_batch_items_are_independent(family):
    model = family.build().eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        both = model(x)
        second = model(x[1:])
    for a, b in zip(both, second):
        torch.testing.assert_close(a[1:], b, rtol=1e-4, atol=1e-5)


def test_out_indices(family):
    full = family.build()
    n = full.num_stages
    model = family.build(out_indices=(0, -1)).eval()
    assert model.out_indices == (0, n - 1)
    # the declaration follows out_indices
    assert model.out_channels == (full.stage_channels()[0],
                                  full.stage_channels()[-1])
    assert model.out_strides == (full.stage_strides()[0],
                                 full.stage_strides()[-1])
    outs = model(torch.randn(1, 3, 64, 64))
    assert tuple(o.shape[1] for o in outs) == model.out_channels
    for bad in ((n, ), (0, 0), ()):
        with pytest.raises(ValueError, match='out_indices'):
            family.build(out_indices=bad)


def test_bad_arch_names_the_choices(family):
    with pytest.raises(ValueError, match=f'unknown {family.type} arch'):
        family.build(arch='no-such-arch')
    partial = dict(list(family.arch.items())[1:])
    with pytest.raises(ValueError, match='missing'):
        family.build(arch=partial)
    with pytest.raises(ValueError, match='unexpected'):
        family.build(arch=dict(family.arch, bogus=1))
    with pytest.raises(TypeError, match='str or a dict'):
        family.build(arch=3)


def test_frozen_stages_stay_frozen_after_train(family):
    n = family.build().num_stages
    with pytest.raises(ValueError, match='frozen_stages'):
        family.build(frozen_stages=n + 1)
    model = family.build(frozen_stages=1)
    model.train()
    frozen = model.stem_modules() + model.stage_modules(0)
    frozen_ids = set()
    for part in frozen:
        params = [part] if isinstance(part, torch.nn.Parameter) else list(
            part.parameters())
        frozen_ids |= {id(p) for p in params}
        assert all(not p.requires_grad for p in params)
        if isinstance(part, torch.nn.Module):
            assert all(not m.training for m in part.modules())
    live = [p for p in model.parameters() if id(p) not in frozen_ids]
    assert live and all(p.requires_grad for p in live)
    buffers = [(b, b.clone()) for part in frozen
               if isinstance(part, torch.nn.Module) for b in part.buffers()]
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.sum() for o in outs).backward()
    for value, before in buffers:  # no statistics updated
        torch.testing.assert_close(value, before)
    assert all(p.grad is None for p in model.parameters()
               if id(p) in frozen_ids)
    assert any(p.grad is not None for p in live)


def test_norm_eval_keeps_batchnorm_in_eval(family):
    model = family.build(norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not bns:
        pytest.skip(f'{family.type} has no BatchNorm layer')
    assert all(not m.training for m in bns)
    assert model.training
    assert not all(not m.training for m in model.modules())


def test_layer_depth_covers_every_parameter(family):
    model = family.build()
    num_layers = sum(model.depths) + 2
    block_depth = {}
    for name, _ in model.named_parameters():
        depth = model.match_layer_depth(name)
        assert depth is not None, f'no layer-depth rule matches {name}'
        assert 0 <= depth <= num_layers - 2, name
        assert model.get_layer_depth('backbone.' + name,
                                     'backbone.') == (depth, num_layers)
        m = re.match(r'((?:stages\.\d+\.)?blocks\.\d+)\.', name)
        if m:
            block_depth.setdefault(m.group(1), set()).add(depth)
    # every block is one layer, numbered 1..N in order
    assert all(len(d) == 1 for d in block_depth.values())
    order = sorted(block_depth, key=lambda k: [int(i) for i in
                                               re.findall(r'\d+', k)])
    built = [d.pop() for d in (block_depth[k] for k in order)]
    assert built == list(range(1, len(built) + 1))
    # an output norm shares the depth of its stage's last block
    for name, _ in model.named_parameters():
        m = re.match(r'(?:norm(\d+)|stages\.(\d+)\.norm)\.', name)
        if m:
            stage = int(m.group(1) or m.group(2))
            assert model.match_layer_depth(name) == sum(
                model.depths[:stage + 1]), name
    stem = [n for n, _ in model.named_parameters()
            if n.split('.')[0] in model.stem_names]
    assert stem and all(model.match_layer_depth(n) == 0 for n in stem)
    # a head outside the backbone is the last layer
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (
        num_layers - 1, num_layers)


def test_with_cp_gives_the_same_gradients(family):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 56)
    grads = []
    reference = family.build()
    reference.init_weights()
    for with_cp in (False, True):
        model = family.build(with_cp=with_cp)
        model.load_state_dict(reference.state_dict())
        model.train()
        for m in model.modules():  # BN statistics aside
            if isinstance(m, _BatchNorm):
                m.eval()
        loss = sum((o * o).mean() for o in model(x))
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        assert g is not None, f'{name} got no gradient'
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-6,
                                   msg=name)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_builds_from_downstream_registries(family, scope):
    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    # as a config of that library would: its scope is the default one
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type=f'mmext.{family.type}',
                                    arch=family.arch))
    assert type(model).__name__ == family.type


def test_pretrained_init_cfg_loads_the_weights(family, tmp_path):
    source = family.build()
    source.init_weights()
    path = tmp_path / 'weights.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    model = family.build(init_cfg=dict(type='Pretrained',
                                       checkpoint=str(path)))
    model.init_weights()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)
