"""What is particular to the Dual-ViT converter (the shared contract is in
``test_contract.py``): the official classifier's layout, fused projections,
arch inference that needs ``--arch`` for custom shapes."""
import json
import os
import os.path as osp

import pytest
import torch

from mmext.apis import convert as convert_tool
from mmext.converters import ConversionError, convert_checkpoint, get_converter
from mmext.models.backbones import DualViT
from tests.data import golden64

GOLDEN = torch.load(osp.join(osp.dirname(golden64.__file__),
                             'dualvit_golden64.pth'),
                    weights_only=True)
TINY = GOLDEN['arch']
ARCH_JSON = json.dumps(TINY)


@pytest.fixture(scope='module')
def official():
    """The official tiny classifier's weights (float32)."""
    return {
        k: v.float()
        for k, v in golden64.unpack(
            GOLDEN['official_state_dict_fp16']).items()
    }


def _outputs(state, x):
    model = DualViT(arch=TINY, drop_path_rate=0.).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        return model(x)


def test_file_conversion_drops_the_classifier_and_loads(tmp_path, official):
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save({'model': official, 'epoch': 3}, src)
    report = convert_checkpoint('dualvit', str(src), str(dst), arch=TINY)
    saved = torch.load(dst, weights_only=True)
    assert set(saved) == {'state_dict', 'meta'}
    assert any(k.startswith('post_network.') for k in report['dropped_keys'])
    assert any('fc_proxy' in k for k in report['dropped_keys'])
    direct, _, _ = get_converter('dualvit').convert(official, arch=TINY)
    x = torch.randn(1, 3, 64, 96)
    for a, b in zip(_outputs(saved['state_dict'], x), _outputs(direct, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_keep_head_layout(official):
    state, meta, dropped = get_converter('dualvit').convert(official,
                                                            keep_head=True,
                                                            arch=TINY)
    assert not dropped and meta['layout'] == 'classifier'
    assert meta['num_classes'] == 10
    assert all(k.startswith(('backbone.', 'head.')) for k in state)
    assert 'head.norm.weight' in state and 'head.aux_fc.weight' in state
    assert 'backbone.stages.3.norm.weight' not in state
    assert 'backbone.stages.3.blocks.1.semantic_ffn.0.weight' in state
    back = get_converter('dualvit').to_official(state,
                                                DualViT.parse_arch(TINY),
                                                keep_head=True)
    assert back.keys() == official.keys()


def test_fused_projections(official):
    state, _, _ = get_converter('dualvit').convert(official, arch=TINY)
    fused = state['stages.0.blocks.0.attn.pixel_qkv.weight']
    torch.testing.assert_close(
        fused,
        torch.cat([
            official['block1.0.attn.q.weight'],
            official['block1.0.attn.kv_proxy.weight']
        ]))
    fused = state['stages.2.blocks.1.attn.qkv.bias']
    torch.testing.assert_close(
        fused,
        torch.cat([
            official['block3.1.attn.q.bias'], official['block3.1.attn.kv.bias']
        ]))
    half = {k: v for k, v in official.items() if k != 'block3.1.attn.kv.bias'}
    with pytest.raises(ConversionError, match='only part of a fused'):
        get_converter('dualvit').convert(half, arch=TINY)


def test_custom_shapes_need_arch(official, tmp_path):
    convert = get_converter('dualvit')
    with pytest.raises(ConversionError, match='none of the released'):
        convert.convert(official)
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(official, src)
    assert convert_tool.main(
        ['dualvit', str(src),
         str(dst), '--arch', ARCH_JSON]) == 0
    assert torch.load(dst, weights_only=True)['meta']['arch'] is None


def test_gaps_in_block_numbering_are_refused(official):
    gap = {k.replace('block3.1.', 'block3.2.'): v for k, v in official.items()}
    with pytest.raises(ConversionError, match='not numbered 0..n-1'):
        get_converter('dualvit').convert(gap, arch=TINY)


def test_keep_head_config_builds_with_custom_imports_alone(
        tmp_path, capsys, official):
    """As a user would: convert with --keep-head, paste the printed model
    config into an mmpretrain config with only ``custom_imports``, build it
    in a fresh interpreter and load the weights."""
    import subprocess
    import sys
    src, dst = tmp_path / 'src.pth', tmp_path / 'cls.pth'
    torch.save({'model': official}, src)
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS='1')
    assert convert_tool.main(
        ['dualvit',
         str(src),
         str(dst), '--keep-head', '--arch', ARCH_JSON]) == 0
    out = capsys.readouterr().out
    model_cfg = json.loads(out.split('(load_from=DST):', 1)[1])
    cfg_file = tmp_path / 'cls_config.py'
    cfg_file.write_text("custom_imports = dict(imports=['mmext.models'], "
                        'allow_failed_imports=False)\n'
                        f'model = {model_cfg!r}\n')
    script = ('from mmengine.config import Config\n'
              'from mmengine.registry import init_default_scope\n'
              'from mmengine.runner import load_checkpoint\n'
              'from mmengine.utils import import_modules_from_strings\n'
              f'cfg = Config.fromfile({str(cfg_file)!r})\n'
              'import_modules_from_strings(**cfg.custom_imports)\n'
              'init_default_scope("mmpretrain")\n'
              'from mmpretrain.registry import MODELS\n'
              'model = MODELS.build(cfg.model)\n'
              f'load_checkpoint(model, {str(dst)!r}, strict=True)\n'
              'print(type(model.head).__name__)\n')
    result = subprocess.run([sys.executable, '-c', script],
                            cwd=str(tmp_path),
                            env=env,
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith('DualViTClsHead')
