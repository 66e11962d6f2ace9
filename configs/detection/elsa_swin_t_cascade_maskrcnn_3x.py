# Cascade Mask R-CNN + FPN, ELSA-Swin-T, 3x multi-scale recipe with the
# official release's GIoU 4conv1fc box heads (_base_/cascade_maskrcnn_giou_3x.py).
_base_ = './_base_/cascade_maskrcnn_giou_3x.py'

# made by:
#   python tools/convert_imagenet.py elsa_swin <elsa_swin_tiny.pth> <this path>
pretrained = 'checkpoints/elsa_swin_t_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.ELSASwin',
        arch='t',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,  # official 3x setting
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
