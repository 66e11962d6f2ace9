# Cascade Mask R-CNN + FPN, Dual-ViT-S, 3x multi-scale recipe with the
# official release's GIoU 4conv1fc box heads (_base_/cascade_maskrcnn_giou_3x.py).
_base_ = './_base_/cascade_maskrcnn_giou_3x.py'

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
