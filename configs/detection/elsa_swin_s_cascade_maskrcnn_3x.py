# Cascade Mask R-CNN + FPN, ELSA-Swin-S, 3x multi-scale recipe. The three box
# heads are 4conv1fc heads (SyncBN) that regress decoded boxes with a GIoU
# loss (weight 10), class-specific, as in the official ELSA release.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    './_base_/coco_instance_ms-crop_3x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# made by:
#   python tools/convert_imagenet.py elsa_swin \
#       <elsa_swin_small.pth> <this path>
pretrained = 'checkpoints/elsa_swin_s_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.ELSASwin',
        arch='s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.75,  # official 3x setting
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]),
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
