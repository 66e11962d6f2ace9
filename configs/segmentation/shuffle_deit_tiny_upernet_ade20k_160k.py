# UperNet with a Shuffle DeiT-Ti backbone on ADE20K, 160k iterations:
# mmseg's DeiT-S + multi-level-neck recipe (the smallest DeiT baseline;
# Shuffle DeiT-Ti's tokens are DeiT-S wide, 384) with mmext's simple feature
# pyramid in place of mmseg's MultiLevelNeck: the last block's stride-16 map
# -> strides 4/8/16/32, as the A-ViT configs. AdamW 6e-5 / wd 0.01, no
# decay on norms, position embedding and class token, 1500 warm-up
# iterations then poly, total batch 16; plus layer-wise lr decay 0.65 as
# mmseg's plain-ViT (MAE / BEiT) recipes (docs/layer_decay.md).
_base_ = 'mmseg::vit/vit_deit-s16_mln_upernet_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# made by:
#   python tools/convert_imagenet.py shuffle_vit <checkpoint.pth> <this path>
pretrained = 'checkpoints/shuffle_deit_tiny_in1k.pth'

model = dict(
    pretrained=None,
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
        out_channels=384,
        scale_factors=(4, 2, 1, 0.5)))

optim_wrapper = dict(
    constructor='mmext.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65))
