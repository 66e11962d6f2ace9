"""The plain-ViT pyramid neck."""
import pytest
import torch

from mmext.models.necks import SimpleFeaturePyramid


@pytest.mark.parametrize('hw', [(7, 9), (8, 8), (1, 1)])
def test_levels_from_one_map(hw):
    neck = SimpleFeaturePyramid(48, 32).eval()
    with torch.no_grad():
        outs = neck([torch.randn(2, 48, *hw)])
    h, w = hw
    # ceil on the way down: an odd map keeps its last row / column
    assert [o.shape for o in outs] == [(2, 32, 4 * h, 4 * w),
                                       (2, 32, 2 * h, 2 * w), (2, 32, h, w),
                                       (2, 32, -(-h // 2), -(-w // 2))]


def test_outputs_are_contiguous_for_mmcv_roi_align():
    """mmcv's RoIAlign reads its input as a plain NCHW buffer: on the
    channels-last strides LN2d leaves, it pools wrong values."""
    from mmcv.ops import roi_align
    from torchvision.ops import roi_align as tv_roi_align
    neck = SimpleFeaturePyramid(16, 8).eval()
    with torch.no_grad():
        outs = neck([torch.randn(1, 16, 6, 5)])
    assert all(out.is_contiguous() for out in outs)
    rois = torch.tensor([[0., 1., 2., 15., 20.], [0., 0., 0., 19., 23.]])
    torch.testing.assert_close(
        roi_align(outs[0], rois, (7, 7), 1., 0, 'avg', True),
        tv_roi_align(outs[0], rois, (7, 7), 1., 0, True))


def test_one_map_per_level_and_extra_outputs():
    neck = SimpleFeaturePyramid(16, 8, scale_factors=(2, 1), num_outs=3)
    maps = [torch.randn(1, 16, 6, 6), torch.randn(1, 16, 6, 6)]
    outs = neck(maps)
    assert [o.shape[-1] for o in outs] == [12, 6, 3]
    # level i comes from map i
    alone = neck([maps[1], maps[1]])
    assert torch.equal(outs[1],
                       alone[1]) and not torch.equal(outs[0], alone[0])


def test_default_norm_is_channel_layernorm():
    neck = SimpleFeaturePyramid(8, 4, scale_factors=(1, ))
    ln = neck.convs[0][0].norm
    x = torch.randn(2, 8, 3, 5)
    conv = neck.convs[0][0].conv(x)
    expected = torch.nn.functional.layer_norm(conv.permute(0, 2, 3, 1), (4, ),
                                              ln.weight, ln.bias, 1e-6)
    assert torch.allclose(ln(conv), expected.permute(0, 3, 1, 2))


def test_bad_arguments():
    with pytest.raises(ValueError, match='scale_factors'):
        SimpleFeaturePyramid(48, 32, scale_factors=(8, 1))
    with pytest.raises(ValueError, match='divisible by 4'):
        SimpleFeaturePyramid(6, 4)
    with pytest.raises(ValueError, match='num_outs'):
        SimpleFeaturePyramid(8, 4, num_outs=2)
    with pytest.raises(ValueError, match='takes 1 or 4 maps'):
        SimpleFeaturePyramid(8, 4)([torch.randn(1, 8, 2, 2)] * 2)
