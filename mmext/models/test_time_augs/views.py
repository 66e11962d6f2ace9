"""Each TTA view's detections brought back to the original, unflipped
image frame, with masks compacted to per-detection crops (so that memory
stays bounded: nothing of size views x detections x H x W is held)."""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from mmengine.structures import InstanceData
from torch import Tensor


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
