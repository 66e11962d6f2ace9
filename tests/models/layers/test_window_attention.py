"""Swin window attention (mmext.models.layers.window_attention)."""
import torch
import torch.nn.functional as F

from mmext.models.layers.window_attention import (ShiftWindowMSA,
                                                  relative_position_index)


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
