"""Every config under configs/ builds through the real mmdet / mmseg
registries, and the configs carry the settings the issue specifies."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

from mmext.apis.launch import adapt_cfg_to_device

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    p
    for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '/_base_/' not in p)


def _rel(path):
    return osp.relpath(path, REPO)


def _registries(scope):
    if scope == 'mmdet':
        from mmdet.registry import MODELS, TRANSFORMS
    else:
        from mmseg.registry import MODELS, TRANSFORMS
    return MODELS, TRANSFORMS


def test_all_configs_found():
    names = {osp.basename(p) for p in CONFIGS}
    assert {
        'dualvit_s_maskrcnn_1x.py', 'dualvit_b_maskrcnn_1x.py',
        'dualvit_s_maskrcnn_3x.py', 'dualvit_s_cascade_maskrcnn_3x.py',
        'dualvit_b_cascade_maskrcnn_3x.py', 'dualvit_s_upernet_ade20k_160k.py',
        'dualvit_b_upernet_ade20k_160k.py'
    } <= names


@pytest.mark.parametrize('path', CONFIGS, ids=_rel)
def test_config_builds(path):
    cfg = Config.fromfile(path)
    scope = cfg.default_scope
    assert scope == ('mmdet' if '/detection/' in path or 'maskrcnn' in path
                     else 'mmseg')
    assert cfg.custom_imports == dict(imports=['mmext.models'],
                                      allow_failed_imports=False)
    assert cfg.model.backbone.type.startswith('mmext.')
    init_default_scope(scope)
    with DefaultScope.overwrite_default_scope(scope):
        MODELS, TRANSFORMS = _registries(scope)
        import mmext.models  # noqa: F401
        model = MODELS.build(cfg.model)  # init_cfg is not run here
        # the neck / heads take what the backbone gives
        model.eval()
        neck = cfg.model.get('neck') or {}
        plain_vit = neck.get('type') == 'mmext.SimpleFeaturePyramid'
        # what the backbone declares is what the config's neck / head take
        declared = list(model.backbone.out_channels)
        if plain_vit:  # SimpleFeaturePyramid on the stride-16 map
            assert declared == [neck.in_channels]
            assert model.backbone.out_strides == (16, )
        else:
            takes = (cfg.model.neck if scope == 'mmdet' else
                     cfg.model.decode_head).in_channels  # FPN / UPerHead
            assert declared == list(takes)
            assert model.backbone.out_strides == (4, 8, 16, 32)
        if scope == 'mmseg':
            aux = cfg.model.auxiliary_head
            fed = [neck.out_channels] * 4 if plain_vit else declared
            assert cfg.model.decode_head.in_channels == fed
            assert aux.in_channels == fed[aux.in_index]
        with torch.no_grad():
            feats = model.backbone(torch.zeros(1, 3, 64, 64))
            if plain_vit:  # one stride-16 map; the neck makes the pyramid
                assert [(f.shape[1], 64 // f.shape[-1])
                        for f in feats] == [(neck.in_channels, 16)]
                feats = model.neck(feats)
        channels = [f.shape[1] for f in feats]
        strides = [64 // f.shape[-1] for f in feats]
        if scope == 'mmdet' and plain_vit:  # ViTDet: the pyramid feeds RPN
            assert channels == [cfg.model.rpn_head.in_channels] * 5
            assert strides == [4, 8, 16, 32, 64]
        else:
            if scope == 'mmdet':
                assert channels == list(cfg.model.neck.in_channels)
            else:
                assert channels == list(cfg.model.decode_head.in_channels)
                assert channels[2] == cfg.model.auxiliary_head.in_channels
            assert strides == [4, 8, 16, 32]
        # every pipeline builds
        from mmengine.dataset import Compose
        for split in ('train', 'val', 'test'):
            Compose(cfg[f'{split}_dataloader'].dataset.pipeline)
        if scope == 'mmseg':
            Compose(cfg.tta_pipeline)
            MODELS.build(dict(cfg.tta_model, module=cfg.model))
        # the optimiser (incl. paramwise options) builds for this model
        from mmengine.optim import build_optim_wrapper
        adapt_cfg_to_device(cfg)
        build_optim_wrapper(model, cfg.optim_wrapper)


def _cfg(name):
    return Config.fromfile(osp.join(REPO, 'configs', name))


def test_detection_1x_settings():
    for size, chans in (('s', [64, 128, 320, 448]), ('b', [64, 128, 320,
                                                           512])):
        cfg = _cfg(f'detection/dualvit_{size}_maskrcnn_1x.py')
        assert cfg.model.type == 'MaskRCNN'
        assert cfg.model.backbone.arch == size
        assert cfg.model.neck.in_channels == chans
        assert cfg.model.backbone.init_cfg == dict(
            type='Pretrained',
            checkpoint=f'checkpoints/dualvit_{size}_in1k.pth')
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
        assert cfg.optim_wrapper.optimizer == dict(type='AdamW',
                                                   lr=2e-4,
                                                   weight_decay=1e-4)
        assert cfg.train_cfg.max_epochs == 12
        assert cfg.auto_scale_lr.base_batch_size == 16
        assert cfg.train_dataloader.batch_size * 8 == 16
        resize = [
            t for t in cfg.train_dataloader.dataset.pipeline
            if t.type == 'Resize'
        ]
        assert resize[0].scale == (1333, 800)


@pytest.mark.parametrize('name', [
    'dualvit_s_maskrcnn_3x.py', 'dualvit_s_cascade_maskrcnn_3x.py',
    'dualvit_b_cascade_maskrcnn_3x.py'
])
def test_detection_3x_settings(name):
    cfg = _cfg('detection/' + name)
    assert cfg.train_cfg.max_epochs == 36
    step = cfg.param_scheduler[-1]
    assert step.type == 'MultiStepLR' and step.milestones == [27, 33]
    opt = cfg.optim_wrapper
    assert opt.optimizer.type == 'AdamW' and opt.optimizer.lr == 1e-4
    assert opt.optimizer.weight_decay == 0.05
    assert opt.paramwise_cfg.norm_decay_mult == 0.
    choice = [
        t for t in cfg.train_dataloader.dataset.pipeline
        if t.type == 'RandomChoice'
    ][0]
    shorts = sorted(min(s) for s in choice.transforms[0][0].scales)
    assert shorts[0] == 480 and shorts[-1] == 800
    assert [t.type for t in choice.transforms[1]
            ] == ['RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize']
    if 'cascade' in name:
        heads = cfg.model.roi_head.bbox_head
        assert cfg.model.type == 'CascadeRCNN' and len(heads) == 3
        for head, stds in zip(heads,
                              ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                               [0.033, 0.033, 0.067, 0.067])):
            assert head.type == 'ConvFCBBoxHead'
            assert (head.num_shared_convs, head.num_shared_fcs) == (4, 1)
            assert head.reg_decoded_bbox is True
            assert head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)
            assert head.bbox_coder.target_stds == stds
            assert head.num_classes == 80


def test_segmentation_settings():
    for size, chans, dpr in (('s', [64, 128, 320,
                                    448], 0.15), ('b', [64, 128, 320,
                                                        512], 0.3)):
        cfg = _cfg(f'segmentation/dualvit_{size}_upernet_ade20k_160k.py')
        m = cfg.model
        assert m.backbone.arch == size and m.backbone.drop_path_rate == dpr
        assert m.backbone.test_tile_size == 768
        assert m.backbone.stem_norm_cfg == dict(type='SyncBN',
                                                requires_grad=True)
        assert m.decode_head.type == 'UPerHead'
        assert m.decode_head.channels == 512
        assert tuple(m.decode_head.pool_scales) == (1, 2, 3, 6)
        assert m.decode_head.in_channels == chans
        assert m.decode_head.num_classes == 150
        assert m.auxiliary_head.type == 'FCNHead'
        assert m.auxiliary_head.in_index == 2
        assert m.auxiliary_head.loss_decode.loss_weight == 0.4
        assert m.data_preprocessor.size == (512, 512)
        opt = cfg.optim_wrapper
        assert opt.optimizer.type == 'AdamW' and opt.optimizer.lr == 6e-5
        assert opt.optimizer.weight_decay == 0.01
        assert opt.paramwise_cfg.norm_decay_mult == 0.
        warm, poly = cfg.param_scheduler
        assert warm.type == 'LinearLR' and warm.end == 1500
        assert poly.type == 'PolyLR' and poly.begin == 1500
        assert poly.end == 160000 and poly.power == 1.0
        assert cfg.train_cfg.max_iters == 160000
        assert cfg.train_dataloader.batch_size * 8 == 16
        assert cfg.tta_model.type == 'SegTTAModel'
        aug = cfg.tta_pipeline[1].transforms
        assert [t.scale for t in aug[0]] == [(int(2048 * r), int(512 * r))
                                             for r in (0.5, 0.75, 1.0, 1.25,
                                                       1.5, 1.75)]
        assert [t.prob for t in aug[1]] == [0., 1.]


@pytest.mark.parametrize('name', [
    'detection/elsa_swin_t_maskrcnn_1x.py',
    'detection/elsa_swin_s_maskrcnn_3x.py',
    'detection/elsa_swin_t_cascade_maskrcnn_3x.py',
    'segmentation/elsa_swin_t_upernet_ade20k_160k.py',
    'segmentation/elsa_swin_s_upernet_ade20k_160k.py',
])
def test_elsa_swin_settings(name):
    cfg = _cfg(name)
    assert cfg.model.backbone.type == 'mmext.ELSASwin'
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    optim = cfg.optim_wrapper.optimizer
    assert optim.type == 'AdamW'
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.
    if name.startswith('detection'):
        assert (optim.lr, optim.weight_decay) == (1e-4, 0.05)
        return
    assert (optim.lr, optim.weight_decay) == (6e-5, 0.01)
    ratios = sorted(
        {t.scale[1] / 512
         for t in cfg.tta_pipeline[1].transforms[0]})
    assert ratios == [0.75, 1.0, 1.25, 1.5, 1.75]
    assert [t.prob for t in cfg.tta_pipeline[1].transforms[1]] == [0, 1]


@pytest.mark.parametrize('size, dims, gate_center', [('t', 192, 30.),
                                                     ('s', 384, 75.)])
def test_avit_settings(size, dims, gate_center):
    """Released gates, halting-loss weights, the plain-ViT pyramid and
    layer-wise lr decay."""
    for name in (f'detection/avit_{size}_maskrcnn_1x.py',
                 f'segmentation/avit_{size}_upernet_ade20k_160k.py'):
        cfg = _cfg(name)
        backbone = cfg.model.backbone
        assert cfg.model.type.startswith('mmext.BackboneLoss')
        assert (backbone.gate_scale, backbone.gate_center) == (10.,
                                                               gate_center)
        assert backbone.halting_loss == dict(ponder_weight=5e-4,
                                             prior_weight=1e-3)
        assert backbone.init_cfg.checkpoint == \
            f'checkpoints/avit_{size}_in1k.pth'
        assert cfg.model.neck.type == 'mmext.SimpleFeaturePyramid'
        assert cfg.model.neck.in_channels == dims
        assert cfg.optim_wrapper.constructor == \
            'mmext.LayerDecayOptimWrapperConstructor'
    assert _cfg(f'detection/avit_{size}_maskrcnn_1x.py').optim_wrapper \
        .paramwise_cfg.layer_decay_rate == 0.7
    seg = _cfg(f'segmentation/avit_{size}_upernet_ade20k_160k.py')
    assert seg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    assert seg.model.decode_head.in_channels == [dims] * 4
