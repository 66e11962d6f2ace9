# Mask R-CNN + FPN with a Dual-ViT-S backbone, COCO instance segmentation,
# 1x schedule (12 epochs, single scale 1333x800), AdamW as in the official
# Dual-ViT release. Total batch 16 (8 GPUs x 2 images).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/instance_tta.py',  # --tta: multi-scale + flip
]
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# ImageNet-1k weights converted to mmext's key layout. If the file is
# missing, tools/train.py stops and prints the command that makes it:
#   python tools/convert_imagenet.py dualvit <dualvit_s.pth> <this path>
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

optim_wrapper = dict(
    type='AmpOptimWrapper',  # tools/train.py falls back to fp32 on CPU
    loss_scale='dynamic',
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=1e-4))

auto_scale_lr = dict(base_batch_size=16)
