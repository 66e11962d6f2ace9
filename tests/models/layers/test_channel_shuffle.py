"""The groups=2 channel shuffle of the channel-shuffle tiny ViTs."""
import pytest
import torch

from mmext.models.layers import channel_shuffle


def test_channel_shuffle_is_groups2_shuffle_and_inverts():
    from mmpretrain.models.utils import channel_shuffle as shufflenet
    x = torch.randn(2, 5, 3, 12)  # tokens on a 5x3 map, 12 channels
    ours = channel_shuffle(x)
    ref = shufflenet(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    assert torch.equal(ours, ref)
    assert torch.equal(ours[..., :4], torch.stack(
        [x[..., 0], x[..., 6], x[..., 1], x[..., 7]], -1))
    assert torch.equal(channel_shuffle(ours, inverse=True), x)
    assert torch.equal(channel_shuffle(x[..., :6], x[..., 6:]), ours)
    with pytest.raises(ValueError, match='even number'):
        channel_shuffle(torch.randn(3, 5))
    with pytest.raises(ValueError, match='differ in shape'):
        channel_shuffle(torch.randn(3, 4), torch.randn(3, 2))
