"""A detector with a known answer for testing instance-mask TTA.

``TTAProbeDetector`` reads the ground truth of each image from a COCO file
and returns it as a detector would: boxes and mask probabilities in the
original image frame (``rescale=True``) but *as seen in the view*, i.e.
mirrored for a flipped view (mmdet detectors do not undo flips; the box goes
through the view's scale factor and back, as mmdet's rescale does).

* object ``a`` (label 0) is returned by every view, with probability 0.9 on
  its mask and 0.3 on the rest of its box (below the 0.5 threshold);
* object ``b`` (label 1) only by one view per image: the (short side,
  flip) combination ``combos[index % len(combos)]`` from ``$TTA_PROBE_VIEWS``
  or the constructor.

After TTA the merged prediction equals the ground truth only if every view
ran and its flip was undone. Every call is appended to ``$TTA_PROBE_LOG``
(image, short side, flip) when that variable is set.
"""
import json
import os
import os.path as osp

import numpy as np
import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmengine.structures import InstanceData

PROB_IN, PROB_RING = 0.9, 0.3


class _ProbeRoIHead(torch.nn.Module):
    """Holds ``test_cfg.mask_thr_binary`` where mmdet's two-stage detectors
    keep it, so the TTA model can ask for soft masks."""

    def __init__(self, mask_thr_binary=0.5):
        super().__init__()
        self.test_cfg = dict(mask_thr_binary=mask_thr_binary)


def image_index(img_path: str) -> int:
    return int(osp.splitext(osp.basename(img_path))[0].split('_')[-1])


@MODELS.register_module(force=True)
class TTAProbeDetector(BaseDetector):

    def __init__(self, ann_file, combos=None, data_preprocessor=None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.ann_file = ann_file
        self.combos = [tuple(c) for c in (combos or json.loads(
            os.environ['TTA_PROBE_VIEWS']))]
        self.roi_head = _ProbeRoIHead()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self._truth = None

    def truth(self, img_id):
        """[(box xyxy, label, bool mask HxW)] of an image."""
        if self._truth is None:
            from pycocotools.coco import COCO
            coco = COCO(self.ann_file)
            self._truth = {}
            for iid in coco.getImgIds():
                objs = []
                for ann in coco.loadAnns(coco.getAnnIds(imgIds=[iid])):
                    x, y, w, h = ann['bbox']
                    objs.append((torch.tensor([x, y, x + w, y + h]),
                                 ann['category_id'] - 1,
                                 torch.from_numpy(
                                     coco.annToMask(ann).astype(bool))))
                self._truth[iid] = objs
        return self._truth[img_id]

    def _predict_one(self, meta):
        h, w = meta['img_shape']
        sx, sy = meta['scale_factor']
        flip = bool(meta.get('flip', False))
        assert meta.get('flip_direction') in (None, 'horizontal')
        view = (min(h, w), flip)
        if os.environ.get('TTA_PROBE_LOG'):
            with open(os.environ['TTA_PROBE_LOG'], 'a') as f:
                f.write(json.dumps([osp.basename(meta['img_path']),
                                    *view]) + '\n')
        index = image_index(meta['img_path'])
        special = self.combos[index % len(self.combos)] == view
        scale = torch.tensor([sx, sy, sx, sy])
        boxes, labels, probs = [], [], []
        for box, label, mask in self.truth(meta['img_id']):
            if label == 1 and not special:
                continue
            # the detection as the view sees it, then rescaled to the
            # original size (mmdet divides by scale_factor, keeps the flip)
            b = box * scale
            if flip:
                b = torch.stack([w - b[2], b[1], w - b[0], b[3]])
            b = b / scale
            prob = torch.zeros(mask.shape)
            x1, y1, x2, y2 = box.floor().int().tolist()
            prob[y1:y2, x1:x2] = PROB_RING  # the box, x2 / y2 exclusive
            prob[mask] = PROB_IN
            if flip:
                prob = prob.flip(-1)
            boxes.append(b)
            labels.append(label)
            probs.append(prob)
        thr = self.roi_head.test_cfg['mask_thr_binary']
        probs = torch.stack(probs)
        res = InstanceData()
        res.bboxes = torch.stack(boxes).float()
        res.scores = torch.tensor([0.9 if c == 0 else 0.8 for c in labels])
        res.labels = torch.tensor(labels)
        res.masks = ((probs * 255).to(torch.uint8) if thr < 0 else
                     probs >= thr)
        return res

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        for sample in batch_data_samples:
            h, w = sample.img_shape
            assert batch_inputs.shape[-2] >= h and batch_inputs.shape[-1] >= w
            sample.pred_instances = self._predict_one(sample.metainfo)
        return batch_data_samples

    def loss(self, batch_inputs, batch_data_samples):
        return dict(loss=self.dummy.sum())

    def _forward(self, batch_inputs, batch_data_samples=None):
        return batch_inputs

    def extract_feat(self, batch_inputs):
        return batch_inputs


def write_probe_data(root, num_images, seed=0):
    """``num_images`` small images (odd sizes, both orientations) with an
    asymmetric quadrilateral ``a`` on the left and a triangle ``b`` on the
    right, as a COCO file ``ann.json`` and ``img/probe_XX.jpg``."""
    import cv2
    from pycocotools import mask as mask_utils
    rng = np.random.RandomState(seed)
    os.makedirs(osp.join(root, 'img'), exist_ok=True)
    images, anns = [], []
    sizes = [(61, 47), (45, 66), (52, 52)]
    for i in range(num_images):
        w, h = sizes[i % len(sizes)]
        img = rng.randint(0, 255, size=(h, w, 3)).astype(np.uint8)
        name = f'probe_{i:02d}.jpg'
        cv2.imwrite(osp.join(root, 'img', name), img)
        images.append(dict(id=i + 1, file_name=name, width=w, height=h))
        jx, jy = rng.randint(0, 4, size=2)
        quad = [2 + jx, 5 + jy, 0.45 * w, 3 + jy, 0.35 * w, 0.8 * h,
                4 + jx, 0.6 * h]
        tri = [0.6 * w, 0.9 * h, w - 3 - jx, 0.5 * h, 0.75 * w, 6 + jy]
        for cat, poly in ((1, quad), (2, tri)):
            poly = [float(round(v, 1)) for v in poly]
            rle = mask_utils.frPyObjects([poly], h, w)
            x, y, bw, bh = mask_utils.toBbox(mask_utils.merge(rle)).tolist()
            anns.append(dict(id=len(anns) + 1, image_id=i + 1,
                             category_id=cat, segmentation=[poly],
                             area=float(mask_utils.area(
                                 mask_utils.merge(rle))),
                             bbox=[x, y, bw, bh], iscrowd=0))
    with open(osp.join(root, 'ann.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns,
                       categories=[dict(id=1, name='a'),
                                   dict(id=2, name='b')]), f)
    return osp.join(root, 'ann.json')
