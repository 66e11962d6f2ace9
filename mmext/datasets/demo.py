"""Embedded demo data: a small synthetic COCO instance set and an ADE20K-style
semantic set, generated deterministically so that the detection and
segmentation pipelines run on a fresh machine without downloads.

The images are synthetic: coloured geometric shapes (disc, triangle, square,
star) with exact masks, drawn on procedurally textured backgrounds. They are a
smoke-test / demo set, not a benchmark; numbers on them say nothing about
COCO or ADE20K accuracy.

Layout (``root`` defaults to ``data/demo``)::

    root/coco/{train,val}/*.jpg
    root/coco/annotations/instances_{train,val}.json    # COCO polygons
    root/ade/images/{training,validation}/*.jpg
    root/ade/annotations/{training,validation}/*.png    # 0 = ignored, 1..K

Usage: ``python -m mmext.datasets.demo [--root data/demo] [--force]``.
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

#: Bump when the generated content changes; stale data is then regenerated.
DEMO_VERSION = 1

#: Object classes, shared by both demo sets.
OBJECT_CLASSES = ('disc', 'triangle', 'square', 'star')
#: Semantic classes of the ADE20K-style set (label value = index + 1; 0 is
#: "unlabelled clutter" and ignored, as in ADE20K with reduce_zero_label).
SEG_CLASSES = ('sky', 'ground') + OBJECT_CLASSES

DET_PALETTE = [(220, 20, 60), (0, 160, 60), (30, 80, 230), (230, 190, 0)]
SEG_PALETTE = [(120, 170, 230), (120, 90, 50)] + DET_PALETTE

# Mean hue (OpenCV scale 0..179) of each object class. The jitter below makes
# neighbouring classes overlap in colour, so shape matters too.
_CLASS_HUE = (0, 60, 115, 28)
_HUE_JITTER = 14

DEFAULT_SPLITS = dict(train=48, val=16)
DET_SIZES = ((320, 240), (240, 320), (288, 288))  # (w, h)
SEG_SIZES = ((256, 192), (192, 256), (224, 224))


def det_metainfo() -> dict:
    return dict(classes=OBJECT_CLASSES, palette=DET_PALETTE)


def seg_metainfo() -> dict:
    return dict(classes=SEG_CLASSES, palette=SEG_PALETTE)


# --------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------
def _texture(rng: np.random.RandomState, h: int, w: int,
             base: Tuple[float, float,
                         float], spread: float, grain: float) -> np.ndarray:
    """Low-saturation procedural texture: smooth colour field + grain."""
    gh, gw = rng.randint(3, 7), rng.randint(3, 7)
    coarse = rng.uniform(-spread, spread, size=(gh, gw, 3)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    # a few oriented stripes give the network something to ignore
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(6, 24)
    stripes = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi /
                     period) * rng.uniform(4, 14)
    img = (np.asarray(base, np.float32)[None, None] + field +
           stripes[..., None] +
           rng.normal(0, grain, size=(h, w, 3)).astype(np.float32))
    return img


def _shape_polygon(rng: np.random.RandomState, cls: int, cx: float, cy: float,
                   r: float) -> np.ndarray:
    """Polygon (N, 2) of an object of class ``cls`` centred at (cx, cy)."""
    rot = rng.uniform(0, 2 * np.pi)
    name = OBJECT_CLASSES[cls]
    if name == 'disc':
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        ax, ay = r, r * rng.uniform(0.75, 1.0)
        pts = np.stack([ax * np.cos(t), ay * np.sin(t)], 1)
    elif name == 'triangle':
        t = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        t = t + rng.uniform(-0.15, 0.15, size=3)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif name == 'square':
        t = np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r * 0.95
        pts[:, 1] *= rng.uniform(0.8, 1.0)
    elif name == 'star':
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        pts = np.stack([rad * np.cos(t), rad * np.sin(t)], 1)
    else:  # pragma: no cover
        raise ValueError(name)
    c, s = np.cos(rot), np.sin(rot)
    pts = pts @ np.array([[c, s], [-s, c]], np.float64)
    return pts + np.array([cx, cy])


def _object_colour(rng: np.random.RandomState, cls: int) -> np.ndarray:
    hue = (_CLASS_HUE[cls] + rng.randint(-_HUE_JITTER, _HUE_JITTER + 1)) % 180
    hsv = np.uint8([[[hue, rng.randint(150, 256), rng.randint(150, 256)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _place_objects(
        rng: np.random.RandomState, h: int, w: int, count: int,
        r_range: Tuple[float, float]) -> List[Tuple[int, np.ndarray]]:
    """Random objects with limited mutual overlap: [(class, polygon)]."""
    objs: List[Tuple[int, np.ndarray, Tuple[float, float, float]]] = []
    for _ in range(count * 20):
        if len(objs) == count:
            break
        r = rng.uniform(*r_range)
        cx = rng.uniform(r * 0.6, w - r * 0.6)
        cy = rng.uniform(r * 0.6, h - r * 0.6)
        if any(
                np.hypot(cx - ox, cy - oy) < 0.9 * (r + orr)
                for _, _, (ox, oy, orr) in objs):
            continue
        cls = rng.randint(len(OBJECT_CLASSES))
        objs.append((cls, _shape_polygon(rng, cls, cx, cy, r), (cx, cy, r)))
    return [(c, p) for c, p, _ in objs]


def _paint(img: np.ndarray, rng: np.random.RandomState, cls: int,
           mask: np.ndarray) -> None:
    colour = _object_colour(rng, cls)
    shade = rng.normal(0, 6, size=img.shape).astype(np.float32)
    img[mask] = colour[None] + shade[mask]


def _render_det(rng: np.random.RandomState, w: int, h: int):
    base = rng.uniform(90, 170, size=3)
    img = _texture(rng, h, w, base, spread=35, grain=7)
    objs = _place_objects(rng, h, w, rng.randint(1, 5), (22, 62))
    owner = np.full((h, w), -1, np.int32)
    for idx, (cls, poly) in enumerate(objs):
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
        m = m.astype(bool)
        _paint(img, rng, cls, m)
        owner[m] = idx  # later objects occlude earlier ones
    img = np.clip(img, 0, 255).astype(np.uint8)
    instances = []
    for idx, (cls, _) in enumerate(objs):
        mask = (owner == idx).astype(np.uint8)
        if mask.sum() < 64:
            continue
        instances.append((cls, mask))
    return img, instances


def _render_seg(rng: np.random.RandomState, w: int, h: int):
    yy, xx = np.mgrid[0:h, 0:w]
    # wavy horizon between sky (top) and ground (bottom)
    horizon = (
        h * rng.uniform(0.3, 0.6) + h * 0.06 *
        np.sin(xx[0] * 2 * np.pi / rng.uniform(60, 200) + rng.uniform(0, 6)))
    is_sky = yy < horizon[None, :]
    sky = _texture(rng, h, w, (205, 175, 140), spread=12, grain=3)  # BGR
    ground = _texture(rng, h, w, (60, 110, 100), spread=30, grain=12)
    img = np.where(is_sky[..., None], sky, ground)
    label = np.where(is_sky, 1, 2).astype(np.uint8)
    # unlabelled clutter (label 0, ignored like ADE20K's "other")
    for _ in range(rng.randint(0, 3)):
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.uniform(6, 18)), int(rng.uniform(4, 12)))
        m = np.zeros((h, w), np.uint8)
        cv2.ellipse(m, c, axes, rng.uniform(0, 180), 0, 360, 1, -1)
        m = m.astype(bool)
        img[m] = rng.uniform(60, 200) + rng.normal(0, 4, size=(m.sum(), 3))
        label[m] = 0
    for cls, poly in _place_objects(rng, h, w, rng.randint(1, 5), (16, 48)):
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
        m = m.astype(bool)
        _paint(img, rng, cls, m)
        label[m] = cls + 3
    return np.clip(img, 0, 255).astype(np.uint8), label


def _mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for cnt in contours:
        if len(cnt) < 3 or cv2.contourArea(cnt) < 4:
            continue
        polys.append([float(v) for v in cnt.reshape(-1)])
    return polys


def _imwrite(path: str, img: np.ndarray) -> None:
    ext = osp.splitext(path)[1]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == '.jpg' else []
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:  # pragma: no cover
        raise IOError(f'could not encode {path}')
    with open(path, 'wb') as f:
        f.write(buf.tobytes())


# --------------------------------------------------------------------------
# dataset writers
# --------------------------------------------------------------------------
def _split_seed(seed: int, kind: str, split: str) -> int:
    digest = hashlib.sha256(f'{seed}/{kind}/{split}'.encode()).hexdigest()
    return int(digest[:8], 16)


def make_coco_demo(root: str, splits: Dict[str, int], seed: int = 0) -> None:
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [
        dict(id=i + 1, name=n, supercategory='shape')
        for i, n in enumerate(OBJECT_CLASSES)
    ]
    for split, num in splits.items():
        rng = np.random.RandomState(_split_seed(seed, 'coco', split))
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, anns = [], []
        for i in range(num):
            w, h = DET_SIZES[i % len(DET_SIZES)]
            img, instances = _render_det(rng, w, h)
            name = f'{split}_{i:04d}.jpg'
            _imwrite(osp.join(root, split, name), img)
            images.append(dict(id=i + 1, file_name=name, width=w, height=h))
            for cls, mask in instances:
                polys = _mask_to_polygons(mask)
                if not polys:
                    continue
                ys, xs = np.nonzero(mask)
                x0, y0 = int(xs.min()), int(ys.min())
                bw, bh = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
                anns.append(
                    dict(id=len(anns) + 1,
                         image_id=i + 1,
                         category_id=cls + 1,
                         segmentation=polys,
                         area=float(mask.sum()),
                         bbox=[x0, y0, bw, bh],
                         iscrowd=0))
        coco = dict(info=dict(
            description='mmext synthetic demo set (not COCO)',
            version=str(DEMO_VERSION)),
                    licenses=[],
                    images=images,
                    annotations=anns,
                    categories=categories)
        with open(osp.join(root, 'annotations', f'instances_{split}.json'),
                  'w') as f:
            json.dump(coco, f)


def make_ade_demo(root: str, splits: Dict[str, int], seed: int = 0) -> None:
    names = dict(train='training', val='validation')
    for split, num in splits.items():
        sub = names.get(split, split)
        rng = np.random.RandomState(_split_seed(seed, 'ade', split))
        img_dir = osp.join(root, 'images', sub)
        ann_dir = osp.join(root, 'annotations', sub)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(num):
            w, h = SEG_SIZES[i % len(SEG_SIZES)]
            img, label = _render_seg(rng, w, h)
            stem = f'demo_{sub}_{i:04d}'
            _imwrite(osp.join(img_dir, stem + '.jpg'), img)
            _imwrite(osp.join(ann_dir, stem + '.png'), label)


def make_demo_data(root: str = 'data/demo',
                   seed: int = 0,
                   splits: Optional[Dict[str, int]] = None,
                   force: bool = False,
                   verbose: bool = False) -> str:
    """Generate both demo sets under ``root`` (idempotent).

    A stamp file records the generator version and parameters; an existing
    set with the same stamp is reused, a different one is replaced.
    Returns ``root``.
    """
    splits = dict(splits or DEFAULT_SPLITS)
    stamp = dict(version=DEMO_VERSION, seed=seed, splits=splits)
    stamp_file = osp.join(root, 'demo_stamp.json')
    if not force and osp.isfile(stamp_file):
        with open(stamp_file) as f:
            if json.load(f) == stamp:
                if verbose:
                    print(f'demo data already present in {root}')
                return root
    for sub in ('coco', 'ade'):
        if osp.isdir(osp.join(root, sub)):
            shutil.rmtree(osp.join(root, sub))
    make_coco_demo(osp.join(root, 'coco'), splits, seed)
    make_ade_demo(osp.join(root, 'ade'), splits, seed)
    os.makedirs(root, exist_ok=True)
    with open(stamp_file, 'w') as f:
        json.dump(stamp, f)
    if verbose:
        print(f'wrote demo data to {root}: COCO-format instances '
              f'({", ".join(OBJECT_CLASSES)}) and ADE20K-format semantic '
              f'maps ({", ".join(SEG_CLASSES)}); splits {splits}')
    return root


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default='data/demo')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--train', type=int, default=DEFAULT_SPLITS['train'])
    parser.add_argument('--val', type=int, default=DEFAULT_SPLITS['val'])
    parser.add_argument('--force',
                        action='store_true',
                        help='regenerate even if present')
    args = parser.parse_args(argv)
    make_demo_data(args.root,
                   seed=args.seed,
                   splits=dict(train=args.train, val=args.val),
                   force=args.force,
                   verbose=True)


if __name__ == '__main__':
    main()
