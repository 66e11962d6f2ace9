"""tools/convert_imagenet.py dualvit and mmext.converters.dualvit."""
import importlib.util
import os
import os.path as osp

import pytest
import torch

from mmext.converters import (ConversionError, available_converters,
                              convert_checkpoint, get_converter)
from mmext.models.backbones import DualViT
from mmext.utils.checkpoint import CorruptCheckpointError

ROOT = osp.join(osp.dirname(__file__), '..', '..')


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


golden_utils = _load('dualvit_golden',
                     osp.join(ROOT, 'tests', 'data', 'dualvit_golden.py'))
convert_tool = _load('convert_imagenet',
                     osp.join(ROOT, 'tools', 'convert_imagenet.py'))
TINY = golden_utils.TINY
ARCH_JSON = ('{"stem_width": 8, "embed_dims": [8, 16, 24, 32], '
             '"num_heads": [1, 2, 2, 2], "mlp_ratios": [2, 2, 3, 2], '
             '"depths": [1, 2, 2, 2]}')


@pytest.fixture(scope='module')
def official():
    return golden_utils.load_golden()['official_state_dict']


def _tiny_outputs(state, x):
    model = DualViT(arch=TINY, drop_path_rate=0.).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model(x)


def test_registry_lists_dualvit():
    assert 'dualvit' in available_converters()
    with pytest.raises(KeyError, match='available'):
        get_converter('swin_v9')


@pytest.mark.parametrize('wrap', ['bare', 'state_dict', 'model',
                                  'state_dict_ema', 'module'])
def test_round_trip_any_wrapping(tmp_path, official, wrap):
    state = official
    if wrap == 'module':
        state = {'module.' + k: v for k, v in official.items()}
    obj = state if wrap in ('bare', 'module') else {wrap: state, 'epoch': 3}
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(obj, src)
    report = convert_checkpoint('dualvit', str(src), str(dst), arch=TINY)
    saved = torch.load(dst, weights_only=True)
    assert set(saved) == {'state_dict', 'meta'}
    assert saved['meta']['layout'] == 'backbone'
    # the classifier-only keys are reported as dropped
    assert any(k.startswith('post_network.') for k in report['dropped_keys'])
    assert any('fc_proxy' in k for k in report['dropped_keys'])

    direct, _, _ = get_converter('dualvit').convert(official, arch=TINY)
    x = torch.randn(1, 3, 64, 96)
    for a, b in zip(_tiny_outputs(saved['state_dict'], x),
                    _tiny_outputs(direct, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_keep_head_layout(official):
    state, meta, dropped = get_converter('dualvit').convert(
        official, keep_head=True, arch=TINY)
    assert not dropped and meta['layout'] == 'classifier'
    assert meta['num_classes'] == 10
    assert all(k.startswith(('backbone.', 'head.')) for k in state)
    assert 'head.norm.weight' in state and 'head.aux_fc.weight' in state
    assert 'backbone.stages.3.blocks.1.semantic_ffn.0.weight' in state


def test_fused_projections(official):
    state, _, _ = get_converter('dualvit').convert(official, arch=TINY)
    fused = state['stages.0.blocks.0.attn.pixel_qkv.weight']
    torch.testing.assert_close(
        fused, torch.cat([official['block1.0.attn.q.weight'],
                          official['block1.0.attn.kv_proxy.weight']]))
    fused = state['stages.2.blocks.1.attn.qkv.bias']
    torch.testing.assert_close(
        fused, torch.cat([official['block3.1.attn.q.bias'],
                          official['block3.1.attn.kv.bias']]))


def test_infers_released_variants_from_shapes():
    convert = get_converter('dualvit')
    for arch in ('s', 'b', 'l'):
        with torch.device('meta'):
            model = DualViT(arch=arch)
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        fake = _official_shapes(shapes)
        assert convert.infer_arch(fake)['name'] == arch


def _official_shapes(ours):
    """Official-layout key set of the right shapes (empty tensors), made by
    inverting the converter's renaming on one key per parameter."""
    convert = get_converter('dualvit')
    needed = {}
    for i, stage in enumerate(['patch_embed1.norm.weight',
                               'patch_embed2.norm.weight',
                               'patch_embed3.norm.weight',
                               'patch_embed4.norm.weight']):
        where = 'stem.norm.weight' if i == 0 else \
            f'stages.{i}.downsample.norm.weight'
        needed[stage] = ours[where]
    needed['patch_embed1.conv.0.weight'] = ours['stem.convs.0.conv.weight']
    for key, shape in ours.items():
        parts = key.split('.')
        if parts[0] == 'stages' and parts[2] == 'blocks' and \
                key.endswith('ffn.fc1.weight'):
            needed[f'block{int(parts[1]) + 1}.{parts[3]}.mlp.fc1.weight'] = \
                shape
    for k in convert._SIGNATURE:
        needed.setdefault(k, torch.Size([1]))
    return {k: torch.empty(s, device='meta') for k, s in needed.items()}


def test_custom_shapes_need_arch(official, tmp_path):
    convert = get_converter('dualvit')
    with pytest.raises(ConversionError, match='none of the released'):
        convert.convert(official)
    with pytest.raises(ConversionError, match='does not fit'):
        convert.convert(official, arch='s')
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(official, src)
    assert convert_tool.main(['dualvit', str(src), str(dst), '--arch',
                              ARCH_JSON]) == 0
    assert dst.exists()


def test_other_model_is_rejected(tmp_path, capsys):
    src = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(64, 3, 7, 7),
                               'fc.weight': torch.zeros(1000, 2048)}}, src)
    dst = tmp_path / 'out.pth'
    assert convert_tool.main(['dualvit', str(src), str(dst)]) == 1
    err = capsys.readouterr().err
    assert 'not an official Dual-ViT checkpoint' in err
    assert not dst.exists()


def test_already_converted_is_rejected(official):
    convert = get_converter('dualvit')
    ours, _, _ = convert.convert(official, arch=TINY)
    with pytest.raises(ConversionError, match='already in mmext layout'):
        convert.convert(ours)


def test_unknown_keys_are_refused(official):
    state = dict(official, **{'block1.0.attn.extra.weight': torch.zeros(1)})
    with pytest.raises(ConversionError, match='extra'):
        get_converter('dualvit').convert(state, arch=TINY)


def test_keep_head_needs_a_head(official):
    backbone_only = {k: v for k, v in official.items()
                     if not k.startswith(('post_network', 'head', 'aux_head'))}
    with pytest.raises(ConversionError, match='no classifier head'):
        get_converter('dualvit').convert(backbone_only, keep_head=True,
                                         arch=TINY)


def test_missing_tensor_fails_verification(official):
    convert = get_converter('dualvit')
    state, meta, _ = convert.convert(official, arch=TINY)
    del state['stages.1.blocks.1.attn.sem_kv.weight']
    with pytest.raises(ConversionError, match='missing.*sem_kv'):
        convert.verify(state, meta)


def test_truncated_file(tmp_path, official, capsys):
    src = tmp_path / 'full.pth'
    torch.save(official, src)
    data = src.read_bytes()
    src.write_bytes(data[:len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match='truncated'):
        convert_checkpoint('dualvit', str(src), str(tmp_path / 'o.pth'))
    assert convert_tool.main(['dualvit', str(src),
                              str(tmp_path / 'o.pth')]) == 1
    assert 'truncated' in capsys.readouterr().err


def test_refuses_to_overwrite_without_force(tmp_path, official):
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(official, src)
    dst.write_bytes(b'keep me')
    assert convert_tool.main(['dualvit', str(src), str(dst), '--arch',
                              ARCH_JSON]) == 1
    assert dst.read_bytes() == b'keep me'
    assert convert_tool.main(['dualvit', str(src), str(dst), '--arch',
                              ARCH_JSON, '--force']) == 0
    assert torch.load(dst, weights_only=True)['meta']['converter'] == \
        'dualvit'


def test_failed_write_leaves_no_partial_file(tmp_path, official,
                                             monkeypatch):
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(official, src)
    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # bytes reach the temp file
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', crash_midway)
    with pytest.raises(OSError, match='disk full'):
        convert_checkpoint('dualvit', str(src), str(dst), arch=TINY)
    assert sorted(os.listdir(tmp_path)) == ['src.pth']


def test_downstream_checkpoint_backbone_is_taken(official):
    """An official detector/segmentor checkpoint: keys under ``backbone.``,
    the rest (neck, heads) reported as dropped."""
    state = {'backbone.' + k: v for k, v in official.items()
             if not k.startswith(('post_network', 'head.', 'aux_head'))}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(4, 8, 1, 1)
    new, meta, dropped = get_converter('dualvit').convert(state, arch=TINY)
    assert meta['layout'] == 'backbone'
    assert 'neck.lateral_convs.0.conv.weight' in dropped
    direct, _, _ = get_converter('dualvit').convert(official, arch=TINY)
    assert new.keys() == direct.keys()
