"""Multi-scale + flip test-time augmentation for instance segmentation.

mmdet's ``DetTTAModel`` merges boxes only and drops masks.
:class:`InstanceSegTTAModel` runs every view of an image (the
``TestTimeAug`` pipeline: scales x flips) through the wrapped detector,
brings each view's detections back to the original, unflipped image frame,
fuses the boxes of all views (weighted box fusion or NMS), and gives each
fused detection the score-weighted mean of its members' mask probability
maps, thresholded once at the end.

Memory stays bounded: after each view the detector's full-image probability
maps are cut down to the support of each detection (a crop per detection),
and each fused mask is averaged inside the union of its members' crops, so
nothing of size ``views x detections x H x W`` is ever held.

``tools/test.py --tta`` calls :func:`apply_tta`, which wraps the config's
model in ``tta_model`` and swaps the test pipeline for ``tta_pipeline``.
"""
import copy
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv.ops import batched_nms
from mmengine.config import Config, ConfigDict
from mmengine.model import BaseTTAModel
from mmengine.structures import InstanceData
from torch import Tensor

from mmext.registry import MODELS
from mmext.utils.config_check import ConfigError

FUSIONS = ('nms', 'wbf')
# the usual thresholds: mmdet's TTA NMS and the WBF paper's default
DEFAULT_IOU_THR = dict(nms=0.5, wbf=0.55)


# --------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------
def unflip_boxes(boxes: Tensor, ori_shape: Sequence[int],
                 direction: str) -> Tensor:
    """Undo a flip of ``(x1, y1, x2, y2)`` boxes given in the original
    frame (height, width = ``ori_shape``); a flip is its own inverse."""
    h, w = ori_shape[:2]
    out = boxes.clone()
    if direction in ('horizontal', 'diagonal'):
        out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    if direction in ('vertical', 'diagonal'):
        out[:, 1], out[:, 3] = h - boxes[:, 3], h - boxes[:, 1]
    if direction not in ('horizontal', 'vertical', 'diagonal'):
        raise ValueError(f'unknown flip direction {direction!r}')
    return out


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of ``(n, 4)`` and ``(m, 4)`` boxes, ``(n, m)``."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(
        min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(
        min=0)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    return inter / union.clamp(min=1e-6)


@dataclass
class MaskCrop:
    """A detection's probability map (uint8, 255 = 1.0) on the rows
    ``y0:y0+h`` and columns ``x0:x0+w`` of the original image, zero
    outside."""
    probs: Tensor
    y0: int
    x0: int

    def unflip(self, ori_shape: Sequence[int], direction: str) -> 'MaskCrop':
        h, w = ori_shape[:2]
        ch, cw = self.probs.shape
        probs, y0, x0 = self.probs, self.y0, self.x0
        if direction in ('horizontal', 'diagonal'):
            probs, x0 = probs.flip(-1), w - (x0 + cw)
        if direction in ('vertical', 'diagonal'):
            probs, y0 = probs.flip(-2), h - (y0 + ch)
        return MaskCrop(probs, y0, x0)


def crop_to_support(mask: Tensor) -> MaskCrop:
    """The smallest crop of an (H, W) probability map (uint8 0..255, bool or
    float 0..1) that holds all of its non-zero pixels."""
    if mask.dtype == torch.bool:
        probs = mask.to(torch.uint8) * 255
    elif mask.dtype == torch.uint8:
        probs = mask
    else:
        probs = (mask.clamp(0, 1) * 255).round().to(torch.uint8)
    rows = torch.nonzero(probs.any(1)).flatten()
    cols = torch.nonzero(probs.any(0)).flatten()
    if rows.numel() == 0:
        return MaskCrop(probs.new_zeros((0, 0)), 0, 0)
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    return MaskCrop(probs[y0:y1, x0:x1].clone(), y0, x0)


@dataclass
class ViewDetections:
    """One view's detections in the original, unflipped image frame."""
    boxes: Tensor  # (n, 4)
    scores: Tensor  # (n, )
    labels: Tensor  # (n, )
    masks: Optional[List[MaskCrop]]  # None for a box-only detector


def view_detections(pred: InstanceData, meta: dict) -> ViewDetections:
    """Undo the view's flip (its resize was undone by the detector's
    ``rescale``) and compact its masks to per-detection crops."""
    ori_shape = meta['ori_shape']
    flip = meta.get('flip', False)
    direction = meta.get('flip_direction') or 'horizontal'
    boxes = pred.bboxes
    if flip:
        boxes = unflip_boxes(boxes, ori_shape, direction)
    masks = None
    if 'masks' in pred:
        full = pred.masks
        if not isinstance(full, Tensor):
            full = torch.as_tensor(full)
        masks = [crop_to_support(m) for m in full]
        if flip:
            masks = [c.unflip(ori_shape, direction) for c in masks]
    return ViewDetections(boxes, pred.scores, pred.labels, masks)


# --------------------------------------------------------------------------
# box fusion: both return, per fused detection, its box, score, label and
# the indices of the input boxes it was made from
# --------------------------------------------------------------------------
def fuse_nms(boxes: Tensor, scores: Tensor, labels: Tensor,
             iou_thr: float) -> Tuple[Tensor, Tensor, Tensor, List[Tensor]]:
    """Class-wise NMS over all views; a kept box's members are itself and
    the boxes it suppressed (same label, IoU > ``iou_thr`` with it, assigned
    to the highest-scoring such kept box, as greedy NMS does)."""
    _, keep = batched_nms(boxes, scores, labels,
                          dict(type='nms', iou_threshold=iou_thr))
    keep = keep[torch.argsort(scores[keep], descending=True)]
    iou = box_iou(boxes, boxes[keep])
    iou[labels[:, None] != labels[keep][None]] = -1
    # kept boxes are sorted by score: the first match is the suppressor
    over = iou > iou_thr
    owner = torch.where(over.any(1), over.float().argmax(1),
                        torch.full_like(labels, -1))
    owner[keep] = torch.arange(len(keep), device=keep.device)
    members = [torch.nonzero(owner == k).flatten() for k in range(len(keep))]
    return boxes[keep], scores[keep], labels[keep], members


def fuse_wbf(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thr: float,
             num_views: int) -> Tuple[Tensor, Tensor, Tensor, List[Tensor]]:
    """Weighted box fusion (Solovyev et al., 2021): boxes join, in order of
    score, the cluster of the same label whose fused box they overlap most
    (IoU > ``iou_thr``); a cluster's box is the score-weighted mean of its
    members, its score their mean score times ``min(members, views) /
    views`` (a detection seen by few views counts less)."""
    n = len(boxes)
    fused = boxes.new_zeros((n, 4))
    weighted_sum = boxes.new_zeros((n, 4))
    score_sum = scores.new_zeros(n)
    cluster_labels = labels.new_full((n, ), -1)
    members: List[List[int]] = []
    for i in torch.argsort(scores, descending=True).tolist():
        k = len(members)
        match = -1
        if k:
            iou = box_iou(boxes[i:i + 1], fused[:k])[0]
            iou[cluster_labels[:k] != labels[i]] = -1
            best = int(iou.argmax())
            if iou[best] > iou_thr:
                match = best
        if match < 0:
            match = k
            members.append([])
            cluster_labels[k] = labels[i]
        members[match].append(i)
        weighted_sum[match] += scores[i] * boxes[i]
        score_sum[match] += scores[i]
        fused[match] = weighted_sum[match] / score_sum[match]
    k = len(members)
    counts = torch.tensor([len(m) for m in members], dtype=scores.dtype,
                          device=scores.device)
    fused_scores = score_sum[:k] / counts * counts.clamp(
        max=num_views) / num_views
    return (fused[:k], fused_scores, cluster_labels[:k],
            [torch.tensor(m, dtype=torch.long) for m in members])


def average_mask(crops: Sequence[MaskCrop], weights: Sequence[float],
                 threshold: float,
                 out: Tensor) -> None:
    """Write into the (H, W) bool ``out`` the ``weights``-weighted mean of
    the member ``crops`` thresholded at ``threshold``; only the union of the
    crops is ever materialised."""
    crops = [(c, w) for c, w in zip(crops, weights) if c.probs.numel()]
    total = float(sum(weights))
    if not crops or total <= 0:
        return
    y0 = min(c.y0 for c, _ in crops)
    x0 = min(c.x0 for c, _ in crops)
    y1 = max(c.y0 + c.probs.shape[0] for c, _ in crops)
    x1 = max(c.x0 + c.probs.shape[1] for c, _ in crops)
    acc = torch.zeros((y1 - y0, x1 - x0), device=out.device)
    for c, w in crops:
        h, wd = c.probs.shape
        acc[c.y0 - y0:c.y0 - y0 + h, c.x0 - x0:c.x0 - x0 + wd] += \
            c.probs.to(acc) * (w / 255.)
    out[y0:y1, x0:x1] = acc >= threshold * total


def merge_views(views: Sequence[ViewDetections], ori_shape: Sequence[int],
                fusion: str = 'nms', iou_thr: float = 0.5,
                max_per_img: int = 100,
                mask_thr_binary: float = 0.5) -> InstanceData:
    """Fuse the detections of all views of one image (see the module
    docstring)."""
    if fusion not in FUSIONS:
        raise ValueError(f'tta_cfg.fusion={fusion!r}: use one of {FUSIONS}')
    device = views[0].boxes.device
    # the fusion loops over boxes: cheaper on the CPU than as tiny kernels
    boxes = torch.cat([v.boxes for v in views]).float().cpu()
    scores = torch.cat([v.scores for v in views]).float().cpu()
    labels = torch.cat([v.labels for v in views]).cpu()
    with_masks = all(v.masks is not None for v in views)
    h, w = ori_shape[:2]
    result = InstanceData()
    if len(boxes) == 0:
        result.bboxes, result.scores, result.labels = (
            boxes.to(device), scores.to(device), labels.to(device))
        if with_masks:
            result.masks = torch.zeros((0, h, w), dtype=torch.bool,
                                       device=device)
        return result
    if fusion == 'nms':
        fused, fscores, flabels, members = fuse_nms(boxes, scores, labels,
                                                    iou_thr)
    else:
        fused, fscores, flabels, members = fuse_wbf(boxes, scores, labels,
                                                    iou_thr, len(views))
    order = torch.argsort(fscores, descending=True)[:max_per_img]
    result.bboxes = fused[order].to(device)
    result.scores = fscores[order].to(device)
    result.labels = flabels[order].to(device)
    if with_masks:
        crops = [c for v in views for c in v.masks]
        masks = torch.zeros((len(order), h, w), dtype=torch.bool,
                            device=device)
        member_scores = scores.tolist()
        for row, k in enumerate(order.tolist()):
            idx = members[k].tolist()
            average_mask([crops[i] for i in idx],
                         [member_scores[i] for i in idx], mask_thr_binary,
                         masks[row])
        result.masks = masks
    return result


# --------------------------------------------------------------------------
# the TTA model
# --------------------------------------------------------------------------
@MODELS.register_module()
class InstanceSegTTAModel(BaseTTAModel):
    """Merge multi-scale / flipped views of a detector, masks included.

    Args:
        module (dict | nn.Module): the detector (any mmdet detector whose
            ``predict(rescale=True)`` returns boxes, and optionally masks, in
            the original image frame).
        tta_cfg (dict): ``fusion`` (``'wbf'``, the default, or ``'nms'``;
            docs/tta.md compares them), ``iou_thr`` (default 0.55 for WBF,
            0.5 for NMS), ``max_per_img`` (100), and ``mask_thr_binary``
            (default: the detector's ``roi_head.test_cfg.mask_thr_binary``,
            else 0.5).
    """

    def __init__(self, module, tta_cfg: Optional[dict] = None,
                 data_preprocessor=None):
        cfg = dict(fusion='wbf', max_per_img=100)
        cfg.update(tta_cfg or {})
        cfg.setdefault('iou_thr', DEFAULT_IOU_THR.get(cfg['fusion']))
        unknown = set(cfg) - {'fusion', 'iou_thr', 'max_per_img',
                              'mask_thr_binary'}
        if unknown:
            raise ValueError(f'tta_cfg: unknown key(s) {sorted(unknown)}; '
                             'use fusion, iou_thr, max_per_img, '
                             'mask_thr_binary')
        if cfg['fusion'] not in FUSIONS:
            raise ValueError(
                f'tta_cfg.fusion={cfg["fusion"]!r}: use one of {FUSIONS}')
        super().__init__(module=module, data_preprocessor=data_preprocessor)
        # masks are averaged as probabilities: the detector must not
        # threshold them (mmdet's mask heads give uint8 maps when
        # mask_thr_binary < 0)
        self._head_cfg = getattr(
            getattr(self.module, 'roi_head', None), 'test_cfg', None)
        head_thr = None
        if self._head_cfg is not None:
            head_thr = self._head_cfg.get('mask_thr_binary')
        cfg.setdefault('mask_thr_binary',
                       0.5 if head_thr is None else head_thr)
        self.tta_cfg = cfg

    def _predict_view(self, data) -> list:
        thr = None if self._head_cfg is None else \
            self._head_cfg.get('mask_thr_binary')
        if thr is None:
            return self.module.test_step(data)
        self._head_cfg['mask_thr_binary'] = -1
        try:
            return self.module.test_step(data)
        finally:
            self._head_cfg['mask_thr_binary'] = thr

    def test_step(self, data):
        """Run the views one after another, compacting each before the
        next (unlike ``BaseTTAModel``, which keeps every view's full-size
        output until the merge)."""
        if isinstance(data, dict):
            num_views = len(data[next(iter(data))])
            view_data = [{k: v[i] for k, v in data.items()}
                         for i in range(num_views)]
        else:
            num_views = len(data[0])
            view_data = [[d[i] for d in data] for i in range(num_views)]
        samples, views = None, None
        for one_view in view_data:
            preds = self._predict_view(one_view)
            if samples is None:
                samples, views = preds, [[] for _ in preds]
            for per_image, pred in zip(views, preds):
                per_image.append(
                    view_detections(pred.pred_instances, pred.metainfo))
        return [self._merged(s, v) for s, v in zip(samples, views)]

    def merge_preds(self, data_samples_list):
        """``BaseTTAModel`` API: merge already computed views."""
        return [
            self._merged(views[0], [
                view_detections(s.pred_instances, s.metainfo) for s in views
            ]) for views in data_samples_list
        ]

    def _merged(self, sample, views: List[ViewDetections]):
        sample.pred_instances = merge_views(views, sample.ori_shape,
                                            **self.tta_cfg)
        return sample


# --------------------------------------------------------------------------
# tools/test.py --tta
# --------------------------------------------------------------------------
_DET_HINT = (' For the detection configs inherit '
             "'configs/detection/_base_/instance_tta.py' (multi-scale + "
             'flip with masks), or set both keys yourself.')


def apply_tta(cfg: Config, config_name: str, task: str) -> None:
    """Make ``cfg`` test with its ``tta_model`` / ``tta_pipeline``; a
    config without them, or one whose TTA model would drop masks, is a
    :class:`ConfigError` that says what to add."""
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise ConfigError(
            f'--tta: {config_name} defines no tta_model / tta_pipeline.' +
            (_DET_HINT if task == 'mmdet' else ''))
    if task == 'mmdet' and cfg.tta_model.get('type') == 'DetTTAModel' and \
            cfg.model.get('roi_head', {}).get('mask_head') is not None:
        raise ConfigError(
            f"--tta: {config_name} uses mmdet's DetTTAModel, which drops "
            "instance masks; use type='mmext.InstanceSegTTAModel'.")
    # a copy: TestTimeAug builds its transforms into the lists it is given
    cfg.test_dataloader.dataset.pipeline = copy.deepcopy(cfg.tta_pipeline)
    tta_model = ConfigDict(cfg.tta_model)
    tta_model['module'] = cfg.model
    cfg.model = tta_model
