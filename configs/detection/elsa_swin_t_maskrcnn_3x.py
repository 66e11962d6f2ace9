# Mask R-CNN + FPN, ELSA-Swin-T, 3x multi-scale recipe (DETR-style
# resize/crop, 36 epochs, AdamW 1e-4 / wd 0.05, no decay on norms, mixed
# precision). Total batch 16 (8 GPUs x 2 images).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './_base_/coco_instance_ms-crop_3x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/instance_tta.py',  # --tta: multi-scale + flip
]
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

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
