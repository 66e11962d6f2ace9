# Mask R-CNN with a Shuffle DeiT-Ti backbone, COCO instance segmentation, 1x
# schedule. mmdet has no 1x plain-ViT baseline: the recipe is mmdet's Swin-T
# 1x one (AdamW 1e-4 / wd 0.05, 12 epochs, steps 8 and 11; total batch 16)
# plus ViTDet's plain-ViT parts, as the A-ViT configs: the last block's
# stride-16 map through the simple feature pyramid (strides 4-64) and
# layer-wise lr decay 0.7 (ViTDet's ViT-B value; docs/layer_decay.md).
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    './_base_/instance_tta.py',  # --tta: multi-scale + flip
]
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# ImageNet-1k weights of the authors' code converted to mmext's layout:
#   python tools/convert_imagenet.py shuffle_vit <checkpoint.pth> <this path>
pretrained = 'checkpoints/shuffle_deit_tiny_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.ShuffleViT',
        arch='deit-tiny',
        img_size=224,  # of the pretrained position embedding
        out_indices=(-1, ),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        _delete_=True,
        type='mmext.SimpleFeaturePyramid',
        in_channels=384,
        out_channels=256,
        scale_factors=(4, 2, 1, 0.5),
        num_outs=5))  # + a max-pooled stride-64 level for the RPN

optim_wrapper = dict(
    constructor='mmext.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
        }))
