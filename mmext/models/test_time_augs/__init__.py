"""Test-time augmentation models (as mmdet keeps them in
``models/test_time_augs``)."""
from .fusion import fuse_nms, fuse_wbf, merge_views
from .instance_seg_tta import InstanceSegTTAModel
from .views import MaskCrop, crop_to_support, unflip_boxes, view_detections

__all__ = [
    'InstanceSegTTAModel', 'MaskCrop', 'crop_to_support', 'fuse_nms',
    'fuse_wbf', 'merge_views', 'unflip_boxes', 'view_detections'
]
