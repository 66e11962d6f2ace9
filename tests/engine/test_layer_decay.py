"""Layer-wise lr decay (mmext.LayerDecayOptimWrapperConstructor) switched on
for the real detection / segmentation configs of every family (tiny archs):
each trainable parameter is in exactly one param group, the first block, the
last block, the stem and the heads get the lr of the formula
``lr * rate ** (num_blocks + 1 - depth)``, and the configs' other paramwise
options (no weight decay on norms) still apply.

A new family is one more ``Case``."""
import os.path as osp
from typing import NamedTuple

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmext.engine.optim import LayerDecayOptimWrapperConstructor
from mmext.utils.launch import adapt_cfg_to_device

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RATE = 0.75
HEADS = ('neck.', 'rpn_head.', 'roi_head.', 'decode_head.', 'auxiliary_head.')


class Case(NamedTuple):
    config: str  # under configs/
    arch: dict  # a tiny arch of the family
    channels: list  # what the tiny backbone outputs (neck / head input)
    stem: str  # parameter-name prefixes, relative to the backbone
    first_block: str
    last_block: str

    @property
    def num_blocks(self):
        return sum(self.arch['depths'])


DUALVIT = dict(stem_width=8, embed_dims=[16, 32, 48, 64],
               num_heads=[1, 2, 3, 4], mlp_ratios=[2, 2, 2, 2],
               depths=[1, 1, 2, 1])
ELSA = dict(embed_dims=8, depths=[1, 1, 1, 2], num_heads=[1, 2, 2, 4],
            group_width=4)

CASES = {
    'dualvit-maskrcnn': Case('detection/dualvit_s_maskrcnn_1x.py', DUALVIT,
                             [16, 32, 48, 64], 'stem.', 'stages.0.blocks.0.',
                             'stages.3.blocks.0.'),
    'dualvit-upernet': Case('segmentation/dualvit_s_upernet_ade20k_160k.py',
                            DUALVIT, [16, 32, 48, 64], 'stem.',
                            'stages.0.blocks.0.', 'stages.3.blocks.0.'),
    'elsa_swin-maskrcnn': Case('detection/elsa_swin_t_maskrcnn_1x.py', ELSA,
                               [8, 16, 32, 64], 'patch_embed.',
                               'stages.0.blocks.0.', 'stages.3.blocks.1.'),
}


def _build(case: Case, **paramwise):
    cfg = Config.fromfile(osp.join(REPO, 'configs', case.config))
    scope = cfg.default_scope
    init_default_scope(scope)
    cfg.model.backbone.update(arch=case.arch, init_cfg=None)
    if scope == 'mmdet':
        cfg.model.neck.in_channels = case.channels
    else:
        cfg.model.backbone.test_tile_size = None
        cfg.model.decode_head.update(in_channels=case.channels, channels=16)
        cfg.model.auxiliary_head.update(in_channels=case.channels[2],
                                        channels=16)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    import mmext.models  # noqa: F401
    model = MODELS.build(cfg.model)
    adapt_cfg_to_device(cfg)  # AMP -> fp32 on CPU
    # how docs/layer_decay.md switches it on for any config
    cfg.optim_wrapper.constructor = 'mmext.LayerDecayOptimWrapperConstructor'
    cfg.optim_wrapper.setdefault('paramwise_cfg', {})
    cfg.optim_wrapper.paramwise_cfg.update(layer_decay_rate=RATE, **paramwise)
    return cfg, model, build_optim_wrapper(model, cfg.optim_wrapper)


@pytest.mark.parametrize('name', list(CASES))
def test_lr_of_every_parameter_follows_the_depth(name):
    case = CASES[name]
    cfg, model, wrapper = _build(case)
    base_lr = cfg.optim_wrapper.optimizer.lr
    base_wd = cfg.optim_wrapper.optimizer.weight_decay
    groups = wrapper.optimizer.param_groups

    # no parameter left out (frozen ones stay out) or counted twice
    seen = [id(p) for g in groups for p in g['params']]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(seen) == len(set(seen)) and set(seen) == trainable

    lr = {n: g['lr'] for g in groups for n in [g['param_name']]}
    wd = {n: g['weight_decay'] for g in groups for n in [g['param_name']]}
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    n = case.num_blocks
    checked = dict(stem=0, first=0, last=0, heads=0)
    for name_ in names:
        rel = name_[len('backbone.'):]
        if name_.startswith('backbone.' + case.stem):
            expected, key = base_lr * RATE**(n + 1), 'stem'
        elif rel.startswith(case.first_block):
            expected, key = base_lr * RATE**n, 'first'
        elif rel.startswith(case.last_block):
            expected, key = base_lr * RATE, 'last'
        elif name_.startswith(HEADS):
            expected, key = base_lr, 'heads'
        else:
            # stage norms / downsampling: some depth in between
            assert any(lr[name_] == pytest.approx(base_lr * RATE**k)
                       for k in range(1, n + 1)), name_
            continue
        assert lr[name_] == pytest.approx(expected, rel=1e-12), name_
        checked[key] += 1
    assert all(checked.values()), checked

    # the config's other paramwise options still hold
    norm_mult = cfg.optim_wrapper.paramwise_cfg.get('norm_decay_mult')
    block_norm = next(n_ for n_ in names
                      if n_.startswith('backbone.stages.0.blocks.0.norm'))
    block_linear = next(n_ for n_ in names
                        if n_.startswith('backbone.stages.0.blocks.0.')
                        and n_.endswith('weight')
                        and '.norm' not in n_)
    assert wd[block_linear] == base_wd
    assert wd[block_norm] == (base_wd if norm_mult is None else
                              base_wd * norm_mult)


def test_the_official_recipes_stay_without_decay():
    for config in ('detection/dualvit_s_maskrcnn_1x.py',
                   'detection/elsa_swin_t_maskrcnn_1x.py',
                   'segmentation/dualvit_s_upernet_ade20k_160k.py'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', config))
        assert 'constructor' not in cfg.optim_wrapper
        assert 'layer_decay_rate' not in cfg.optim_wrapper.get(
            'paramwise_cfg', {})


def test_why_not_mmpretrains_constructor_as_is():
    # mmpretrain asks the model itself for get_layer_depth: detectors and
    # segmentors have none
    from mmpretrain.engine.optimizers import \
        LearningRateDecayOptimWrapperConstructor as Upstream
    init_default_scope('mmdet')
    model = torch.nn.Module()
    model.backbone = torch.nn.Linear(2, 2)
    model.backbone.get_layer_depth = lambda name, prefix='': (0, 2)
    opt = dict(type='OptimWrapper',
               optimizer=dict(type='SGD', lr=1., weight_decay=0.))
    with pytest.raises(NotImplementedError):
        Upstream(opt, dict(layer_decay_rate=0.9))(model)
    # ours reads the backbone's: depth 0 of 2 -> lr * 0.9 ** 1
    wrapper = LayerDecayOptimWrapperConstructor(
        opt, dict(layer_decay_rate=0.9))(model)
    assert [g['lr'] for g in wrapper.optimizer.param_groups] == [0.9, 0.9]


def test_clear_errors():
    opt = dict(type='OptimWrapper',
               optimizer=dict(type='SGD', lr=1., weight_decay=0.))
    model = torch.nn.Module()
    model.backbone = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match='no get_layer_depth'):
        LayerDecayOptimWrapperConstructor(opt, dict(layer_decay_rate=0.9))(
            model)
    with pytest.raises(ValueError, match='layer_decay_rate is missing'):
        LayerDecayOptimWrapperConstructor(opt, dict(norm_decay_mult=0.))
    with pytest.raises(ValueError, match="'lr_mult'"):
        LayerDecayOptimWrapperConstructor(
            opt, dict(layer_decay_rate=0.9,
                      custom_keys={'head': dict(lr_mult=10.)}))
    with pytest.raises(ValueError, match='dwconv_decay_mult'):
        LayerDecayOptimWrapperConstructor(
            opt, dict(layer_decay_rate=0.9, dwconv_decay_mult=0.))
    with pytest.raises(ValueError, match='weight_decay explicitly'):
        LayerDecayOptimWrapperConstructor(
            dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=1.)),
            dict(layer_decay_rate=0.9))
