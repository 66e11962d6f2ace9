"""Multi-scale + flip test-time augmentation for instance segmentation.

mmdet's ``DetTTAModel`` merges boxes only and drops masks.
:class:`InstanceSegTTAModel` runs every view of an image (the
``TestTimeAug`` pipeline: scales x flips) through the wrapped detector,
brings each view's detections back to the original frame
(:mod:`.views`), fuses them (:mod:`.fusion`), and thresholds each fused
mask once at the end.
"""
from typing import List, Optional

from mmengine.model import BaseTTAModel

from mmext.registry import MODELS
from .fusion import DEFAULT_IOU_THR, FUSIONS, merge_views
from .views import ViewDetections, view_detections


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
