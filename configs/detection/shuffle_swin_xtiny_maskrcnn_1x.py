# Mask R-CNN + FPN with a Shuffle Swin-XTi backbone, COCO instance
# segmentation, 1x schedule: mmdet's Swin-T 1x recipe (the smallest Swin
# baseline) unchanged (AdamW 1e-4 / wd 0.05, no decay on norms and position
# tables, 12 epochs, steps 8 and 11; total batch 16). Shuffle Swin-XTi has
# Swin-T's stage widths (96-768), so the FPN is the same.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    './_base_/instance_tta.py',  # --tta: multi-scale + flip
]
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# ImageNet-1k weights of the authors' code converted to mmext's layout:
#   python tools/convert_imagenet.py shuffle_swin <checkpoint.pth> <this path>
pretrained = 'checkpoints/shuffle_swin_xtiny_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.ShuffleSwin',
        arch='xtiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,  # the authors' ImageNet setting (Swin-T here: 0.2)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
