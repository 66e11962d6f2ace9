"""Mask R-CNN (and Cascade) to ONNX: a test-time forward in ONNX ops.

mmdet's ``predict`` calls mmcv's RoIAlign and NMS kernels (custom ops that
onnxruntime lacks) and branches on data in Python. :class:`MaskRCNNExport`
re-states the same test-time computation with ``torchvision.ops.nms`` and
``roi_align`` (which both exporters translate to ONNX ``NonMaxSuppression``
and ``RoiAlign``) and tensor-only control flow, step by step as mmdet does
it:

* preprocessing: BGR to RGB, mean / std, zero padding to the size divisor;
* RPN per level: sigmoid scores, the ``nms_pre`` best anchors, delta decoding
  clipped to the unpadded image, ``min_bbox_size`` filter, NMS with the
  levels kept apart (mmdet's ``batched_nms`` over level ids), the
  ``max_per_img`` best proposals;
* RoI features on the FPN level chosen by ``sqrt(wh) / finest_scale``,
  RoIAlign with the layer's ``aligned`` / ``sampling_ratio``;
* box head: softmax, class-wise decoding, ``score_thr``, class-wise NMS,
  ``max_per_img``;
* mask head on the kept boxes: the sigmoid mask of each box's class;
* Cascade: see :class:`MaskRCNNExport`.

The graph ends at boxes in the network input's pixels and ``28x28`` mask
probabilities; scaling back to the original image and mask pasting are
done by :mod:`mmext.deploy.detector_runtime` in numpy (as mmdet does on
the CPU, box by box). Written up in docs/deploy_detector.md.
"""
import io
import math
import os.path as osp
import warnings
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms, roi_align

from mmext.errors import ConfigError

#: names of the graph's inputs and outputs
INPUT_NAMES = ('image', )
OUTPUT_NAMES = ('boxes', 'scores', 'labels', 'masks')


class DetectorExportError(ConfigError):
    """A detector or an export request this module cannot handle (a
    ConfigError, so the tools print it as one line)."""


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise DetectorExportError(
            f'ONNX export of Mask R-CNN: {what}; supported: mmdet\'s '
            'RPNHead (sigmoid), StandardRoIHead or CascadeRoIHead, '
            'DeltaXYWHBBoxCoder, SingleRoIExtractor + RoIAlign (avg), '
            'FCNMaskHead, nms')


def _type_name(obj) -> str:
    return type(obj).__name__


def decode_deltas(priors: Tensor, deltas: Tensor, coder,
                  image_hw: Tuple) -> Tensor:
    """mmdet's ``delta2bbox`` (DeltaXYWHBBoxCoder) for ``(N, 4)`` priors
    and deltas, clipped to ``image_hw`` as ``clip_border`` says."""
    stds = deltas.new_tensor(coder.stds)
    means = deltas.new_tensor(coder.means)
    deltas = deltas * stds + means
    dxy, dwh = deltas[:, :2], deltas[:, 2:]
    pxy = (priors[:, :2] + priors[:, 2:]) * 0.5
    pwh = priors[:, 2:] - priors[:, :2]
    max_ratio = abs(math.log(16 / 1000))  # mmdet's wh_ratio_clip
    dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + pwh * dxy
    gwh = pwh * dwh.exp()
    boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    if coder.clip_border:
        height, width = image_hw
        x = boxes[:, 0::2].clamp(min=0).clamp(max=width)
        y = boxes[:, 1::2].clamp(min=0).clamp(max=height)
        boxes = torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=-1)
    return boxes


def grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor,
                iou_threshold: float, max_num: int) -> Tensor:
    """mmcv's ``batched_nms``: boxes of different groups never suppress
    each other (each group is shifted by ``max coordinate + 1``). Returns
    the kept indices, best score first, at most ``max_num``."""
    # a zero joins the max so that no boxes (tracing an empty case) work;
    # the same offsets as mmcv's for boxes clipped to the image (>= 0)
    top = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = groups.to(boxes) * (top + 1)
    keep = nms(boxes + offsets[:, None], scores, float(iou_threshold))
    return keep[:max_num] if max_num > 0 else keep


def _roi_stages(roi_head):
    """The RoI head's stages as lists: (box extractors, box heads, mask
    extractors, mask heads); one of each for Mask R-CNN."""
    def as_list(module):
        return list(module) if isinstance(module, nn.ModuleList) else [module]

    box_ext = as_list(roi_head.bbox_roi_extractor)
    mask_ext = box_ext if roi_head.share_roi_extractor else as_list(
        roi_head.mask_roi_extractor)
    return (box_ext, as_list(roi_head.bbox_head), mask_ext,
            as_list(roi_head.mask_head))


class MaskRCNNExport(nn.Module):
    """The test-time forward of an mmdet ``MaskRCNN`` (or ``CascadeRCNN``
    with masks) in exportable ops.

    ``forward(image)`` takes one image as the test pipeline gives it
    (``(1, 3, H, W)``, any H and W, values 0-255 in the loaded channel
    order, not normalised, not padded) and returns

    * ``boxes`` ``(N, 4)`` x1 y1 x2 y2 in the pixels of ``image``,
    * ``scores`` ``(N, )``, ``labels`` ``(N, )`` (int64),
    * ``masks`` ``(N, 28, 28)``: the mask probabilities of each box's class,

    N being at most ``test_cfg.rcnn.max_per_img``. Cascade: each box stage
    refines the RoIs of the next by its top class's deltas, the class
    logits are averaged over the stages and the mask probabilities over
    the mask heads, as mmdet's ``CascadeRoIHead`` does.
    """

    def __init__(self, detector: nn.Module):
        super().__init__()
        self._check(detector)
        self.detector = detector.eval()
        pre = detector.data_preprocessor
        self.register_buffer('mean', pre.mean.detach().clone().view(1, -1, 1,
                                                                    1))
        self.register_buffer('std', pre.std.detach().clone().view(1, -1, 1,
                                                                  1))
        self.bgr_to_rgb = bool(pre._channel_conversion)
        self.normalize = bool(pre._enable_normalize)
        self.size_divisor = int(pre.pad_size_divisor)
        self.pad_value = float(pre.pad_value)
        self.rpn_cfg = detector.test_cfg.rpn
        self.rcnn_cfg = detector.test_cfg.rcnn
        (self.box_extractors, self.box_heads, self.mask_extractors,
         self.mask_heads) = _roi_stages(detector.roi_head)

    @staticmethod
    def _check(detector) -> None:
        for attr in ('backbone', 'rpn_head', 'roi_head', 'data_preprocessor'):
            _require(hasattr(detector, attr), f'the model has no {attr}')
        rpn, roi = detector.rpn_head, detector.roi_head
        _require(_type_name(rpn) == 'RPNHead' and rpn.use_sigmoid_cls,
                 f'rpn_head is {_type_name(rpn)}')
        _require(
            _type_name(roi) in ('StandardRoIHead', 'CascadeRoIHead'),
            f'roi_head is {_type_name(roi)}')
        _require(roi.with_mask, 'the RoI head has no mask branch')
        box_ext, box_heads, mask_ext, mask_heads = _roi_stages(roi)
        for head in box_heads:
            _require(not head.custom_cls_channels,
                     f'{_type_name(head.loss_cls)} classification')
        for head in mask_heads:
            _require(_type_name(head) == 'FCNMaskHead',
                     f'mask_head is {_type_name(head)}')
        for coder in [rpn.bbox_coder] + [h.bbox_coder for h in box_heads]:
            _require(
                _type_name(coder) == 'DeltaXYWHBBoxCoder'
                and not coder.add_ctr_clamp, f'bbox coder {_type_name(coder)}')
        for ext in box_ext + mask_ext:
            _require(
                _type_name(ext) == 'SingleRoIExtractor',
                f'RoI extractor {_type_name(ext)}')
            for layer in ext.roi_layers:
                _require(
                    _type_name(layer) == 'RoIAlign'
                    and layer.pool_mode == 'avg',
                    f'RoI layer {layer!r}')
        cfg = detector.test_cfg
        for key, nms_cfg in (('rpn', cfg.rpn.nms), ('rcnn', cfg.rcnn.nms)):
            _require(
                nms_cfg.get('type', 'nms') == 'nms',
                f'test_cfg.{key}.nms.type={nms_cfg.get("type")} (only nms)')

    # -- steps --------------------------------------------------------------
    def preprocess(self, image: Tensor) -> Tensor:
        x = image.float()
        if self.bgr_to_rgb:
            x = x.flip(1)
        if self.normalize:
            x = (x - self.mean) / self.std
        height, width = x.shape[-2:]
        div = self.size_divisor
        if div > 1:
            pad_h = (div - height % div) % div
            pad_w = (div - width % div) % div
            x = F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_value)
        return x

    def proposals(self, feats: Sequence[Tensor], image_hw) -> Tensor:
        """RPN proposals ``(K, 4)`` as ``RPNHead.predict`` gives them."""
        rpn, cfg = self.detector.rpn_head, self.rpn_cfg
        cls_scores, bbox_preds = rpn(feats)
        nms_pre = cfg.get('nms_pre', -1)
        scores, deltas, priors, levels = [], [], [], []
        for level, (cls, reg) in enumerate(zip(cls_scores, bbox_preds)):
            anchors = rpn.prior_generator.single_level_grid_priors(
                cls.shape[-2:], level, dtype=cls.dtype, device=cls.device)
            score = cls[0].permute(1, 2, 0).reshape(-1).sigmoid()
            delta = reg[0].permute(1, 2, 0).reshape(-1, 4)
            if nms_pre > 0:  # a slice longer than the level keeps it all
                score, order = score.sort(descending=True)
                order = order[:nms_pre]
                score = score[:nms_pre]
                delta, anchors = delta[order], anchors[order]
            scores.append(score)
            deltas.append(delta)
            priors.append(anchors)
            levels.append(torch.full_like(score, level, dtype=torch.long))
        scores, levels = torch.cat(scores), torch.cat(levels)
        boxes = decode_deltas(
            torch.cat(priors), torch.cat(deltas), rpn.bbox_coder, image_hw)
        min_size = cfg.get('min_bbox_size', -1)
        if min_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            valid = (wh[:, 0] > min_size) & (wh[:, 1] > min_size)
            boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        keep = grouped_nms(boxes, scores, levels, cfg.nms.iou_threshold,
                           cfg.max_per_img)
        return boxes[keep]

    @staticmethod
    def roi_features(extractor, feats: Sequence[Tensor],
                     boxes: Tensor) -> Tensor:
        """``SingleRoIExtractor`` for one image: every box is pooled on
        every level and the level mmdet maps it to is kept (the same
        numbers as pooling each level's boxes alone, without the
        data-dependent split)."""
        feats = feats[:extractor.num_inputs]
        rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)
        if len(feats) == 1:
            target = None
        else:
            target = extractor.map_roi_levels(rois, len(feats))
        out = None
        for level, (feat, layer) in enumerate(
                zip(feats, extractor.roi_layers)):
            pooled = roi_align(feat, rois, layer.output_size,
                               layer.spatial_scale, layer.sampling_ratio,
                               layer.aligned)
            if out is None:
                out = pooled
            else:
                chosen = (target == level).view(-1, 1, 1, 1)
                out = torch.where(chosen, pooled, out)
        return out

    @staticmethod
    def _class_deltas(head, deltas: Tensor, labels: Tensor) -> Tensor:
        """``(N, 4)`` deltas of ``labels`` (``regress_by_class``)."""
        if head.reg_class_agnostic:
            return deltas
        return deltas.view(deltas.shape[0], -1, 4)[torch.arange(
            deltas.shape[0], device=deltas.device), labels]

    def detections(self, feats: Sequence[Tensor], rois: Tensor,
                   image_hw) -> Tuple[Tensor, Tensor, Tensor]:
        """``predict_bbox`` of the RoI head + ``multiclass_nms``."""
        logits = []
        last = len(self.box_heads) - 1
        for stage, (extractor, head) in enumerate(
                zip(self.box_extractors, self.box_heads)):
            cls_score, deltas = head(
                self.roi_features(extractor, feats, rois))
            logits.append(cls_score)
            if stage < last:  # cascade: the next stage's RoIs
                top = cls_score[:, :-1].argmax(dim=1)
                rois = decode_deltas(rois, self._class_deltas(
                    head, deltas, top), head.bbox_coder, image_hw)
        head, cfg = self.box_heads[-1], self.rcnn_cfg
        num_classes = head.num_classes
        scores = F.softmax(sum(logits) / float(len(logits)), dim=-1)
        scores = scores[:, :num_classes].reshape(-1)
        if head.reg_class_agnostic:
            boxes = decode_deltas(rois, deltas, head.bbox_coder, image_hw)
            boxes = boxes.repeat_interleave(num_classes, dim=0)
        else:
            boxes = decode_deltas(
                rois.repeat_interleave(num_classes, dim=0),
                deltas.reshape(-1, 4), head.bbox_coder, image_hw)
        labels = torch.arange(
            num_classes, device=boxes.device).repeat(rois.shape[0])
        valid = scores > cfg.score_thr
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
        keep = grouped_nms(boxes, scores, labels, cfg.nms.iou_threshold,
                           cfg.max_per_img)
        return boxes[keep], scores[keep], labels[keep]

    def mask_probs(self, feats: Sequence[Tensor], boxes: Tensor,
                   labels: Tensor) -> Tensor:
        """The mask heads' sigmoid (averaged over cascade stages) of each
        box's class."""
        probs = torch.stack([
            head(self.roi_features(extractor, feats, boxes)).sigmoid()
            for extractor, head in zip(self.mask_extractors, self.mask_heads)
        ]).mean(dim=0)
        if self.mask_heads[-1].class_agnostic:
            return probs[:, 0]
        index = labels.view(-1, 1, 1, 1).expand(-1, 1, *probs.shape[-2:])
        return probs.gather(1, index)[:, 0]

    def forward(self, image: Tensor):
        image_hw = image.shape[-2:]
        feats = self.detector.extract_feat(self.preprocess(image))
        proposals = self.proposals(feats, image_hw)
        boxes, scores, labels = self.detections(feats, proposals, image_hw)
        masks = self.mask_probs(feats, boxes, labels)
        return boxes, scores, labels, masks


def mmdet_predict(detector: nn.Module, image: Tensor):
    """mmdet's own ``predict`` of one ``(1, 3, H, W)`` image given as to
    :class:`MaskRCNNExport` (the reference its outputs equal): its
    ``pred_instances`` in the pixels of ``image``, masks pasted."""
    from mmdet.structures import DetDataSample
    hw = tuple(image.shape[-2:])
    meta = dict(img_shape=hw, ori_shape=hw, scale_factor=(1., 1.))
    data = detector.data_preprocessor(
        dict(inputs=[image[0].round().clamp(0, 255).byte()],
             data_samples=[DetDataSample(metainfo=meta)]), False)
    with torch.no_grad():
        return detector.predict(data['inputs'],
                                data['data_samples'])[0].pred_instances


#: RoiAlign's ``coordinate_transformation_mode`` (mmcv's ``aligned=True``)
#: exists from opset 16; the dynamo exporter starts at 18
MIN_OPSET = 16
EXPORTERS = ('torchscript', 'dynamo')


def export_detector(model: nn.Module,
                    example_inputs: Tensor,
                    out_file: str,
                    opset: Optional[int] = None,
                    dynamic: bool = True,
                    exporter: str = 'torchscript',
                    overwrite: bool = False) -> str:
    """Export an mmdet Mask R-CNN to ``out_file`` (ONNX).

    ``example_inputs`` is one image ``(1, 3, H, W)`` as the test pipeline
    gives it (see :class:`MaskRCNNExport`); with ``dynamic`` the graph takes
    any height and width. ``exporter``: ``'torchscript'`` (``torch.onnx.
    export(dynamo=False)``, opset 17 by default; seconds) or ``'dynamo'``
    (``torch.export``, opset 18; minutes, see docs/deploy_detector.md).
    Written atomically; an existing file is kept unless ``overwrite``.
    """
    from mmext.utils.fileio import atomic_write
    if exporter not in EXPORTERS:
        raise DetectorExportError(
            f'exporter={exporter!r}: choose one of {", ".join(EXPORTERS)}')
    if opset is None:
        opset = 17 if exporter == 'torchscript' else 18
    if opset < MIN_OPSET:
        raise DetectorExportError(
            f'opset {opset}: RoiAlign with mmdet\'s aligned=True needs '
            f'opset >= {MIN_OPSET} (coordinate_transformation_mode)')
    if isinstance(example_inputs, (tuple, list)) and \
            len(example_inputs) == 1:
        example_inputs = example_inputs[0]
    shape = tuple(getattr(example_inputs, 'shape', ()))
    if not (isinstance(example_inputs, Tensor) and len(shape) == 4
            and shape[:2] == (1, 3)):
        raise DetectorExportError(
            'example_inputs must be one image tensor (1, 3, H, W) (batch 1), '
            f'got {shape or type(example_inputs).__name__}')
    if osp.exists(out_file) and not overwrite:
        raise FileExistsError(
            f'{out_file} exists; pass overwrite=True (--force) to replace it')
    wrapper = model if isinstance(model, MaskRCNNExport) else \
        MaskRCNNExport(model)
    wrapper.eval()
    image = example_inputs.float()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter's deprecation and tracer notes
        warnings.simplefilter('ignore')
        if exporter == 'torchscript':
            data = _torchscript_onnx(wrapper, image, opset, dynamic)
        else:
            data = _dynamo_onnx(wrapper, image, opset, dynamic)
    with atomic_write(out_file, 'wb', force=overwrite) as f:
        f.write(data)
    return out_file


def _torchscript_onnx(module: nn.Module, image: Tensor, opset: int,
                      dynamic: bool) -> bytes:
    buffer = io.BytesIO()
    axes = dict(image={2: 'height', 3: 'width'}) if dynamic else None
    torch.onnx.export(
        module, (image, ),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        dynamic_axes=axes)
    return buffer.getvalue()


def _dynamo_onnx(module: nn.Module, image: Tensor, opset: int,
                 dynamic: bool) -> bytes:
    shapes = None
    if dynamic:
        dim = torch.export.Dim
        shapes = dict(image={
            2: dim('height', min=32, max=8192),
            3: dim('width', min=32, max=8192)
        })
    program = torch.onnx.export(
        module, (image, ),
        dynamo=True,
        input_names=list(INPUT_NAMES),
        output_names=list(OUTPUT_NAMES),
        opset_version=opset,
        dynamic_shapes=shapes,
        optimize=True)
    return program.model_proto.SerializeToString()
