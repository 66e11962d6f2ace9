# Mask R-CNN + FPN with an ELSA-Swin-T backbone, COCO instance segmentation,
# 1x schedule (12 epochs, steps at 8 and 11). As in the official ELSA release
# the 1x schedule already trains with the DETR-style multi-scale resize/crop
# augmentation; AdamW 1e-4 / wd 0.05 with no decay on norms, mixed precision.
# Total batch 16 (8 GPUs x 2 images).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/coco_instance_ms-crop_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/instance_tta.py',  # --tta: multi-scale + flip
]
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# ImageNet-1k weights converted to mmext's key layout, made by:
#   python tools/convert_imagenet.py elsa_swin \
#       <elsa_swin_tiny.pth> <this path>
pretrained = 'checkpoints/elsa_swin_t_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.ELSASwin',
        arch='t',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,  # official 1x setting
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1),
]
