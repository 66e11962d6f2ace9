"""Layer-wise lr decay (mmext.LayerDecayOptimWrapperConstructor) switched on
for the real detection / segmentation configs of every family (the tiny
archs of tests/families.py): each trainable parameter is in exactly one
param group, the stem, the first block, the last block and the neck / heads
get the lr of the formula ``lr * rate ** (num_blocks + 1 - depth)``, and the
configs' other paramwise options (no weight decay on norms) still apply.

A new family is one more ``Case``."""
import copy
import os.path as osp
from typing import NamedTuple, Tuple, Union

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmext.engine.optim import LayerDecayOptimWrapperConstructor
from mmext.apis.launch import adapt_cfg_to_device
from tests.families import FAMILIES, Family

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RATE = 0.75
HEADS = ('neck.', 'rpn_head.', 'roi_head.', 'decode_head.', 'auxiliary_head.')
FAMILY = {f.type: f for f in FAMILIES}


class Case(NamedTuple):
    family: Family
    config: str  # under configs/
    stem: Union[str, Tuple[str, ...]]  # parameter-name prefixes, relative
    # to the backbone
    first_block: str = 'stages.0.blocks.0.'
    last_block: str = 'stages.{last_stage}.blocks.{last_block}.'

    @property
    def id(self):
        return f'{self.family.type}-{osp.basename(self.config)}'


CASES = [
    Case(FAMILY['DualViT'], 'detection/dualvit_s_maskrcnn_1x.py', 'stem.'),
    Case(FAMILY['DualViT'], 'segmentation/dualvit_s_upernet_ade20k_160k.py',
         'stem.'),
    Case(FAMILY['ELSASwin'], 'detection/elsa_swin_t_maskrcnn_1x.py',
         'patch_embed.'),
] + [
    Case(FAMILY['AViT'], config, ('patch_embed.', 'cls_token', 'pos_embed'),
         'blocks.0.', 'blocks.{last_stage}.')
    for config in ('detection/avit_t_maskrcnn_1x.py',
                   'segmentation/avit_t_upernet_ade20k_160k.py')
]


def _build(case: Case, **paramwise):
    cfg = Config.fromfile(osp.join(REPO, 'configs', case.config))
    scope = cfg.default_scope
    init_default_scope(scope)
    cfg.model.backbone.update(arch=case.family.arch, init_cfg=None)
    if 'test_tile_size' in cfg.model.backbone:
        cfg.model.backbone.test_tile_size = None
    import mmext.models  # noqa: F401
    from mmext.registry import MODELS as MMEXT_MODELS
    channels = list(
        MMEXT_MODELS.build(copy.deepcopy(cfg.model.backbone)).out_channels)
    neck = cfg.model.get('neck') or {}
    plain_vit = neck.get('type') == 'mmext.SimpleFeaturePyramid'
    if plain_vit:  # one map; the neck makes the pyramid (channels kept)
        neck.in_channels = channels[0]
        channels = [neck.out_channels] * 4
    if scope == 'mmdet':
        from mmdet.registry import MODELS
        if not plain_vit:
            cfg.model.neck.in_channels = channels
    else:
        from mmseg.registry import MODELS
        cfg.model.decode_head.update(in_channels=channels, channels=16)
        cfg.model.auxiliary_head.update(in_channels=channels[2], channels=16)
    model = MODELS.build(cfg.model)
    adapt_cfg_to_device(cfg)  # AMP -> fp32 on CPU
    # how docs/layer_decay.md switches it on for any config
    cfg.optim_wrapper.constructor = 'mmext.LayerDecayOptimWrapperConstructor'
    cfg.optim_wrapper.setdefault('paramwise_cfg', {})
    cfg.optim_wrapper.paramwise_cfg.update(layer_decay_rate=RATE, **paramwise)
    return cfg, model, build_optim_wrapper(model, cfg.optim_wrapper)


@pytest.mark.parametrize('case', CASES, ids=lambda c: c.id)
def test_lr_of_every_parameter_follows_the_depth(case):
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
    depths = model.backbone.depths
    n = sum(depths)
    last_block = case.last_block.format(last_stage=len(depths) - 1,
                                        last_block=depths[-1] - 1)
    checked = dict(stem=0, first=0, last=0, heads=0)
    for name_ in names:
        if not name_.startswith('backbone.'):
            assert name_.startswith(HEADS), name_
            expected, key = base_lr, 'heads'
        else:
            rel = name_[len('backbone.'):]
            if rel.startswith(case.stem):
                expected, key = base_lr * RATE**(n + 1), 'stem'
            elif rel.startswith(case.first_block):
                expected, key = base_lr * RATE**n, 'first'
            elif rel.startswith(last_block):
                expected, key = base_lr * RATE, 'last'
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
    first = 'backbone.' + case.first_block
    block_norm = next(n_ for n_ in names if n_.startswith(first + 'norm'))
    block_linear = next(n_ for n_ in names if n_.startswith(first)
                        and n_.endswith('weight') and '.norm' not in n_)
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


def test_switched_on_from_the_command_line():
    """``--cfg-options optim_wrapper.constructor=... paramwise_cfg...``
    passes the unknown-key check (build_optim_wrapper takes those keys),
    while a typo next to them is still refused."""
    import os.path as osp

    from mmext.apis.config_check import ConfigError, check_cfg_options, \
        load_config
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = load_config(osp.join(repo, 'configs/detection/'
                               'dualvit_s_maskrcnn_1x.py'))
    check_cfg_options(cfg, {
        'optim_wrapper.constructor': 'mmext.LayerDecayOptimWrapperConstructor',
        'optim_wrapper.paramwise_cfg.layer_decay_rate': 0.8})
    with pytest.raises(ConfigError, match='constructr'):
        check_cfg_options(cfg, {'optim_wrapper.constructr': 'x'})
