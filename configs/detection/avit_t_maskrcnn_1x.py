# Mask R-CNN with an A-ViT-T backbone (DeiT-T whose tokens halt at different
# depths), COCO instance segmentation, 1x schedule (12 epochs, single scale
# 1333x800). Total batch 16 (8 GPUs x 2 images).
#
# The ViT gives one stride-16 map; a ViTDet simple feature pyramid makes the
# strides 4-64 RPN and the RoI heads expect (mmdet's standard Mask R-CNN
# heads). Optimiser as ViTDet's plain-ViT recipe: AdamW 1e-4, weight decay
# 0.1 (none on norms, position embedding and class token), layer-wise lr
# decay 0.7 (docs/layer_decay.md).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/instance_tta.py',  # --tta: multi-scale + flip
]
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# made by: python tools/convert_imagenet.py avit <tiny-10-30.pth> <this path>
# (the official A-ViT-T release; the gate values below come from its name)
pretrained = 'checkpoints/avit_t_in1k.pth'

model = dict(
    # MaskRCNN plus the backbone's halting losses (loss_ponder,
    # loss_halting_prior) and the logged mean token depth
    type='mmext.BackboneLossMaskRCNN',
    backbone=dict(
        _delete_=True,
        type='mmext.AViT',
        arch='tiny',
        img_size=224,  # of the pretrained position embedding
        out_indices=(-1, ),
        gate_scale=10.,
        gate_center=30.,
        drop_path_rate=0.1,  # ViTDet's rate for a 12-block ViT
        # The released models were trained with these weights; they are kept
        # because both terms are means (over tokens / blocks), so their size
        # does not grow with the ~4200 tokens of a 1333x800 image, and the
        # detector's summed losses (~1-3) are of the order of the ImageNet
        # cross-entropy they were balanced against. A larger ponder weight
        # trades AP for fewer token-blocks.
        halting_loss=dict(ponder_weight=5e-4, prior_weight=1e-3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        _delete_=True,
        type='mmext.SimpleFeaturePyramid',
        in_channels=192,
        out_channels=256,
        scale_factors=(4, 2, 1, 0.5),
        num_outs=5))

optim_wrapper = dict(
    type='AmpOptimWrapper',  # tools/train.py falls back to fp32 on CPU
    loss_scale='dynamic',
    constructor='mmext.LayerDecayOptimWrapperConstructor',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.1),
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        norm_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))

auto_scale_lr = dict(base_batch_size=16)
