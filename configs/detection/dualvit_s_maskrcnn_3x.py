# Mask R-CNN + FPN, Dual-ViT-S, 3x multi-scale recipe (DETR-style
# resize/crop, 36 epochs, AdamW 1e-4 / wd 0.05, no decay on norms).
_base_ = [
    './_base_/dualvit_s_maskrcnn.py',
    './_base_/coco_instance_ms-crop_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/instance_tta.py',  # --tta: multi-scale + flip
]
