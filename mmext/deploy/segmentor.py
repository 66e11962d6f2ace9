"""mmseg segmentors (EncoderDecoder, e.g. UperNet) as ONNX graphs, and their
mIoU through onnxruntime.

The graph is the segmentor's whole-image inference: a normalised image
batch (what the config's ``data_preprocessor`` makes) in, class scores
resized back to the input size out (mmseg's ``encode_decode``). What stays
outside the graph is what mmseg does around ``inference`` in Python: the
data preprocessor before it, and the resize to the original image size and
the argmax after it (``postprocess_result``), so that a prediction through
onnxruntime goes through exactly the same steps as PyTorch's.
"""
from typing import Callable, Dict, List

import torch
import torch.nn as nn
from torch import Tensor

from .onnx_export import run_session


class SegmentorGraph(nn.Module):
    """``segmentor.encode_decode`` on images of any size: ``(B, 3, H, W)``
    normalised images -> ``(B, num_classes, H, W)`` scores."""

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, image: Tensor) -> Tensor:
        # a torch.Size img_shape: mmseg resizes to it (symbolic when traced)
        metas = [dict(img_shape=image.shape[2:])]
        return self.segmentor.encode_decode(image, metas)


def test_mode_note(segmentor: nn.Module) -> List[str]:
    mode = (getattr(segmentor, 'test_cfg', None) or {}).get('mode', 'whole')
    if mode == 'whole':
        return []
    return [f"the segmentor's test_cfg.mode is {mode!r}: the graph runs "
            'whole images (run the sliding windows around it)']


def predict_torch(segmentor: nn.Module) -> Callable:
    """PyTorch prediction of a data batch: mmseg's ``test_step``."""

    def predict(data_batch):
        with torch.no_grad():
            return segmentor.test_step(data_batch)

    return predict


def predict_onnx(segmentor: nn.Module, session) -> Callable:
    """The same prediction with ``inference`` run by onnxruntime: the data
    preprocessor and ``postprocess_result`` are the segmentor's own."""

    def predict(data_batch):
        with torch.no_grad():
            data = segmentor.data_preprocessor(data_batch, False)
            scores = run_session(session, [data['inputs']])[0]
            return segmentor.postprocess_result(torch.from_numpy(scores),
                                                data['data_samples'])

    return predict


def evaluate_iou(predict: Callable, dataloader,
                 dataset_meta: Dict) -> Dict[str, float]:
    """mmseg's ``IoUMetric`` (aAcc, mIoU, mAcc) of ``predict`` over
    ``dataloader``."""
    from mmseg.evaluation import IoUMetric
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dataset_meta
    for data_batch in dataloader:
        samples = predict(data_batch)
        metric.process(data_batch, [s.to_dict() for s in samples])
    return metric.evaluate(len(dataloader.dataset))
