# Mask R-CNN + FPN, Dual-ViT-B backbone; otherwise as the S config.
_base_ = './dualvit_s_maskrcnn_1x.py'
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

pretrained = 'checkpoints/dualvit_b_in1k.pth'

model = dict(
    backbone=dict(
        arch='b', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))
