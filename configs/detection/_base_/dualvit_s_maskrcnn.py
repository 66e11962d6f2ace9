# Mask R-CNN + FPN with a Dual-ViT-S backbone: the model shared by the 1x and
# 3x configs (a leaf config adds data, schedule and runtime).
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
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
