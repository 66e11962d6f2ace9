# Cascade Mask R-CNN (4conv1fc GIoU heads), Dual-ViT-B, 3x recipe; otherwise
# as the S config.
_base_ = './dualvit_s_cascade_maskrcnn_3x.py'
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

pretrained = 'checkpoints/dualvit_b_in1k.pth'

model = dict(
    backbone=dict(
        arch='b', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))
