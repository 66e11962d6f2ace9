"""Family-specific checks of the Shuffle Swin converter (the generic ones
run in the converter contract test)."""
import os.path as osp

import pytest
import torch

from mmext.converters.base import ConversionError
from mmext.converters.shuffle_swin import ShuffleSwinConverter
from mmext.models.backbones.shuffle_swin import ShuffleSwin

DATA = osp.join(osp.dirname(__file__), '..', 'data')


def full_size_official(backbone, converter, **kwargs):
    """The authors' key layout of a full-size arch (meta tensors) with its
    classifier head."""
    with torch.device('meta'):
        model = backbone(**kwargs)
    state = model.state_dict()
    settings = model.arch_settings
    official = converter.to_official(state, settings)
    dims = model.embed_dims * (2**(len(settings.get('depths', [1])) - 1))
    official['head.weight'] = torch.empty(1000, dims, device='meta')
    official['head.bias'] = torch.empty(1000, device='meta')
    return official


def test_swin_named_variant_window_and_classifier_cfg():
    conv = ShuffleSwinConverter()
    official = full_size_official(ShuffleSwin, conv, out_indices=(3, ))
    state, meta, dropped = conv.convert(official)
    assert meta['arch'] == 'xtiny' and meta['window_size'] == 7
    assert dropped == ['head.weight', 'head.bias']
    assert 'norm3.weight' in state and 'norm0.weight' not in state
    conv.verify(state, meta)  # norm0..2 start fresh
    state, meta, _ = conv.convert(official, keep_head=True)
    assert meta['model_cfg']['backbone']['arch'] == 'xtiny'
    assert meta['model_cfg']['head']['in_channels'] == 768
    assert state['head.fc.weight'].shape == (1000, 768)
    conv.verify(state, meta)


def test_swin_golden_layout_and_vanilla_swin_refused():
    golden = torch.load(osp.join(DATA, 'shuffle_swin_golden.pth'))
    conv = ShuffleSwinConverter()
    state, meta, _ = conv.convert(golden['state_dict'])
    assert meta['arch'] is None and meta['window_size'] == 3
    assert meta['arch_settings'] == dict(embed_dims=8, depths=[2, 2, 2, 2],
                                         num_heads=[1, 1, 2, 2])
    assert not any('attn_mask' in k for k in state)
    back = conv.to_official(state, meta['arch_settings'])
    expected = {k for k in golden['state_dict'] if not k.startswith('head.')}
    assert set(back) == expected
    # a vanilla (unshuffled) Swin merges both halves with one layer
    vanilla = {
        k.replace('reduction_1', 'reduction').replace('norm_1', 'norm'): v
        for k, v in golden['state_dict'].items() if '_2.' not in k
    }
    with pytest.raises(ConversionError,
                       match='not an official shuffle_swin checkpoint'):
        conv.convert(vanilla)
