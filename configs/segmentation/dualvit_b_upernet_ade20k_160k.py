# UperNet, Dual-ViT-B backbone (drop path 0.3); otherwise as the S config.
_base_ = './dualvit_s_upernet_ade20k_160k.py'
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

pretrained = 'checkpoints/dualvit_b_in1k.pth'

model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 320, 512]))
