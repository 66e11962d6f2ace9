# Cascade Mask R-CNN + FPN, Dual-ViT-S, 3x multi-scale recipe. The three box
# heads are 4conv1fc heads (SyncBN) that regress decoded boxes with a GIoU
# loss (weight 10), class-specific, as in the official Dual-ViT release.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    './_base_/coco_instance_ms-crop_3x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# made by: python tools/convert_imagenet.py dualvit <dualvit_s.pth> <this>
pretrained = 'checkpoints/dualvit_s_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.DualViT',
        arch='s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.15,  # official detection setting (S and B)
        # the official detector keeps the stem's BN affine parameters fixed
        stem_norm_cfg=dict(type='BN', requires_grad=False),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 448]),
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
