"""What is particular to mmext.ELSASwin (the shared contract is in
``test_contract.py``); tiny archs, small inputs."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from mmext.converters import get_converter
from mmext.models.backbones.elsa_swin import ELSASwin

TINY = dict(embed_dims=8,
            depths=[1, 1, 1, 2],
            num_heads=[1, 2, 2, 4],
            group_width=4)
GOLDEN = osp.join(osp.dirname(__file__), '..', '..', 'data',
                  'elsa_swin_golden.pth')


def tiny(**kwargs):
    kwargs.setdefault('drop_path_rate', 0.)
    return ELSASwin(arch=dict(TINY), **kwargs)


# -- shapes ---------------------------------------------------------------
@pytest.mark.parametrize('shape', [(1, 3, 33, 17), (1, 3, 3, 5)])
def test_output_shapes_below_the_stride(shape):
    model = tiny().eval()
    with torch.no_grad():
        outs = model(torch.randn(*shape))
    h, w = shape[2:]
    h, w = -(-h // 4), -(-w // 4)
    assert len(outs) == 4
    for i, out in enumerate(outs):
        assert out.shape == (shape[0], 8 * 2**i, h, w)
        h, w = -(-h // 2), -(-w // 2)


def test_norm_eval_keeps_bn_in_eval():
    model = tiny(norm_eval=True, norm_cfg=dict(type='BN1d'))
    # BN1d cannot normalise (B, L, C) tokens; only the mode is checked here
    model.train()
    bns = [
        m for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
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
@pytest.mark.parametrize('arch,count', [('t', 28_373_322), ('s', 52_106_970),
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
    (dict(embed_dims=8, depths=[1, 1], num_heads=[1],
          group_width=4), 'same length'),
    (dict(embed_dims=8, depths=[1], num_heads=[3],
          group_width=4), 'divisible by num_heads'),
    (dict(embed_dims=8, depths=2, num_heads=[1],
          group_width=4), 'lists of positive'),
])
def test_bad_arch(arch, pattern):
    with pytest.raises(ValueError, match=pattern):
        ELSASwin(arch=arch, out_indices=(0, ))


def test_bad_arguments():
    with pytest.raises(ValueError, match='elsa_cfg impl'):
        tiny(elsa_cfg=dict(impl='cuda'))
    with pytest.raises(ValueError, match='elsa_cfg: unknown keys'):
        tiny(elsa_cfg=dict(lamda=1.))
    with pytest.raises(ValueError, match='supports only lam=0'):
        tiny(elsa_cfg=dict(impl='carafe', lam=1.))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        tiny()(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match='in_channels'):
        tiny()(torch.randn(1, 4, 32, 32))


def test_forced_carafe_without_cuda_errors():
    from mmext.ops import carafe_available
    if carafe_available()[0]:
        pytest.skip('CUDA is available here')
    model = tiny(elsa_cfg=dict(impl='carafe')).eval()
    with pytest.raises(RuntimeError, match="impl='carafe'"):
        model(torch.randn(1, 3, 32, 32))


def test_general_lambda_form_runs():
    model = tiny(elsa_cfg=dict(lam=1., gamma=1.)).eval()
    attn = model.stages[0].blocks[0].attn
    assert attn.ghost_mul is not None and attn.ghost_add is not None
    outs = model(torch.randn(1, 3, 24, 20))
    assert all(torch.isfinite(o).all() for o in outs)


# -- equivalence with the official implementation (golden data) -------------
def _golden():
    return torch.load(GOLDEN, map_location='cpu', weights_only=True)


def _upsample(seed, size, dtype):
    return F.interpolate(seed.to(dtype),
                         size=tuple(size),
                         mode='bilinear',
                         align_corners=False)


# errors reached: 1.6e-15 (float64) and 2.4e-6 (float32); bounds ~15x
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 2.5e-14),
                                       (torch.float32, 4e-5)])
def test_matches_official_backbone(dtype, tol):
    g = _golden()
    state, meta, dropped = get_converter('elsa_swin').convert(
        g['official_state_dict'])
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
    g = _golden()
    det = g['official_state_dict']
    cls_sd = {k: v for k, v in det.items() if not k.startswith('norm')}
    cls_sd.update({
        'norm.' + k[6:]: v
        for k, v in det.items() if k.startswith('norm3.')
    })
    cls_sd['head.weight'] = g['cls_head']['weight']
    cls_sd['head.bias'] = g['cls_head']['bias']
    state, meta, _ = get_converter('elsa_swin').convert(cls_sd, keep_head=True)
    assert meta['layout'] == 'classifier' and meta['num_classes'] == 10
    model = ELSASwin(arch=g['arch'], out_indices=(3, ),
                     drop_path_rate=0.).eval().double()
    model.load_state_dict(
        {
            k[9:]: v
            for k, v in state.items() if k.startswith('backbone.')
        },
        strict=True)
    x = _upsample(g['cls_input']['seed'], g['cls_input']['size'],
                  torch.float64)
    with torch.no_grad():
        feat = model(x)[0].mean((2, 3))
    logits = F.linear(feat, state['head.fc.weight'].double(),
                      state['head.fc.bias'].double())
    ref = g['cls_logits']
    # error reached: 2.6e-16
    assert ((logits - ref).abs().max() / ref.abs().max()).item() <= 4e-15
