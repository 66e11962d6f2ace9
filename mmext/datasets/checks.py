"""Checks of a data set against its config, before a run spends hours on it.

Two levels:

* **quick** (``tools/train.py`` / ``tools/test.py`` run it before any
  work; about a second for COCO val or ADE20K val, see
  ``benchmarks/data_checks/``): reads the annotation file and lists the
  image folders, decodes nothing. COCO-format sets: every image the
  annotations name exists; image sizes are given; the config's classes are
  among the categories; boxes are inside their image (boxes past the border
  are counted, they are clipped), boxes entirely outside or degenerate
  (dropped by mmdet) and annotations of unknown categories are counted and
  named; with masks, empty segmentations (mmdet stops at them) and invalid
  polygons (dropped) or RLE masks of another size are too. Folder sets
  (ADE20K format): every image has its label map.
* **full** (``tools/check_data.py CONFIG``) also decodes every image and
  label map: empty or undecodable images, images whose size differs from
  the annotations, label maps whose size differs from their image, label
  maps with colour channels, label values outside the classes and the
  ignore index, segmentation images under 2x2 pixels.
  (JPEGs and PNGs cut short are undecodable to the OpenCV that mmcv uses,
  and named as such.)

Each problem is reported once, with its count and the first files (and
annotation ids). Errors stop a run; warnings and notes go to the log.
"""
import json
import os
import os.path as osp
from collections import OrderedDict
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np

from mmext.errors import DataCheckError
from mmext.utils.fileio import is_remote

ERROR, WARNING, NOTE = 'error', 'warning', 'note'

#: kind -> (severity, what the count counts)
PROBLEMS = OrderedDict([
    # quick, annotation files
    ('no_images', (ERROR, 'no images found')),
    ('missing_class', (ERROR, "of the config's classes are not among the "
                       "file's categories (the class indices would shift)")),
    ('duplicate_image_id', (ERROR, 'image ids are listed more than once')),
    ('missing_image', (ERROR, 'images named in the annotations do not '
                       'exist')),
    ('no_size', (ERROR, 'images have no positive width and height in the '
                 'annotations')),
    ('bad_annotation', (ERROR, 'annotations have no bbox of 4 numbers or no '
                        'area')),
    ('empty_segmentation', (ERROR, 'instances have an empty segmentation '
                            '(training with masks stops at them)')),
    ('rle_size', (ERROR, 'RLE masks differ in size from their image')),
    ('box_outside', (WARNING, 'boxes lie entirely outside their image '
                     '(dropped)')),
    ('degenerate_box', (WARNING, 'boxes are degenerate: width or height '
                        'under 1 pixel, or area <= 0 (dropped)')),
    ('unknown_category', (WARNING, 'annotations have a category that is '
                          'not among the classes (dropped)')),
    ('invalid_polygon', (WARNING, 'polygons have fewer than 3 points or an '
                         'odd number of coordinates (dropped; an instance '
                         'left with none is ignored)')),
    ('unknown_image', (WARNING, 'annotations refer to an image id the file '
                       'does not list (unused)')),
    ('box_clipped', (NOTE, 'boxes extend past their image border (clipped '
                     'to it)')),
    ('no_annotations', (NOTE, 'images have no usable annotation')),
    # quick, folders
    ('missing_label_map', (ERROR, 'images have no label map')),
    ('orphan_label_map', (NOTE, 'label maps have no image (unused)')),
    # full: decoding
    ('empty_file', (ERROR, 'image files are empty (0 bytes)')),
    ('unreadable_image', (ERROR, 'images cannot be decoded')),
    ('size_mismatch', (ERROR, "images differ in size from the annotations' "
                       'width and height')),
    ('too_small', (ERROR, 'segmentation images are under 2x2 pixels')),
    ('empty_label_map', (ERROR, 'label maps are empty (0 bytes)')),
    ('unreadable_label_map', (ERROR, 'label maps cannot be decoded')),
    ('label_channels', (ERROR, 'label maps have colour channels (class '
                        'indices expected)')),
    ('label_size', (ERROR, 'label maps differ in size from their image')),
    ('label_values', (ERROR, 'label maps hold values outside the classes '
                      'and the ignore index')),
])


class Findings:
    """Problems found in one data set: per kind, a count and the first
    examples."""

    def __init__(self, where: str, examples: int = 3):
        self.where = where
        self.examples = examples
        self.counts: Dict[str, int] = {}
        self.shown: Dict[str, List[str]] = {}
        self.total: Dict[str, int] = {}  # what a count is out of

    def add(self, kind: str, example: str = None, count: int = 1) -> None:
        assert kind in PROBLEMS, kind
        self.counts[kind] = self.counts.get(kind, 0) + count
        shown = self.shown.setdefault(kind, [])
        if example is not None and len(shown) < self.examples:
            shown.append(example)

    def merge(self, other: 'Findings') -> None:
        for kind, count in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + count
            shown = self.shown.setdefault(kind, [])
            shown += other.shown.get(kind, [])[:self.examples - len(shown)]

    def kinds(self, severity: str) -> List[str]:
        return [k for k in PROBLEMS
                if k in self.counts and PROBLEMS[k][0] == severity]

    def line(self, kind: str) -> str:
        count = self.counts[kind]
        out_of = f' of {self.total[kind]}' if kind in self.total else ''
        shown = self.shown.get(kind) or []
        more = ', ...' if count > len(shown) else ''
        examples = f' ({", ".join(shown)}{more})' if shown else ''
        return f'{count}{out_of} {PROBLEMS[kind][1]}{examples}'

    def lines(self, severity: str) -> List[str]:
        return [self.line(k) for k in self.kinds(severity)]

    def to_dict(self) -> dict:
        return {k: dict(severity=PROBLEMS[k][0], count=self.counts[k],
                        examples=self.shown.get(k, []))
                for k in PROBLEMS if k in self.counts}


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------
def list_files(folder: str, suffix: str = '') -> List[str]:
    """Paths (relative to ``folder``, sorted) of the files under ``folder``
    ending with ``suffix``, recursively; one ``scandir`` per folder."""
    found, todo = [], ['']
    while todo:
        rel = todo.pop()
        try:
            entries = list(os.scandir(osp.join(folder, rel)))
        except OSError:
            continue
        for entry in entries:
            name = osp.join(rel, entry.name) if rel else entry.name
            if entry.is_dir():
                todo.append(name)
            elif name.endswith(suffix):
                found.append(name)
    return sorted(found)


def _decode(data: bytes, unchanged: bool):
    """The decoded array, or None; label maps as mmseg reads them (PIL, so
    palette images keep their indices), images as mmcv does (OpenCV)."""
    if unchanged:
        import io

        from PIL import Image
        try:
            with Image.open(io.BytesIO(data)) as img:
                return np.asarray(img)
        except Exception:  # noqa: BLE001 - any failure means undecodable
            return None
    import cv2
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _what_it_is(data: bytes) -> str:
    if data[:2] == b'\xff\xd8':
        # a complete JPEG ends with the EOI marker (some writers pad after)
        return 'a damaged JPEG' if b'\xff\xd9' in data[-1024:] else \
            'a JPEG cut short'
    if data[:8] == b'\x89PNG\r\n\x1a\n' and b'IEND' not in data[-64:]:
        return 'a PNG cut short'
    if data[:8] == b'\x89PNG\r\n\x1a\n':
        return 'a damaged PNG'
    try:
        text = data[:64].decode('utf-8')
    except UnicodeDecodeError:
        return 'not an image format OpenCV or PIL reads'
    if text.strip() and all(c.isprintable() or c.isspace() for c in text):
        return f'a text file starting with {text.strip()[:20]!r}'
    return 'not an image format OpenCV or PIL reads'


def describe_image_file(path: str, unchanged: bool = False) -> Optional[str]:
    """What keeps ``path`` from being read as an image ('does not exist',
    'is empty (0 bytes)', 'cannot be decoded (a damaged JPEG)', ...), or
    None if it decodes."""
    if is_remote(path):
        return None
    if not osp.exists(path):
        return 'does not exist'
    if osp.isdir(path):
        return 'is a folder, not an image'
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as err:
        return f'cannot be read ({err.strerror})'
    if not data:
        return 'is empty (0 bytes)'
    if _decode(data, unchanged) is None:
        return f'cannot be decoded ({_what_it_is(data)})'
    return None


# --------------------------------------------------------------------------
# what the config says
# --------------------------------------------------------------------------
def leaf_datasets(ds_cfg) -> Iterator[dict]:
    """The dataset dicts inside wrappers (``dataset=``, ``datasets=[]``)."""
    if not isinstance(ds_cfg, dict):
        return
    if 'dataset' in ds_cfg:
        yield from leaf_datasets(ds_cfg['dataset'])
    if isinstance(ds_cfg.get('datasets'), (list, tuple)):
        for sub in ds_cfg['datasets']:
            yield from leaf_datasets(sub)
    if 'dataset' not in ds_cfg and 'datasets' not in ds_cfg:
        yield ds_cfg


def _join(root: str, path: str) -> str:
    if not path or not root or osp.isabs(path) or is_remote(path):
        return path
    return osp.join(root, path)


def _load_annotations_cfg(pipeline) -> dict:
    for t in pipeline or []:
        if isinstance(t, dict) and 'LoadAnnotations' in str(t.get('type')):
            return t
    return {}


def _class_names(ds: dict, scope: Optional[str]) -> Optional[tuple]:
    meta = ds.get('metainfo') or {}
    if meta.get('classes'):
        return tuple(meta['classes'])
    try:  # the dataset class's own METAINFO (e.g. ADE20KDataset's 150)
        from mmengine.registry import DATASETS, DefaultScope
        with DefaultScope.overwrite_default_scope(scope):
            with DATASETS.switch_scope_and_registry(scope) as registry:
                cls = registry.get(ds.get('type'))
        classes = getattr(cls, 'METAINFO', {}).get('classes')
        return tuple(classes) if classes else None
    except Exception:  # noqa: BLE001 - an unknown type: no classes known
        return None


class DatasetSpec(dict):
    """What the checks need of one dataset of a config (paths resolved as
    mmengine's ``BaseDataset`` resolves them)."""

    @property
    def kind(self) -> Optional[str]:
        if self['ann_file'].endswith('.json') and self['img_dir']:
            return 'coco'
        if self['img_dir'] and self['seg_dir']:
            return 'folders'
        return None


def dataset_specs(cfg, splits: Iterable[str]) -> List[DatasetSpec]:
    """One :class:`DatasetSpec` per dataset of the config's ``splits``
    dataloaders (datasets shared by several splits once)."""
    specs, seen = [], set()
    scope = cfg.get('default_scope')
    for split in splits:
        loader = cfg.get(f'{split}_dataloader') or {}
        for i, ds in enumerate(leaf_datasets(loader.get('dataset'))):
            root = ds.get('data_root') or ''
            prefix = ds.get('data_prefix') or {}
            load = _load_annotations_cfg(ds.get('pipeline'))
            reduce = ds.get('reduce_zero_label')
            if reduce is None:
                reduce = load.get('reduce_zero_label', False)
            spec = DatasetSpec(
                where=f'{split}_dataloader.dataset',
                ann_file=_join(root, ds.get('ann_file') or ''),
                img_dir=_join(root, prefix.get('img') or
                              prefix.get('img_path') or ''),
                seg_dir=_join(root, prefix.get('seg_map_path') or ''),
                img_suffix=ds.get('img_suffix', '.jpg'),
                seg_suffix=ds.get('seg_map_suffix', '.png'),
                classes=_class_names(ds, scope),
                with_mask=bool(load.get('with_mask', False)),
                reduce_zero_label=bool(reduce),
                ignore_index=load.get('ignore_index', 255),
                test_mode=bool(ds.get('test_mode', split != 'train')))
            key = (spec['ann_file'], spec['img_dir'], spec['seg_dir'])
            if spec.kind and key not in seen:
                seen.add(key)
                specs.append(spec)
    return specs


# --------------------------------------------------------------------------
# quick checks
# --------------------------------------------------------------------------
def _polygon_problem(seg, width, height) -> Optional[str]:
    """'empty', 'invalid' (no valid polygon), 'some_invalid', 'rle_size'
    or None for one instance's segmentation."""
    if not seg:
        return 'empty'
    if isinstance(seg, dict):
        size = seg.get('size')
        if size is not None and list(size) != [height, width]:
            return 'rle_size'
        return None
    if not isinstance(seg, list):
        return 'invalid'
    valid = [p for p in seg if isinstance(p, (list, tuple))
             and len(p) >= 6 and len(p) % 2 == 0]
    if not valid:
        return 'invalid'
    return 'some_invalid' if len(valid) < len(seg) else None


def check_coco_annotations(spec: DatasetSpec,
                           findings: Optional[Findings] = None) -> Findings:
    """Quick check of a COCO-format set: the annotation file against the
    image folder (no image is decoded)."""
    found = findings or Findings(spec['where'])
    ann_file = spec['ann_file']
    with open(ann_file) as f:
        data = json.load(f)
    images = data.get('images') or []
    if not images:
        found.add('no_images', ann_file)
        return found
    names = {c.get('name'): c.get('id') for c in data.get('categories', [])}
    classes = spec['classes']
    if classes:
        missing = [c for c in classes if c not in names]
        for name in missing:
            found.add('missing_class', repr(name))
        found.total['missing_class'] = len(classes)
        cat_ids = {names[c] for c in classes if c in names}
    else:
        cat_ids = set(names.values())

    sizes, files = {}, {}
    for img in images:
        img_id = img.get('id')
        if img_id in sizes:
            found.add('duplicate_image_id', f'id {img_id}')
        w, h = img.get('width'), img.get('height')
        ok = isinstance(w, (int, float)) and isinstance(h, (int, float)) \
            and w > 0 and h > 0
        if not ok:
            found.add('no_size', img.get('file_name'))
        sizes[img_id] = (w, h) if ok else None
        files[img_id] = img.get('file_name') or ''
    _check_files_exist(spec['img_dir'], files.values(), found)
    found.total['missing_image'] = len(files)

    used = set()
    anns = data.get('annotations') or []
    with_mask = spec['with_mask']
    for ann in anns:
        if ann.get('ignore', False):
            continue
        img_id = ann.get('image_id')
        if img_id not in sizes:
            found.add('unknown_image', f'annotation {ann.get("id")}')
            continue
        size = sizes[img_id]
        bbox, area = ann.get('bbox'), ann.get('area')
        here = f'annotation {ann.get("id")} of {files[img_id]}'
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4) \
                or area is None:
            found.add('bad_annotation', here)
            continue
        if size is None:
            continue
        x, y, w, h = bbox
        width, height = size
        inter_w = min(x + w, width) - max(x, 0)
        inter_h = min(y + h, height) - max(y, 0)
        if inter_w <= 0 or inter_h <= 0:  # mmdet's order of filters
            found.add('box_outside', here)
            continue
        if area <= 0 or w < 1 or h < 1:
            found.add('degenerate_box', here)
            continue
        if ann.get('category_id') not in cat_ids:
            found.add('unknown_category', here)
            continue
        if x < 0 or y < 0 or x + w > width or y + h > height:
            found.add('box_clipped', here)
        used.add(img_id)
        if not with_mask:
            continue
        problem = _polygon_problem(ann.get('segmentation'), width, height)
        if problem == 'empty':
            found.add('empty_segmentation', here)
        elif problem == 'rle_size':
            found.add('rle_size', here)
        elif problem in ('invalid', 'some_invalid'):
            found.add('invalid_polygon', here)
    for kind in ('box_outside', 'degenerate_box', 'unknown_category',
                 'box_clipped', 'empty_segmentation', 'invalid_polygon',
                 'bad_annotation'):
        found.total[kind] = len(anns)
    empty = len(sizes) - len(used)
    if empty and not spec['test_mode']:
        found.add('no_annotations', count=empty)
        found.total['no_annotations'] = len(sizes)
    return found


def _check_files_exist(folder: str, names: Iterable[str],
                       found: Findings) -> None:
    """Each name (relative to ``folder``) must be a file: one listing per
    sub-folder, not one ``stat`` per image."""
    if is_remote(folder):
        return
    listed: Dict[str, set] = {}
    for name in names:
        sub, base = osp.split(name)
        if sub not in listed:
            try:
                listed[sub] = set(os.listdir(osp.join(folder, sub)))
            except OSError:
                listed[sub] = set()
        if base not in listed[sub]:
            found.add('missing_image', osp.join(folder, name))


def check_seg_folders(spec: DatasetSpec,
                      findings: Optional[Findings] = None) -> Findings:
    """Quick check of a folder set (ADE20K format): every image has its
    label map (mmseg pairs them by name)."""
    found = findings or Findings(spec['where'])
    img_dir, seg_dir = spec['img_dir'], spec['seg_dir']
    img_suffix, seg_suffix = spec['img_suffix'], spec['seg_suffix']
    if is_remote(img_dir) or is_remote(seg_dir):
        return found
    ann_file = spec['ann_file']
    if ann_file and osp.isfile(ann_file):
        with open(ann_file) as f:
            stems = [line.strip() for line in f if line.strip()]
        _check_files_exist(img_dir, [s + img_suffix for s in stems], found)
        found.total['missing_image'] = len(stems)
    else:
        stems = [n[:-len(img_suffix)] for n in list_files(img_dir,
                                                          img_suffix)]
    if not stems:
        found.add('no_images', f'{img_dir}/*{img_suffix}')
        return found
    maps = {n[:-len(seg_suffix)] for n in list_files(seg_dir, seg_suffix)}
    for stem in stems:
        if stem not in maps:
            found.add('missing_label_map',
                      osp.join(seg_dir, stem + seg_suffix))
    found.total['missing_label_map'] = len(stems)
    orphans = sorted(maps - set(stems))
    for stem in orphans:
        found.add('orphan_label_map', osp.join(seg_dir, stem + seg_suffix))
    return found


def quick_check(spec: DatasetSpec, examples: int = 3) -> Findings:
    check = check_coco_annotations if spec.kind == 'coco' \
        else check_seg_folders
    return check(spec, Findings(spec['where'], examples))


# --------------------------------------------------------------------------
# full checks: decode everything
# --------------------------------------------------------------------------
def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError:
        return None


def _decode_image(path: str, found: Findings):
    """The decoded image at ``path``, or None with what is wrong added to
    ``found`` (a missing file is the quick check's to count)."""
    data = _read(path)
    if not data:
        if data is not None:
            found.add('empty_file', path)
        return None
    img = _decode(data, unchanged=False)
    if img is None:
        found.add('unreadable_image', f'{path}: {_what_it_is(data)}')
    return img


def _inspect_image(job) -> Findings:
    """Decode one image of a COCO set; ``job`` = (path, (w, h) or None)."""
    path, size = job
    found = Findings('')
    img = _decode_image(path, found)
    if img is not None and size is not None and \
            (img.shape[1], img.shape[0]) != tuple(size):
        found.add('size_mismatch',
                  f'{path}: {img.shape[1]}x{img.shape[0]}, annotations say '
                  f'{size[0]}x{size[1]}')
    return found


def _label_values(seg: np.ndarray) -> np.ndarray:
    if seg.dtype == np.uint8:  # a histogram is faster than a sort
        return np.flatnonzero(np.bincount(seg.ravel(), minlength=256))
    return np.unique(seg).astype(np.int64)


def _inspect_pair(job) -> Findings:
    """Decode an image and its label map; ``job`` = (image, label map,
    table of the valid label values)."""
    img_path, seg_path, valid = job
    found = Findings('')
    img = _decode_image(img_path, found)
    if img is not None and min(img.shape[:2]) < 2:
        found.add('too_small', f'{img_path}: {img.shape[1]}x{img.shape[0]}')
    seg_data = _read(seg_path)
    if seg_data is None:
        return found  # missing: the quick check counts it
    if not seg_data:
        found.add('empty_label_map', seg_path)
        return found
    seg = _decode(seg_data, unchanged=True)
    if seg is None:
        found.add('unreadable_label_map',
                  f'{seg_path}: {_what_it_is(seg_data)}')
        return found
    if seg.ndim == 3 and seg.shape[2] > 1:
        found.add('label_channels', f'{seg_path}: {seg.shape[2]} channels')
        return found
    if img is not None and seg.shape[:2] != img.shape[:2]:
        found.add('label_size',
                  f'{seg_path}: {seg.shape[1]}x{seg.shape[0]}, image '
                  f'{img.shape[1]}x{img.shape[0]}')
    values = _label_values(seg)
    inside = (values >= 0) & (values < valid.size)
    bad = values[~inside | ~valid[np.where(inside, values, 0)]]
    if bad.size:
        shown = ', '.join(str(v) for v in bad[:5])
        found.add('label_values', f'{seg_path}: {shown}'
                  + (', ...' if bad.size > 5 else ''))
    return found


def valid_label_values(spec: DatasetSpec) -> np.ndarray:
    """A table ``valid[v]``: whether raw label value ``v`` is a class or the
    ignore index once loaded (``reduce_zero_label``: 0 becomes the ignore
    index and v the class v - 1)."""
    num = len(spec['classes'] or ())
    if not num:
        return np.ones(65536, bool)  # classes unknown: no value check
    valid = np.zeros(65536, bool)
    ignore = spec['ignore_index']
    if spec['reduce_zero_label']:
        valid[0:num + 1] = True
        valid[255] = True  # 255 - 1 = 254 is mapped back to 255
    else:
        valid[0:num] = True
    if 0 <= ignore < valid.size:
        valid[ignore] = True
    return valid


def _jobs(spec: DatasetSpec):
    if spec.kind == 'coco':
        with open(spec['ann_file']) as f:
            data = json.load(f)
        for img in data.get('images') or []:
            w, h = img.get('width'), img.get('height')
            yield (osp.join(spec['img_dir'], img.get('file_name') or ''),
                   (w, h) if w and h else None)
        return
    valid = valid_label_values(spec)
    ann_file = spec['ann_file']
    if ann_file and osp.isfile(ann_file):
        with open(ann_file) as f:
            stems = [line.strip() for line in f if line.strip()]
    else:
        suffix = spec['img_suffix']
        stems = [n[:-len(suffix)] for n in list_files(spec['img_dir'],
                                                      suffix)]
    for stem in stems:
        yield (osp.join(spec['img_dir'], stem + spec['img_suffix']),
               osp.join(spec['seg_dir'], stem + spec['seg_suffix']), valid)


def full_check(spec: DatasetSpec, workers: int = 0,
               progress: Optional[Callable[[int], None]] = None,
               examples: int = 3) -> Findings:
    """The quick check plus a decode of every image (and label map), in
    ``workers`` processes (0: in this one)."""
    found = quick_check(spec, examples)
    inspect = _inspect_image if spec.kind == 'coco' else _inspect_pair
    jobs = list(_jobs(spec))
    if workers > 1:
        import multiprocessing
        with multiprocessing.get_context('fork').Pool(workers) as pool:
            results = pool.imap(inspect, jobs, chunksize=32)
            for i, part in enumerate(results):
                found.merge(part)
                if progress and (i + 1) % 500 == 0:
                    progress(i + 1)
    else:
        for i, job in enumerate(jobs):
            found.merge(inspect(job))
            if progress and (i + 1) % 500 == 0:
                progress(i + 1)
    for kind in ('empty_file', 'unreadable_image', 'size_mismatch',
                 'too_small', 'label_size',
                 'label_values', 'label_channels', 'empty_label_map',
                 'unreadable_label_map'):
        found.total[kind] = len(jobs)
    return found


# --------------------------------------------------------------------------
# before a run
# --------------------------------------------------------------------------
def check_before_run(cfg, splits: Iterable[str],
                     log: Callable[[str], None] = print) -> List[Findings]:
    """The quick checks of the datasets of ``splits``: warnings and notes
    go to ``log`` (one line each), errors raise :class:`DataCheckError`
    (one line: each problem with its count and first files)."""
    results = []
    for spec in dataset_specs(cfg, splits):
        found = quick_check(spec)
        results.append(found)
        for severity in (WARNING, NOTE):
            for line in found.lines(severity):
                log(f'data check, {found.where}: {line}')
        errors = found.lines(ERROR)
        if errors:
            source = spec['ann_file'] if spec.kind == 'coco' else \
                spec['img_dir']
            raise DataCheckError(
                f'{found.where} ({source}): ' + '; '.join(errors) +
                '. Fix the data or the config (tools/check_data.py CONFIG '
                'reports every problem).')
    return results
