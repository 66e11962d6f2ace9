"""Draw A-ViT's per-token halting depth over an image, as a PNG
(``tools/visualize_halting.py``).

    python tools/visualize_halting.py IMAGE OUT.png --checkpoint CKPT
        [--short-side 800] [--gate-scale S --gate-center C] [--arch tiny]

CKPT is a file made by ``tools/convert_imagenet.py avit`` (backbone or
``--keep-head`` classifier: arch and gate values are read from its meta) or
a detector / segmentor checkpoint trained from one (then give ``--arch`` and
the gates, or the defaults of the released tiny model apply). The output
shows the image and, beside it, the image under the depth map: for every
16x16 patch the number of blocks that token ran before it halted, on the
same scale for every image (1 .. depth).
"""
import argparse
import os.path as osp
import pickle
import sys

import numpy as np
import torch

from mmext.utils.fileio import atomic_write

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image', help='input image (any format PIL reads)')
    parser.add_argument('out', help='PNG to write')
    parser.add_argument('--checkpoint', required=True,
                        help='converted A-ViT checkpoint (or a model '
                        'trained from one)')
    parser.add_argument('--arch', help="arch name or JSON dict (default: "
                        "the checkpoint's meta, else 'tiny')")
    parser.add_argument('--gate-scale', type=float,
                        help="halting gate scale (default: the checkpoint's "
                        'meta, else 10)')
    parser.add_argument('--gate-center', type=float,
                        help="halting gate center (default: the "
                        "checkpoint's meta, else 30)")
    parser.add_argument('--short-side', type=int,
                        help='resize so the shorter side has this length '
                        '(default: keep the size)')
    parser.add_argument('--alpha', type=float, default=0.6,
                        help='opacity of the depth map (default 0.6)')
    parser.add_argument('--force', action='store_true',
                        help='overwrite OUT if it exists')
    return parser.parse_args(argv)


def load_backbone(path, arch=None, gate_scale=None, gate_center=None):
    """An eval-mode ``mmext.AViT`` with the weights of ``path``."""
    import json

    from mmext.models.backbones.avit import AViT
    from mmext.utils.checkpoint import load_checkpoint_file, state_dict_from
    ckpt = load_checkpoint_file(path, map_location='cpu')
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    state = state_dict_from(ckpt)
    if any(k.startswith('backbone.') for k in state):
        state = {k[len('backbone.'):]: v for k, v in state.items()
                 if k.startswith('backbone.')}
    if 'cls_token' not in state or 'blocks.0.attn.qkv.weight' not in state:
        raise ValueError(f'{path} holds no mmext A-ViT weights (convert an '
                         'official file with tools/convert_imagenet.py avit)')
    if isinstance(arch, str) and arch.lstrip().startswith('{'):
        arch = json.loads(arch)
    arch = arch or meta.get('arch') or meta.get('arch_settings') or 'tiny'
    kwargs = dict(
        img_size=meta.get('img_size', 224),
        gate_scale=gate_scale if gate_scale is not None else meta.get(
            'gate_scale', 10.),
        gate_center=gate_center if gate_center is not None else meta.get(
            'gate_center', 30.))
    model = AViT(arch=arch, **kwargs)
    try:
        missing, _ = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        missing = [str(err).splitlines()[-1].strip()]
    if missing:
        raise ValueError(f'{path} does not fit A-ViT arch {arch!r}: '
                         f'{missing[:3]} (give --arch)')
    return model.eval()


def read_image(path, short_side=None):
    from PIL import Image
    if not osp.isfile(path):
        raise FileNotFoundError(f'no image at {path}')
    img = Image.open(path).convert('RGB')
    if short_side:
        w, h = img.size
        scale = short_side / min(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                         Image.BICUBIC)
    return np.asarray(img)


@torch.no_grad()
def depth_map(model, rgb: np.ndarray) -> np.ndarray:
    """Blocks run per patch token, as an ``(H/16, W/16)`` array."""
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float()[None] / 255.
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    model((x - mean) / std)
    return model.depth_map()[0].numpy()


def render(rgb: np.ndarray, depth: np.ndarray, max_depth: int, alpha: float,
           out: str) -> None:
    """Image | image under the depth map, with a colour bar; written
    atomically."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    h, w = rgb.shape[:2]
    # each token covers a patch; the grid may overhang the image (padding)
    patch = int(np.ceil(max(h / depth.shape[0], w / depth.shape[1])))
    full = np.kron(depth, np.ones((patch, patch)))[:h, :w]
    scale = max(1., 300 / h)  # small images drawn at least 300 px high
    fig, axes = plt.subplots(
        1, 2, figsize=(scale * 2 * w / 100 + 1.5, scale * h / 100 + .6),
        dpi=100)
    axes[0].imshow(rgb)
    axes[1].imshow(rgb)
    shown = axes[1].imshow(full, cmap='viridis', vmin=1, vmax=max_depth,
                           alpha=alpha, interpolation='nearest')
    for ax in axes:
        ax.axis('off')
    axes[1].set_title(f'token depth (mean {depth.mean():.2f} of '
                      f'{max_depth})', fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02)
    try:
        with atomic_write(out, 'wb', force=True) as f:
            fig.savefig(f, format='png', bbox_inches='tight')
    finally:
        plt.close(fig)


def main(argv=None) -> int:
    from mmext.utils.checkpoint import CorruptCheckpointError
    args = parse_args(argv)
    if osp.exists(args.out) and not args.force:
        print(f'error: {args.out} exists; pass --force to overwrite it',
              file=sys.stderr)
        return 1
    try:
        model = load_backbone(args.checkpoint, args.arch, args.gate_scale,
                              args.gate_center)
        rgb = read_image(args.image, args.short_side)
    except (OSError, ValueError, pickle.UnpicklingError,
            CorruptCheckpointError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    depth = depth_map(model, rgb)
    render(rgb, depth, len(model.blocks), args.alpha, args.out)
    print(f'{args.out}: {depth.shape[0]}x{depth.shape[1]} tokens, mean depth '
          f'{depth.mean():.2f} of {len(model.blocks)}')
    return 0

