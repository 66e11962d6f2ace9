# CPU demo: UperNet with a tiny, randomly initialised Dual-ViT on the
# generated ADE20K-format demo set (python -m mmext.datasets.demo; 6 classes,
# 48 train / 16 val images). Inherits the real ADE20K config and changes only
# the data, the input scale, the model width and the schedule.
_base_ = '../segmentation/dualvit_s_upernet_ade20k_160k.py'
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# demo data generated elsewhere: MMEXT_DEMO_DATA=/path (default data/demo)
data_root = '{{$MMEXT_DEMO_DATA:data/demo}}/ade'
metainfo = dict(
    classes=('sky', 'ground', 'disc', 'triangle', 'square', 'star'),
    palette=[(120, 170, 230), (120, 90, 50), (220, 20, 60), (0, 160, 60),
             (30, 80, 230), (230, 190, 0)])
num_classes = len(metainfo['classes'])
crop_size = (128, 128)
test_scale = (1024, 192)  # short side 192: the demo images' native size
tiny_dims = [32, 64, 128, 160]

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(
            _delete_=True,  # replaces the base's arch='s'
            stem_width=16,
            embed_dims=tiny_dims,
            num_heads=[1, 2, 4, 5],
            mlp_ratios=[4, 4, 4, 4],
            depths=[1, 1, 2, 1]),
        drop_path_rate=0.0,
        test_tile_size=None,
        init_cfg=None),  # no pretrained weights: trained from scratch
    decode_head=dict(
        in_channels=tiny_dims, channels=128, num_classes=num_classes),
    auxiliary_head=dict(
        in_channels=tiny_dims[2], channels=64, num_classes=num_classes))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=test_scale,
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
demo_dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        demo_dataset,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        demo_dataset,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# multi-scale + flip testing around the demo's test scale
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='Resize',
                    scale=(int(test_scale[0] * r), int(test_scale[1] * r)),
                    keep_ratio=True) for r in _base_.img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal'),
            ],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ]),
]

max_iters = 400
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=50,
        end=max_iters,
        by_epoch=False),
]
# from scratch with a small batch: a higher learning rate than ADE20K's
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
randomness = dict(seed=0)
