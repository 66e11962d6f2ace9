# Cascade Mask R-CNN + FPN with the 3x multi-scale recipe, as the Dual-ViT
# and ELSA releases train it: the three box heads are 4conv1fc heads (SyncBN)
# that regress decoded boxes with a GIoU loss (weight 10), class-specific.
# A leaf config sets the backbone and the neck's input channels.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    './coco_instance_ms-crop_3x.py',
    'mmdet::_base_/default_runtime.py',
    './instance_tta.py',  # --tta: multi-scale + flip
]
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

model = dict(
    # keep each stage's box coder (target stds) from the base, change the rest
    roi_head=dict(bbox_head=[
        dict(
            stage_head,
            type='ConvFCBBoxHead',
            num_shared_convs=4,
            num_shared_fcs=1,
            conv_out_channels=256,
            norm_cfg=dict(type='SyncBN', requires_grad=True),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
        for stage_head in _base_.model.roi_head.bbox_head
    ]))
