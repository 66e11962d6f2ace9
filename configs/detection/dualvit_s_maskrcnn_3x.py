# Mask R-CNN + FPN, Dual-ViT-S, 3x multi-scale recipe (DETR-style
# resize/crop, 36 epochs, AdamW 1e-4 / wd 0.05, no decay on norms).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/coco_instance_ms-crop_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/instance_tta.py',  # --tta: multi-scale + flip
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
    neck=dict(in_channels=[64, 128, 320, 448]))
