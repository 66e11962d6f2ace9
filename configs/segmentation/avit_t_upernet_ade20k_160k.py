# UperNet with an A-ViT-T backbone on ADE20K, 160k iterations. Schedule, data
# and TTA: _base_/upernet_ade20k_adamw_160k.py (mmseg's ViT/DeiT recipe).
# The ViT's stride-16 map becomes strides 4/8/16/32 through a ViTDet simple
# feature pyramid (mmseg's DeiT configs use MultiLevelNeck for the same).
# Optimiser as mmseg's plain-ViT recipe with layer-wise decay (MAE-B UperNet):
# AdamW 1e-4, weight decay 0.05 (none on norms, position embedding, class
# token), layer decay 0.65 (docs/layer_decay.md).
_base_ = './_base_/upernet_ade20k_adamw_160k.py'

# made by: python tools/convert_imagenet.py avit <tiny-10-30.pth> <this path>
pretrained = 'checkpoints/avit_t_in1k.pth'
embed_dims = 192

model = dict(
    # EncoderDecoder plus the backbone's halting losses and mean depth
    type='mmext.BackboneLossEncoderDecoder',
    backbone=dict(
        _delete_=True,
        type='mmext.AViT',
        arch='tiny',
        img_size=224,
        out_indices=(-1, ),
        gate_scale=10.,
        gate_center=30.,
        drop_path_rate=0.1,  # mmseg's DeiT-S / MAE-B rate
        # the released weights; means over tokens and blocks, so the same
        # balance against the segmentation loss (~1-3) as against the
        # ImageNet cross-entropy they were tuned with
        halting_loss=dict(ponder_weight=5e-4, prior_weight=1e-3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        type='mmext.SimpleFeaturePyramid',
        in_channels=embed_dims,
        out_channels=embed_dims,
        scale_factors=(4, 2, 1, 0.5)),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))  # the stride-16 level

optim_wrapper = dict(
    constructor='mmext.LayerDecayOptimWrapperConstructor',
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        norm_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))
