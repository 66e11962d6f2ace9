# UperNet with an ELSA-Swin-S backbone on ADE20K: 512x512 crops, 160k
# iterations, total batch 16 (8 GPUs x 2 images), AdamW 6e-5 / wd 0.01 with
# no decay on normalisation layers, 1500 linear warm-up iterations then poly,
# mixed precision, as in the official ELSA release.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# made by:
#   python tools/convert_imagenet.py elsa_swin \
#       <elsa_swin_small.pth> <this path>
pretrained = 'checkpoints/elsa_swin_s_in1k.pth'
crop_size = (512, 512)

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmext.ELSASwin',
        arch='s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,  # official ADE20K setting
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',  # tools/train.py falls back to fp32 on CPU
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.))

param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=1500,
        end=160000,
        by_epoch=False),
]

train_dataloader = dict(batch_size=2)  # x 8 GPUs = 16
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Multi-scale + flip testing (tools/test.py --tta) with the ELSA paper's
# ratios 0.75-1.75 of the single-scale test size (2048, 512).
test_scale = (2048, 512)
img_ratios = [0.75, 1.0, 1.25, 1.5, 1.75]
tta_model = dict(type='SegTTAModel')
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='Resize',
                    scale=(int(test_scale[0] * r), int(test_scale[1] * r)),
                    keep_ratio=True) for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal'),
            ],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ]),
]
