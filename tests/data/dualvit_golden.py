"""Golden data of the Dual-ViT tests (``dualvit_golden.pth``).

The file was produced by ``dualvit_make_golden.py`` with the *official*
Dual-ViT code (YehLi/ImageNetModel): a tiny architecture with seeded random
weights (all exactly representable in fp16, stored as fp16), its official
classifier logits, detection-backbone feature maps and segmentation-backbone
tiled feature maps. Inputs are not stored: :func:`smooth_input` recreates
them exactly (no RNG).
"""
import os.path as osp

import torch

GOLDEN_PATH = osp.join(osp.dirname(__file__), 'dualvit_golden.pth')

#: tiny arch of the golden data: distinct widths per stage (catches mix-ups),
#: two blocks in stage 2 (the odd block uses mlp_ratio - 1) and in stage 3
#: (a merge block before the last one)
TINY = dict(stem_width=8, embed_dims=[8, 16, 24, 32], num_heads=[1, 2, 2, 2],
            mlp_ratios=[2, 2, 3, 2], depths=[1, 2, 2, 2])


def smooth_input(b, h, w, phase=0.):
    """Deterministic test image: a few sinusoids per channel."""
    yy = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1)
    xx = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w)
    c = torch.arange(3, dtype=torch.float64).view(1, 3, 1, 1)
    bb = torch.arange(b, dtype=torch.float64).view(b, 1, 1, 1)
    img = (torch.sin(0.37 * yy + 0.11 * xx * (c + 1) + bb + phase) +
           torch.cos(0.05 * xx * yy / (c + 2) - 0.3 * bb) +
           0.5 * torch.sin(1.7 * xx - 0.9 * yy + c))
    return img.float()


def load_golden():
    golden = torch.load(GOLDEN_PATH, map_location='cpu', weights_only=True)
    golden['official_state_dict'] = {
        k: (v.float() if v.is_floating_point() else v)
        for k, v in golden.pop('official_state_dict_fp16').items()
    }
    golden['input'] = smooth_input(*golden['input_shape'][:1],
                                   *golden['input_shape'][2:],
                                   phase=golden['input_phase'])
    golden['input_224'] = smooth_input(1, 224, 224,
                                       phase=golden['input_224_phase'])
    shape = golden['tiled_input_shape']
    golden['tiled_input'] = smooth_input(shape[0], *shape[2:],
                                         phase=golden['tiled_input_phase'])
    return golden


def max_rel_error(actual, expected):
    """``max |a - e| / max |e|``: elementwise relative errors are meaningless
    near zero, so errors are measured against the tensor's scale."""
    return ((actual - expected).abs().max() /
            expected.abs().max().clamp_min(1e-12)).item()
