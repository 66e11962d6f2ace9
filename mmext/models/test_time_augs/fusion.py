"""Fusing the detections of all views: boxes by weighted box fusion or
NMS, masks by the score-weighted mean of the members' probability maps."""
from typing import List, Sequence, Tuple

import torch
from mmcv.ops import batched_nms
from mmengine.structures import InstanceData
from torch import Tensor

from .views import MaskCrop, ViewDetections

FUSIONS = ('nms', 'wbf')
# the usual thresholds: mmdet's TTA NMS and the WBF paper's default
DEFAULT_IOU_THR = dict(nms=0.5, wbf=0.55)

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
