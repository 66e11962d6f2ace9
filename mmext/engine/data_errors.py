"""A sample that fails to load names itself.

An exception in a dataset's pipeline (a cut-off or empty image, an
instance without a mask) surfaces as the transform's own error, without
the file, and from a DataLoader worker as one flattened "Caught X in
DataLoader worker process 0. Original Traceback ..." text.
:func:`guard_pipelines` wraps the pipelines of a built dataset so that
any such exception becomes a :class:`DataLoadError`: one line naming the
image (and label map or annotation ids) and the cause; the original
traceback travels with it for the log. It also stops two kinds of bad
samples before the framework's loaders meet them:

* an image with a side under :data:`MIN_SEG_SIDE` pixels in a segmentation
  set (mmseg's label loading squeezes 1-pixel sides away and crashes);
* a label map whose size differs from its image (mmseg would stretch it
  to the image and train on misplaced labels).
"""
import json
import os.path as osp
import re
from typing import Optional

from mmext.datasets.checks import describe_image_file
from mmext.errors import DataLoadError

#: smallest side (pixels) of an image with a label map: mmseg's
#: LoadAnnotations squeezes the map, so a 1-pixel side loses a dimension
MIN_SEG_SIDE = 2


def clean_cause(err: BaseException) -> str:
    """``Type: first line`` of an exception, OpenCV's location prefix
    ("OpenCV(4.x) file.cpp:12: error: (-215:Assertion failed)") dropped so
    that no second "error:" appears in the tool's line."""
    text = ' '.join(str(err).split()) or type(err).__name__
    text = re.sub(r'OpenCV\([^)]*\)\s*\S+:\d+:\s*error:\s*\(-?\d+:([^)]*)\)',
                  r'OpenCV \1:', text)
    if isinstance(err, KeyError):
        return f'missing key {text}'
    if type(err).__name__ == 'error':  # cv2.error: the text says OpenCV
        return text
    return f'{type(err).__name__}: {text}'


def _empty_segmentation_ids(ann_file: str, img_id) -> list:
    """Annotation ids of image ``img_id`` whose segmentation is empty,
    looked up in ``ann_file`` (only on the way to an error)."""
    try:
        with open(ann_file) as f:
            anns = json.load(f).get('annotations', [])
    except (OSError, ValueError):
        return []
    return [a.get('id') for a in anns if a.get('image_id') == img_id
            and not a.get('segmentation') and not a.get('ignore')]


class GuardedPipeline:
    """A dataset pipeline (mmengine ``Compose``) that runs the same
    transforms, and turns a failure into a :class:`DataLoadError` naming the
    sample. Attributes are those of the wrapped pipeline."""

    def __init__(self, pipeline, ann_file: Optional[str] = None):
        self.pipeline = pipeline
        self.ann_file = ann_file

    def __getattr__(self, name):
        if name == 'pipeline':  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.pipeline, name)

    def __repr__(self) -> str:
        return repr(self.pipeline)

    def __call__(self, results: dict):
        transforms = getattr(self.pipeline, 'transforms', None)
        if transforms is None:  # not a Compose: a single callable
            return self._run(self.pipeline, results)
        for transform in transforms:
            had_map = 'gt_seg_map' in results
            results = self._run(transform, results)
            if results is None:
                return None
            self._check(results, had_map)
        return results

    def _run(self, transform, results: dict):
        try:
            return transform(results)
        except DataLoadError:
            raise
        except Exception as err:  # noqa: BLE001 - named, then re-raised
            raise DataLoadError(self._describe(transform, results,
                                               err)) from err

    # -- what went wrong --------------------------------------------------
    def _describe(self, transform, results: dict, err: Exception) -> str:
        name = type(transform).__name__
        img = results.get('img_path')
        seg = results.get('seg_map_path')
        if 'LoadImage' in name and img:
            return f'{img} {describe_image_file(img) or clean_cause(err)}'
        if 'LoadAnnotations' in name:
            if seg and 'gt_seg_map' not in results:
                problem = describe_image_file(seg, unchanged=True)
                if problem:
                    return f'label map {seg} {problem} (image {img})'
            if isinstance(err, KeyError) and err.args == ('mask', ):
                return self._no_mask(results)
        return f'{name} failed on {img}: {clean_cause(err)}'

    def _no_mask(self, results: dict) -> str:
        img, img_id = results.get('img_path'), results.get('img_id')
        where = f'image {img} (img_id {img_id})'
        ids = _empty_segmentation_ids(self.ann_file, img_id) \
            if self.ann_file and osp.isfile(self.ann_file) else []
        if ids:
            where += f', annotation id(s) {", ".join(map(str, ids))}'
        return (f'an instance without a mask (an empty "segmentation") in '
                f'{where} of {self.ann_file}; give it a polygon or remove it '
                '(tools/check_data.py CONFIG lists them all)')

    # -- checks between transforms ----------------------------------------
    def _check(self, results: dict, had_map: bool) -> None:
        shape = results.get('ori_shape')
        if shape is None:
            return
        img = results.get('img_path')
        if results.get('seg_map_path') and not had_map \
                and min(shape[:2]) < MIN_SEG_SIDE:
            raise DataLoadError(
                f'{img} is {shape[1]}x{shape[0]} pixels: segmentation '
                f'images need at least {MIN_SEG_SIDE} pixels on each side '
                "(mmseg's label loading cannot read a map with a 1-pixel "
                'side); resize or remove it.')
        seg_map = results.get('gt_seg_map')
        if seg_map is not None and not had_map and \
                tuple(seg_map.shape[:2]) != tuple(shape[:2]):
            raise DataLoadError(
                f'label map {results.get("seg_map_path")} is '
                f'{seg_map.shape[1]}x{seg_map.shape[0]} but its image {img} '
                f'is {shape[1]}x{shape[0]}; they must be the same size '
                '(tools/check_data.py CONFIG lists every such pair).')


def _leaf_datasets(dataset):
    """The datasets that own a pipeline, through wrappers (Concat, Repeat,
    ClassBalanced...)."""
    inner = getattr(dataset, 'datasets', None)
    if isinstance(inner, (list, tuple)):
        for sub in inner:
            yield from _leaf_datasets(sub)
        return
    if getattr(dataset, 'pipeline', None) is None and \
            getattr(dataset, 'dataset', None) is not None:
        yield from _leaf_datasets(dataset.dataset)
        return
    yield dataset


def guard_pipelines(dataset) -> None:
    """Wrap the pipeline of ``dataset`` (and of the datasets inside a
    wrapper) in :class:`GuardedPipeline`; idempotent."""
    for leaf in _leaf_datasets(dataset):
        pipeline = getattr(leaf, 'pipeline', None)
        if pipeline is None or isinstance(pipeline, GuardedPipeline):
            continue
        ann_file = getattr(leaf, 'ann_file', None)
        leaf.pipeline = GuardedPipeline(
            pipeline, ann_file if isinstance(ann_file, str) else None)
