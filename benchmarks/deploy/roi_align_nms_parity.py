"""RoIAlign and NMS in the exported Mask R-CNN against the PyTorch kernels.

The exported graph uses ONNX's RoiAlign (opset 16, ``half_pixel``,
``sampling_ratio=0``, avg) and NonMaxSuppression. In PyTorch, mmdet's
configs use mmcv's ``roi_align(aligned=True)`` (or torchvision's with
``use_torchvision=True``, as the demo config) and mmcv's / torchvision's
``nms``. This script runs the three of each on the same random inputs
(feature maps of the FPN strides, RoIs from sub-pixel to larger than the
map, partly and wholly outside it; clustered boxes with random scores) and
writes the largest differences to ``roi_align_nms_parity.json``.

    python benchmarks/deploy/roi_align_nms_parity.py [--out FILE]
"""
import argparse
import json
import os
import os.path as osp
import platform

import numpy as np
import onnx
import onnxruntime as ort
import torch
from mmcv.ops import nms as mmcv_nms
from mmcv.ops import roi_align as mmcv_roi_align
from onnx import TensorProto, helper
from torchvision.ops import nms as tv_nms
from torchvision.ops import roi_align as tv_roi_align

HERE = osp.dirname(osp.abspath(__file__))


def _session(node, inputs, outputs, opset):
    graph = helper.make_graph([node], 'g', inputs, outputs)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', opset)])
    onnx.checker.check_model(model)
    return ort.InferenceSession(
        model.SerializeToString(), providers=['CPUExecutionProvider'])


def ort_roi_align(feat, rois, size, scale):
    node = helper.make_node(
        'RoiAlign', ['x', 'rois', 'idx'], ['y'],
        output_height=size,
        output_width=size,
        sampling_ratio=0,
        spatial_scale=scale,
        mode='avg',
        coordinate_transformation_mode='half_pixel')
    f = TensorProto.FLOAT
    sess = _session(node, [
        helper.make_tensor_value_info('x', f, [None] * 4),
        helper.make_tensor_value_info('rois', f, [None, 4]),
        helper.make_tensor_value_info('idx', TensorProto.INT64, [None])
    ], [helper.make_tensor_value_info('y', f, [None] * 4)], 16)
    return sess.run(None, dict(
        x=feat.numpy(), rois=rois[:, 1:].numpy(),
        idx=rois[:, 0].long().numpy()))[0]


def ort_nms(boxes, scores, iou):
    node = helper.make_node('NonMaxSuppression',
                            ['boxes', 'scores', 'max', 'iou'], ['keep'])
    f = TensorProto.FLOAT
    sess = _session(node, [
        helper.make_tensor_value_info('boxes', f, [1, None, 4]),
        helper.make_tensor_value_info('scores', f, [1, 1, None]),
        helper.make_tensor_value_info('max', TensorProto.INT64, [1]),
        helper.make_tensor_value_info('iou', f, [1])
    ], [helper.make_tensor_value_info('keep', TensorProto.INT64, [None, 3])],
                    17)
    keep = sess.run(None, dict(
        boxes=boxes[None].numpy(), scores=scores[None, None].numpy(),
        max=np.array([len(boxes)], np.int64),
        iou=np.array([iou], np.float32)))[0]
    return keep[:, 2]


def random_rois(rng, num, height, width, stride):
    """RoIs in image pixels around a (height, width) map of ``stride``."""
    largest = 2.5 * max(height, width) * stride
    side = np.exp(rng.uniform(np.log(0.3), np.log(largest), num))
    aspect = np.exp(rng.uniform(-1.5, 1.5, num))
    w, h = side * aspect, side / aspect
    cx = rng.uniform(-0.2, 1.2, num) * width * stride
    cy = rng.uniform(-0.2, 1.2, num) * height * stride
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    return torch.from_numpy(
        np.concatenate([np.zeros((num, 1)), boxes], 1).astype(np.float32))


def roi_align_parity(rng):
    rows = []
    for stride, (height, width), size in ((4, (64, 48), 7), (8, (32, 24), 7),
                                          (16, (16, 12), 14), (32, (8, 6),
                                                               14)):
        feat = torch.from_numpy(
            rng.standard_normal((1, 16, height, width)).astype(np.float32))
        rois = random_rois(rng, 2000, height, width, stride)
        scale = 1.0 / stride
        mm = mmcv_roi_align(feat, rois, (size, size), scale, 0, 'avg', True)
        tv = tv_roi_align(feat, rois, (size, size), scale, 0, True)
        ox = torch.from_numpy(ort_roi_align(feat, rois, size, scale))
        peak = float(feat.abs().max())

        def diff(a, b):
            return float((a - b).abs().max()) / peak

        rows.append(
            dict(stride=stride,
                 feature=[height, width],
                 output=size,
                 rois=len(rois),
                 max_rel_diff=dict(mmcv_vs_torchvision=diff(mm, tv),
                                   mmcv_vs_onnxruntime=diff(mm, ox),
                                   torchvision_vs_onnxruntime=diff(tv, ox))))
    return rows


def nms_parity(rng):
    rows = []
    for num, iou in ((300, 0.5), (2000, 0.7), (2000, 0.5)):
        centres = rng.uniform(0, 400, (num // 20, 2)).repeat(20, 0)
        centres += rng.normal(0, 8, centres.shape)
        wh = rng.uniform(10, 80, (num, 2))
        boxes = torch.from_numpy(
            np.concatenate([centres - wh / 2, centres + wh / 2],
                           1).astype(np.float32))
        scores = torch.from_numpy(rng.uniform(0, 1, num).astype(np.float32))
        mm = mmcv_nms(boxes, scores, iou)[1].numpy()
        tv = tv_nms(boxes, scores, iou).numpy()
        ox = ort_nms(boxes, scores, iou)
        rows.append(
            dict(boxes=num,
                 iou_threshold=iou,
                 kept=dict(mmcv=len(mm), torchvision=len(tv),
                           onnxruntime=len(ox)),
                 same_order=dict(
                     mmcv_vs_torchvision=bool(np.array_equal(mm, tv)),
                     mmcv_vs_onnxruntime=bool(np.array_equal(mm, ox)))))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out',
                        default=osp.join(HERE, 'roi_align_nms_parity.json'))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.RandomState(0)
    result = dict(
        what='largest difference relative to max |feature| (RoIAlign); '
        'kept indices (NMS)',
        roi_align=roi_align_parity(rng),
        nms=nms_parity(rng),
        versions=dict(torch=torch.__version__,
                      onnxruntime=ort.__version__,
                      mmcv=__import__('mmcv').__version__,
                      torchvision=__import__('torchvision').__version__),
        machine=platform.processor() or platform.machine(),
        load=os.getloadavg())
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
