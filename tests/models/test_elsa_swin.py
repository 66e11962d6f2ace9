"""Tests of mmext.ELSASwin (tiny archs, small inputs)."""
import importlib
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmext.models.backbones.elsa_swin import ELSASwin
from mmext.models.layers.window_attention import (ShiftWindowMSA,
                                                  relative_position_index)

TINY = dict(embed_dims=8, depths=[1, 1, 1, 2], num_heads=[1, 2, 2, 4],
            group_width=4)
GOLDEN = osp.join(osp.dirname(__file__), '..', 'data',
                  'elsa_swin_golden.pth')
CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs')
NEW_CONFIGS = [
    'detection/elsa_swin_t_maskrcnn_1x.py',
    'detection/elsa_swin_t_maskrcnn_3x.py',
    'detection/elsa_swin_s_maskrcnn_1x.py',
    'detection/elsa_swin_s_maskrcnn_3x.py',
    'detection/elsa_swin_t_cascade_maskrcnn_3x.py',
    'detection/elsa_swin_s_cascade_maskrcnn_3x.py',
    'segmentation/elsa_swin_t_upernet_ade20k_160k.py',
    'segmentation/elsa_swin_s_upernet_ade20k_160k.py',
]


def tiny(**kwargs):
    kwargs.setdefault('drop_path_rate', 0.)
    return ELSASwin(arch=dict(TINY), **kwargs)


# -- shapes ---------------------------------------------------------------
@pytest.mark.parametrize('shape', [(1, 3, 64, 64), (2, 3, 45, 61),
                                   (1, 3, 33, 17), (1, 3, 3, 5)])
def test_output_shapes_any_size(shape):
    model = tiny().eval()
    with torch.no_grad():
        outs = model(torch.randn(*shape))
    h, w = shape[2:]
    h, w = -(-h // 4), -(-w // 4)
    assert len(outs) == 4
    for i, out in enumerate(outs):
        assert out.shape == (shape[0], 8 * 2**i, h, w)
        h, w = -(-h // 2), -(-w // 2)


def test_out_indices_and_negative():
    model = tiny(out_indices=(1, -1)).eval()
    assert model.out_indices == (1, 3)
    assert not hasattr(model, 'norm0') and hasattr(model, 'norm3')
    outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [16, 64]


def test_train_backward_with_cp_and_droppath():
    model = tiny(drop_path_rate=0.2, with_cp=True)
    model.init_weights()
    model.train()
    outs = model(torch.randn(2, 3, 37, 29))
    sum(o.mean() for o in outs).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_batch_independence():
    model = tiny().eval()
    x = torch.randn(2, 3, 40, 52)
    with torch.no_grad():
        both = model(x)
        one = model(x[1:])
    for a, b in zip(both, one):
        torch.testing.assert_close(a[1:], b, rtol=1e-5, atol=1e-5)


def test_frozen_stages_and_train_mode():
    model = tiny(frozen_stages=2)
    model.train()
    frozen = [model.patch_embed, model.stages[0], model.stages[1],
              model.norm0, model.norm1]
    for m in frozen:
        assert not m.training
        assert all(not p.requires_grad for p in m.parameters())
    assert model.stages[2].training
    assert all(p.requires_grad for p in model.stages[2].parameters())


def test_norm_eval_keeps_bn_in_eval():
    model = tiny(norm_eval=True, norm_cfg=dict(type='BN1d'))
    # BN1d cannot normalise (B, L, C) tokens; only the mode is checked here
    model.train()
    bns = [m for m in model.modules()
           if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(not m.training for m in bns)


def test_get_layer_depth():
    model = tiny()
    n = sum(TINY['depths']) + 2
    assert model.get_layer_depth('backbone.patch_embed.projection.weight',
                                 'backbone.') == (0, n)
    assert model.get_layer_depth('backbone.stages.0.blocks.0.attn.qkv.weight',
                                 'backbone.') == (1, n)
    assert model.get_layer_depth(
        'backbone.stages.3.blocks.1.attn.w_msa.qkv.weight',
        'backbone.') == (5, n)
    assert model.get_layer_depth('backbone.stages.1.downsample.norm.weight',
                                 'backbone.') == (2, n)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (n - 1, n)


# -- architecture -----------------------------------------------------------
@pytest.mark.parametrize('arch,count', [('t', 28_373_322),
                                        ('s', 52_106_970),
                                        ('b', 91_659_256)])
def test_param_counts_equal_official(arch, count):
    with torch.device('meta'):
        model = ELSASwin(arch=arch)
    assert sum(p.numel() for p in model.parameters()) == count


def test_qk_dims_and_groups():
    with torch.device('meta'):
        model = ELSASwin(arch='b')
    attn = model.stages[0].blocks[0].attn
    assert attn.dim_qk == 88  # 128 // 3 * 2 = 84 -> multiple of 8
    assert attn.attn_gen[0].groups == 11
    assert attn.scale == 1.
    w_msa = model.stages[3].blocks[0].attn.w_msa
    assert w_msa.scale == pytest.approx(32**-0.5)
    assert model.stages[3].blocks[1].attn.shift_size == 3


@pytest.mark.parametrize('arch,pattern', [
    ('x', 'unknown ELSASwin arch'),
    (dict(embed_dims=8, depths=[1, 1]), 'missing'),
    (dict(embed_dims=8, depths=[1, 1], num_heads=[1], group_width=4),
     'same length'),
    (dict(embed_dims=8, depths=[1], num_heads=[3], group_width=4),
     'divisible by num_heads'),
    (dict(embed_dims=8, depths=2, num_heads=[1], group_width=4),
     'lists of positive'),
])
def test_bad_arch(arch, pattern):
    with pytest.raises(ValueError, match=pattern):
        ELSASwin(arch=arch, out_indices=(0, ))


def test_bad_arguments():
    with pytest.raises(ValueError, match='out_indices'):
        tiny(out_indices=(4, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        tiny(frozen_stages=5)
    with pytest.raises(ValueError, match='elsa_impl'):
        tiny(elsa_impl='cuda')
    with pytest.raises(ValueError, match='supports only lam=0'):
        tiny(elsa_impl='carafe', lam=1.)
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        tiny()(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match='in_channels'):
        tiny()(torch.randn(1, 4, 32, 32))


def test_forced_carafe_without_cuda_errors():
    from mmext.ops import carafe_available
    if carafe_available()[0]:
        pytest.skip('CUDA is available here')
    model = tiny(elsa_impl='carafe').eval()
    with pytest.raises(RuntimeError, match="impl='carafe'"):
        model(torch.randn(1, 3, 32, 32))


def test_general_lambda_form_runs():
    model = tiny(lam=1., gamma=1.).eval()
    attn = model.stages[0].blocks[0].attn
    assert attn.ghost_mul is not None and attn.ghost_add is not None
    outs = model(torch.randn(1, 3, 24, 20))
    assert all(torch.isfinite(o).all() for o in outs)


# -- window attention -------------------------------------------------------
def test_relative_position_index_is_query_minus_key():
    idx = relative_position_index(3)  # 5x5 table
    # query (0, 0), key (2, 1): offset (-2, -1) -> row 0, column 1
    assert idx[0, 2 * 3 + 1] == 0 * 5 + 1
    # query (2, 1), key (0, 0): offset (2, 1) -> row 4, column 3
    assert idx[2 * 3 + 1, 0] == 4 * 5 + 3


def test_shift_window_matches_naive_masked_attention():
    """A shifted window layer equals attention over each (padded, rolled)
    window computed with an explicit loop and region mask."""
    torch.manual_seed(0)
    layer = ShiftWindowMSA(8, 2, window_size=3, shift_size=1).eval()
    layer.init_weights()
    h, w = 5, 4
    x = torch.randn(1, h * w, 8)
    out = layer(x, (h, w))
    # naive: pad to 6x6, roll by -1, label regions before the roll
    xm = F.pad(x.view(1, h, w, 8), (0, 0, 0, 2, 0, 1))
    hp, wp = 6, 6
    label = torch.zeros(hp, wp)
    for r, hs in enumerate((slice(0, -3), slice(-3, -1), slice(-1, None))):
        for c, ws in enumerate((slice(0, -3), slice(-3, -1),
                                slice(-1, None))):
            label[hs, ws] = r * 3 + c
    xr = torch.roll(xm, (-1, -1), (1, 2))
    res = torch.zeros_like(xr)
    wm = layer.w_msa
    table = wm.relative_position_bias_table
    for wy in range(0, hp, 3):
        for wx in range(0, wp, 3):
            tok = xr[0, wy:wy + 3, wx:wx + 3].reshape(9, 8)
            lab = label[wy:wy + 3, wx:wx + 3].reshape(9)
            q, k, v = wm.qkv(tok).view(9, 3, 2, 4).unbind(1)
            for hd in range(2):
                logits = q[:, hd] @ k[:, hd].T * wm.scale
                for i in range(9):
                    for j in range(9):
                        dy = i // 3 - j // 3 + 2
                        dx = i % 3 - j % 3 + 2
                        logits[i, j] += table[dy * 5 + dx, hd]
                logits = logits - 100. * (lab[:, None] != lab[None])
                att = logits.softmax(-1) @ v[:, hd]
                res[0, wy:wy + 3, wx:wx + 3, hd * 4:(hd + 1) * 4] = \
                    att.view(3, 3, 4)
    res = wm.proj(res)
    res = torch.roll(res, (1, 1), (1, 2))[:, :h, :w].reshape(1, h * w, 8)
    torch.testing.assert_close(out, res, rtol=1e-5, atol=1e-5)


# -- equivalence with the official implementation (golden data) -------------
def _golden():
    return torch.load(GOLDEN, map_location='cpu', weights_only=True)


def _upsample(seed, size, dtype):
    return F.interpolate(seed.to(dtype), size=tuple(size), mode='bilinear',
                         align_corners=False)


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-9),
                                       (torch.float32, 1e-4)])
def test_matches_official_backbone(dtype, tol):
    from mmext.converters.elsa_swin import convert
    g = _golden()
    state, meta, dropped = convert(g['official_state_dict'])
    assert meta['arch'] is None and meta['arch_settings'] == g['arch']
    model = ELSASwin(arch=g['arch'], drop_path_rate=0.).eval()
    model.load_state_dict(state, strict=True)
    model.to(dtype)
    for inp, ref in zip(g['inputs'], g['outputs']):
        with torch.no_grad():
            outs = model(_upsample(inp['seed'], inp['size'], dtype))
        for o, r in zip(outs, ref):
            assert o.shape == r.shape
            err = ((o.double() - r).abs().max() / r.abs().max()).item()
            assert err <= tol, err


def test_matches_official_classifier_via_keep_head():
    """ImageNet (timm) layout: no per-stage norms, final norm + head."""
    from mmext.converters.elsa_swin import convert
    g = _golden()
    det = g['official_state_dict']
    cls_sd = {k: v for k, v in det.items() if not k.startswith('norm')}
    cls_sd.update({'norm.' + k[6:]: v for k, v in det.items()
                   if k.startswith('norm3.')})
    cls_sd['head.weight'] = g['cls_head']['weight']
    cls_sd['head.bias'] = g['cls_head']['bias']
    state, meta, _ = convert({'state_dict': cls_sd}, keep_head=True)
    assert meta['layout'] == 'classifier' and meta['num_classes'] == 10
    model = ELSASwin(arch=g['arch'], out_indices=(3, ),
                     drop_path_rate=0.).eval().double()
    model.load_state_dict({k[9:]: v for k, v in state.items()
                           if k.startswith('backbone.')}, strict=True)
    x = _upsample(g['cls_input']['seed'], g['cls_input']['size'],
                  torch.float64)
    with torch.no_grad():
        feat = model(x)[0].mean((2, 3))
    logits = F.linear(feat, state['head.fc.weight'].double(),
                      state['head.fc.bias'].double())
    ref = g['cls_logits']
    assert ((logits - ref).abs().max() / ref.abs().max()).item() <= 1e-9


# -- registry and configs ---------------------------------------------------
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_registry_builds_from_downstream_scopes(scope):
    pytest.importorskip(scope)
    from mmengine.registry import DefaultScope, init_default_scope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    init_default_scope(scope)
    try:
        model = registry.build(dict(type='mmext.ELSASwin', arch=dict(TINY),
                                    out_indices=(0, 3)))
    finally:
        DefaultScope._instance_dict.pop(scope, None)
    assert isinstance(model, ELSASwin)
    assert len(model(torch.randn(1, 3, 32, 32))) == 2


@pytest.mark.parametrize('path', NEW_CONFIGS)
def test_config_builds(path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(osp.join(CONFIG_DIR, path))
    scope = 'mmdet' if path.startswith('detection') else 'mmseg'
    pytest.importorskip(scope)
    importlib.import_module(f'{scope}.utils').register_all_modules()
    init_default_scope(scope)
    backbone = cfg.model.backbone
    assert backbone.type == 'mmext.ELSASwin'
    assert backbone.init_cfg.type == 'Pretrained'
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.arch = dict(TINY)  # build the heads around a tiny one
    channels = [8, 16, 32, 64]
    if scope == 'mmdet':
        cfg.model.neck.in_channels = channels
    else:
        cfg.model.decode_head.in_channels = channels
        cfg.model.auxiliary_head.in_channels = 32
        cfg.model.decode_head.norm_cfg = dict(type='BN')
        cfg.model.auxiliary_head.norm_cfg = dict(type='BN')
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = registry.build(cfg.model)
    assert isinstance(model.backbone, ELSASwin)
    optim = cfg.optim_wrapper.optimizer
    assert optim.type == 'AdamW'
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.
    if scope == 'mmdet':
        assert (optim.lr, optim.weight_decay) == (1e-4, 0.05)
    else:
        assert (optim.lr, optim.weight_decay) == (6e-5, 0.01)
        ratios = sorted({t.scale[1] / 512 for t in
                         cfg.tta_pipeline[1].transforms[0]})
        assert ratios == [0.75, 1.0, 1.25, 1.5, 1.75]
        assert [t.prob for t in cfg.tta_pipeline[1].transforms[1]] == [0, 1]
