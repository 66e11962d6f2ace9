# The 3x multi-scale recipe shared by the 3x detection configs: COCO
# instances with the DETR-style resize/crop augmentation (short side 480-800),
# 36 epochs with steps at 27 and 33, AdamW 1e-4 / weight decay 0.05 and no
# weight decay on normalisation layers. Total batch 16 (8 GPUs x 2 images).
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
]

# short sides 480, 512, ..., 800 with the long side capped at 1333
ms_scales = [(short, 1333) for short in range(480, 801, 32)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=ms_scales,
                  keep_ratio=True)],
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(400, 1333), (500, 1333), (600, 1333)],
                    keep_ratio=True),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                dict(
                    type='RandomChoiceResize',
                    scales=ms_scales,
                    keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1),
]

optim_wrapper = dict(
    type='AmpOptimWrapper',  # tools/train.py falls back to fp32 on CPU
    loss_scale='dynamic',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    # every BN/GN/LN layer (backbone and heads) is excluded from decay
    paramwise_cfg=dict(norm_decay_mult=0.))

auto_scale_lr = dict(base_batch_size=16)
