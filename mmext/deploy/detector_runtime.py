"""Running an exported Mask R-CNN (:mod:`mmext.deploy.detector`) in
onnxruntime and turning its outputs into mmdet ``DetDataSample``s.

The graph ends at boxes in the network input's pixels and 28x28 mask
probabilities. What mmdet's ``FCNMaskHead.predict_by_feat`` does after that
is done here in numpy, as mmdet does it on the CPU: boxes divided by the
pipeline's ``scale_factor``, each box's mask resampled (bilinear,
``grid_sample(align_corners=False)``, zeros outside) into the original
image within the box's pixel bounds plus one pixel, then thresholded at
``mask_thr_binary``.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np


def _axis_weights(start: int, stop: int, lo: float, hi: float,
                  size: int) -> np.ndarray:
    """Bilinear weights ``(stop - start, size)`` that resample ``size``
    mask cells spanning ``[lo, hi]`` at pixel centres ``start..stop-1``,
    following ``grid_sample(align_corners=False, padding_mode='zeros')``
    in float32 as mmdet's ``_do_paste_mask`` feeds it."""
    centres = np.arange(start, stop, dtype=np.float32) + np.float32(0.5)
    with np.errstate(divide='ignore', invalid='ignore'):
        grid = (centres - np.float32(lo)) / np.float32(hi - lo)
    grid = grid * np.float32(2) - np.float32(1)
    grid[np.isinf(grid)] = 0  # a box of zero width, as mmdet
    pos = ((grid + np.float32(1)) * np.float32(size) - np.float32(1)) / \
        np.float32(2)
    left = np.floor(pos)
    frac = (pos - left).astype(np.float32)
    left = left.astype(np.int64)
    weights = np.zeros((len(pos), size), np.float32)
    rows = np.arange(len(pos))
    for cell, weight in ((left, np.float32(1) - frac), (left + 1, frac)):
        inside = (cell >= 0) & (cell < size)
        weights[rows[inside], cell[inside]] += weight[inside]
    return weights


def paste_masks(probs: np.ndarray,
                boxes: np.ndarray,
                image_hw: Tuple[int, int],
                threshold: float = 0.5) -> np.ndarray:
    """Paste ``(N, M, M)`` mask probabilities into ``(N, H, W)`` booleans at
    ``boxes`` ``(N, 4)`` (x1 y1 x2 y2 in the pixels of ``image_hw``)."""
    height, width = image_hw
    out = np.zeros((len(probs), height, width), bool)
    size_y, size_x = probs.shape[-2:]
    for i, (prob, box) in enumerate(zip(probs, boxes.astype(np.float32))):
        x1, y1, x2, y2 = (float(v) for v in box)
        left = max(int(np.floor(x1)) - 1, 0)
        top = max(int(np.floor(y1)) - 1, 0)
        right = min(int(np.ceil(x2)) + 1, width)
        bottom = min(int(np.ceil(y2)) + 1, height)
        if right <= left or bottom <= top:
            continue
        wy = _axis_weights(top, bottom, y1, y2, size_y)
        wx = _axis_weights(left, right, x1, x2, size_x)
        region = wy @ prob.astype(np.float32) @ wx.T
        out[i, top:bottom, left:right] = region >= threshold
    return out


class OnnxMaskRCNN:
    """An exported Mask R-CNN in onnxruntime.

    ``predict(data_batch)`` takes a batch as mmdet's test dataloader gives
    it (``inputs``: uint8 ``(3, H, W)`` tensors, ``data_samples`` with
    ``scale_factor`` and ``ori_shape``) and returns ``DetDataSample``s with
    ``pred_instances`` (``bboxes``, ``scores``, ``labels``, ``masks``) as
    ``model.test_step`` would, ready for mmdet's ``CocoMetric``.
    """

    def __init__(self,
                 onnx_file: str,
                 mask_thr_binary: float = 0.5,
                 providers: Optional[Sequence[str]] = None,
                 threads: Optional[int] = None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            onnx_file,
            options,
            providers=list(providers or ['CPUExecutionProvider']))
        self.mask_thr_binary = mask_thr_binary

    def run(self, image: np.ndarray) -> List[np.ndarray]:
        """The raw graph outputs (boxes, scores, labels, masks) for one
        ``(3, H, W)`` or ``(1, 3, H, W)`` image."""
        image = np.asarray(image, np.float32)
        if image.ndim == 3:
            image = image[None]
        return self.session.run(None, {'image': image})

    def to_instances(self, outputs: Sequence[np.ndarray], meta: dict):
        """mmdet's ``InstanceData`` from the raw outputs of one image."""
        import torch
        from mmengine.structures import InstanceData
        boxes, scores, labels, probs = outputs
        scale = np.asarray(meta.get('scale_factor', (1., 1.)), np.float32)
        boxes = boxes.astype(np.float32) / np.tile(scale, 2)
        ori_hw = tuple(int(v) for v in meta['ori_shape'][:2])
        masks = paste_masks(probs, boxes, ori_hw, self.mask_thr_binary)
        result = InstanceData()
        result.bboxes = torch.from_numpy(boxes)
        result.scores = torch.from_numpy(scores.astype(np.float32))
        result.labels = torch.from_numpy(labels.astype(np.int64))
        result.masks = torch.from_numpy(masks)
        return result

    def predict(self, data_batch: dict) -> list:
        samples = []
        for image, sample in zip(data_batch['inputs'],
                                 data_batch['data_samples']):
            image = image.numpy() if hasattr(image, 'numpy') else image
            sample = sample.clone()
            sample.pred_instances = self.to_instances(
                self.run(image), sample.metainfo)
            samples.append(sample)
        return samples


def evaluate(cfg, predict, max_images: Optional[int] = None) -> dict:
    """Score ``predict(data_batch) -> DetDataSample list`` with the test
    dataloader and evaluator of the mmdet config ``cfg`` (e.g. CocoMetric
    box and mask AP). ``max_images`` keeps the first images only and
    restricts the metric to them."""
    import copy

    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner
    loader_cfg = copy.deepcopy(cfg.test_dataloader)
    if max_images:
        loader_cfg.dataset.indices = max_images
    loader = Runner.build_dataloader(loader_cfg)
    evaluator = Evaluator(copy.deepcopy(cfg.test_evaluator))
    evaluator.dataset_meta = loader.dataset.metainfo
    ids = []
    for batch in loader:
        ids += [s.img_id for s in batch['data_samples']]
        evaluator.process(data_samples=predict(batch), data_batch=batch)
    for metric in evaluator.metrics:
        if hasattr(metric, 'img_ids'):  # CocoMetric: only the images run
            metric.img_ids = ids
    return evaluator.evaluate(len(ids))
