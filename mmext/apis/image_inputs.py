"""The images a user gives ``tools/infer.py``: files, folders or globs,
each checked before any model is built (missing, unreadable, not an image,
or too small for the network once the test pipeline has resized it)."""
import glob
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import mmcv

from mmext.errors import ImageError

#: what a folder or a glob contributes (the suffixes mmdet's inferencer
#: takes from a folder)
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                    '.tiff', '.webp')

#: The coarsest feature map the FPN / UperNet heads of every config read
#: (the backbones' stage 4, or the pyramid's 0.5x level for plain ViTs). A
#: resized image with a side below it leaves that map less than one cell
#: wide, which some backbones refuse (Dual-ViT) and the rest fill with
#: padding.
NETWORK_STRIDE = 32

_RESIZES = ('Resize', 'mmdet.Resize', 'mmseg.Resize', 'mmcv.Resize')


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def find_images(inputs: Sequence[str]) -> List[str]:
    """Image paths from ``inputs``: files (taken as given), folders (their
    images, not recursive) and glob patterns (matching images), in order,
    without repeats."""
    found: List[str] = []
    for item in inputs:
        if osp.isdir(item):
            names = sorted(n for n in os.listdir(item) if _is_image(n))
            if not names:
                raise ImageError(
                    f'folder {item!r} holds no images '
                    f'({", ".join(IMAGE_EXTENSIONS)}); give image files, '
                    'another folder or a glob such as "dir/**/*.jpg".')
            found += [osp.join(item, n) for n in names]
        elif osp.exists(item):
            found.append(item)
        elif glob.has_magic(item):
            matches = sorted(p for p in glob.glob(item, recursive=True)
                             if osp.isfile(p) and _is_image(p))
            if not matches:
                raise FileNotFoundError(
                    f'no image matches {item!r} (images are '
                    f'{", ".join(IMAGE_EXTENSIONS)}).')
            found += matches
        else:
            raise FileNotFoundError(f'image {item!r} not found.')
    return list(dict.fromkeys(found))


def read_image_size(path: str) -> Tuple[int, int]:
    """``(height, width)`` of the image at ``path``, decoded as the test
    pipeline decodes it (mmcv, colour)."""
    if osp.isdir(path):
        raise ImageError(f'{path!r} is a folder; give it alone to take the '
                         'images in it.')
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except PermissionError:
        raise PermissionError(
            f'image {path!r} cannot be read (permission denied); fix its '
            'permissions (chmod u+r).') from None
    if not data:
        raise ImageError(f'image {path!r} is empty (0 bytes).')
    try:
        img = mmcv.imfrombytes(data, flag='color')
    except Exception:  # noqa: BLE001 - the decoders' own errors say little
        img = None
    if img is None:
        raise ImageError(
            f'{path!r} is not an image that OpenCV can decode (damaged, '
            f'cut short, or another kind of file); images are '
            f'{", ".join(IMAGE_EXTENSIONS)}.')
    return img.shape[:2]


def resized_size(pipeline: Sequence[dict],
                 size: Tuple[int, int]) -> Tuple[int, int]:
    """``(height, width)`` after the ``Resize`` steps of ``pipeline``
    (mmcv's rules: ``keep_ratio`` fits the image into ``scale``)."""
    h, w = size
    for step in pipeline:
        if step.get('type') not in _RESIZES:
            continue
        scale, factor = step.get('scale'), step.get('scale_factor')
        if isinstance(scale, int):
            scale = (scale, scale)
        if scale is None and factor is not None:
            fx, fy = (factor, factor) if isinstance(factor, (int, float)) \
                else factor
            scale = (int(w * fx + 0.5), int(h * fy + 0.5))
        if scale is None:
            continue
        if step.get('keep_ratio', False):
            w, h = mmcv.rescale_size((w, h), tuple(scale))
        else:
            w, h = scale
    return h, w


def check_images(paths: Sequence[str],
                 pipeline: Sequence[dict]) -> Dict[str, Tuple[int, int]]:
    """``{path: (height, width)}``; an :class:`ImageError` for the first
    image that cannot be used."""
    sizes = {}
    for path in paths:
        size = read_image_size(path)
        net = resized_size(pipeline, size)
        if min(net) < NETWORK_STRIDE:
            raise ImageError(
                f'image {path!r} is {size[0]}x{size[1]} pixels; the test '
                f'pipeline resizes it to {net[0]}x{net[1]}, less than the '
                f'network stride ({NETWORK_STRIDE}) on one side. Crop it to '
                'a less extreme aspect ratio, or pad it.')
        sizes[path] = size
    return sizes
