"""Family-specific checks of the Shuffle DeiT converter (the generic ones
run in the converter contract test)."""
import os.path as osp

import pytest
import torch

from mmext.converters.base import ConversionError
from mmext.converters.shuffle_vit import ShuffleViTConverter
from mmext.models.backbones.shuffle_vit import ShuffleViT
from tests.converters.test_shuffle_swin import full_size_official

DATA = osp.join(osp.dirname(__file__), '..', 'data')


def test_vit_named_variant_img_size_and_heads():
    conv = ShuffleViTConverter()
    official = full_size_official(ShuffleViT, conv, out_type='cls_token')
    state, meta, _ = conv.convert(official, keep_head=True)
    assert meta['arch'] == 'deit-tiny' and meta['img_size'] == 224
    assert meta['model_cfg']['backbone']['out_type'] == 'cls_token'
    assert state['head.layers.head.weight'].shape == (1000, 384)
    assert 'backbone.shared_norm.weight' in state
    conv.verify(state, meta)


def test_vit_heads_not_in_weights_need_arch():
    golden = torch.load(osp.join(DATA, 'shuffle_vit_golden.pth'))
    conv = ShuffleViTConverter()
    with pytest.raises(ConversionError, match='--arch'):
        conv.convert(golden['state_dict'])
    arch = dict(embed_dims=32, depth=3, num_heads=2, patch_size=8)
    state, meta, _ = conv.convert(golden['state_dict'], arch=arch)
    assert meta['arch_settings'] == arch and meta['img_size'] == 48
    assert set(conv.to_official(state, arch)) == {
        k for k in golden['state_dict'] if not k.startswith('head.')}
    # a 5x6 grid: the pretraining size cannot be told
    state = dict(golden['state_dict'])
    state['pos_embed'] = state['pos_embed'][:, :31]
    with pytest.raises(ConversionError, match='not a square grid'):
        conv.convert(state, arch=arch)
