"""What is particular to the A-ViT converter (the shared contract is in
``test_contract.py``): where the gate values come from, the size of the
position embedding, and the mmpretrain classifier of ``--keep-head``,
checked against the official logits."""
import json
import os.path as osp

import pytest
import torch

from mmext.apis import convert as convert_tool
from mmext.converters import ConversionError, get_converter
from mmext.models.backbones.avit import AViT
from tests.data.golden64 import max_rel_error

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GOLDEN = osp.join(REPO, 'tests', 'data', 'avit_golden.pth')


@pytest.fixture(scope='module')
def golden():
    return torch.load(GOLDEN, weights_only=True)


def released(arch):
    """An official-layout state dict of a released size, on the meta device
    (shapes are all the gates and sizes depend on)."""
    converter = get_converter('avit')
    with torch.device('meta'):
        state = AViT(arch=arch).state_dict()
        official = converter.to_official(state, AViT.parse_arch(arch))
    official['head.weight'] = torch.empty(1000, state['norm.weight'].shape[0],
                                          device='meta')
    official['head.bias'] = torch.empty(1000, device='meta')
    return official


@pytest.mark.parametrize('options, expected', [
    (dict(source='/w/small-10-75.pth', gate_scale=4.), (4., 75.,
                                                        'options + file '
                                                        'name')),
    (dict(source='/w/tiny-5.5-20.pth'), (5.5, 20., 'file name')),
    (dict(source='/w/avit_t.pth'), (10., 30., 'released tiny model')),
    (dict(gate_scale=1., gate_center=2.), (1., 2., 'options')),
])
def test_gate_values(options, expected):
    _, meta, _ = get_converter('avit', **options).convert(released('tiny'))
    assert (meta['gate_scale'], meta['gate_center'],
            meta['gate_source']) == expected
    assert meta['arch'] == 't' and meta['img_size'] == (224, 224)


def test_small_gets_its_released_gate():
    _, meta, dropped = get_converter('avit').convert(released('small'))
    assert meta['arch'] == 's' and dropped == ['head.weight', 'head.bias']
    assert (meta['gate_scale'], meta['gate_center']) == (10., 75.)


def test_custom_size_and_grid(golden):
    with pytest.raises(ConversionError, match='--arch'):
        get_converter('avit').convert(golden['state_dict'])  # no head count
    with pytest.raises(ConversionError, match='--img-size H W'):
        get_converter('avit').convert(golden['state_dict'],
                                      arch=golden['arch'])
    with pytest.raises(ConversionError, match='pos_embed has 15'):
        get_converter('avit', img_size=[64, 64]).convert(
            golden['state_dict'], arch=golden['arch'])
    _, meta, _ = get_converter('avit', img_size=[48, 80]).convert(
        golden['state_dict'], arch=golden['arch'])
    assert meta['img_size'] == (48, 80) and meta['arch'] is None


def test_keep_head_classifier_gives_official_logits(golden, tmp_path,
                                                    capsys):
    """tools/convert_imagenet.py avit --keep-head: the printed config
    builds an mmpretrain ImageClassifier that reproduces the official
    logits (token removal at inference)."""
    from mmpretrain.registry import MODELS
    src = tmp_path / 'tiny-4-2.pth'  # gates from the name, as officially
    torch.save({'model': golden['state_dict']}, src)
    dst = tmp_path / 'cls.pth'
    assert convert_tool.main([
        'avit', str(src), str(dst), '--keep-head', '--arch',
        json.dumps(golden['arch']), '--img-size', '48', '80'
    ]) == 0
    out = capsys.readouterr().out
    cfg = json.loads(out[out.index('{'):])
    assert cfg['backbone']['gate_scale'] == golden['gate_scale'] == 4.
    assert cfg['backbone']['gate_center'] == golden['gate_center'] == 2.
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg)
    model.load_state_dict(torch.load(dst, weights_only=True)['state_dict'])
    model = model.double().eval()
    with torch.no_grad():
        logits = model(golden['images'], mode='tensor')
    # float64; measured 4.6e-16
    assert max_rel_error(logits, golden['logits']) < 1e-12
