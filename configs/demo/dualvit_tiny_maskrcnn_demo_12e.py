# CPU demo: Mask R-CNN + FPN with a tiny, randomly initialised Dual-ViT on
# the generated demo set (python -m mmext.datasets.demo; 4 shape classes,
# 48 train / 16 val images). Inherits the real 1x config and changes only
# the data, the input scale, the backbone size, the head widths and the
# schedule.
_base_ = '../detection/dualvit_s_maskrcnn_1x.py'
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# demo data generated elsewhere: MMEXT_DEMO_DATA=/path (default data/demo)
data_root = '{{$MMEXT_DEMO_DATA:data/demo}}/coco/'
metainfo = dict(
    classes=('disc', 'triangle', 'square', 'star'),
    palette=[(220, 20, 60), (0, 160, 60), (30, 80, 230), (230, 190, 0)])
img_scale = (256, 256)
tiny_dims = [32, 64, 128, 160]

# Narrower heads and fewer sampled RoIs than the 1x config, for CPU time.
neck_width = 64
roi_layer = dict(
    type='RoIAlign', output_size=7, sampling_ratio=0, use_torchvision=True)
model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,  # replaces the base's arch='s'
            stem_width=16,
            embed_dims=tiny_dims,
            num_heads=[1, 2, 4, 5],
            mlp_ratios=[4, 4, 4, 4],
            depths=[1, 1, 2, 1]),
        drop_path_rate=0.0,
        stem_norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None),  # no pretrained weights: trained from scratch
    neck=dict(in_channels=tiny_dims, out_channels=neck_width),
    rpn_head=dict(in_channels=neck_width, feat_channels=neck_width),
    roi_head=dict(
        bbox_roi_extractor=dict(roi_layer=roi_layer, out_channels=neck_width),
        bbox_head=dict(
            in_channels=neck_width,
            fc_out_channels=256,
            num_classes=len(metainfo['classes'])),
        mask_roi_extractor=dict(
            roi_layer=dict(roi_layer, output_size=14),
            out_channels=neck_width),
        mask_head=dict(
            in_channels=neck_width,
            conv_out_channels=neck_width,
            num_classes=len(metainfo['classes']))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=200)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
# --tta: the base's views scaled to the demo (0.8, 0.9, ..., 1.2 times the
# 256 px test scale, as 640..960 around 800), each unflipped and flipped
tta_sides = [round(img_scale[0] * r) for r in (0.8, 0.9, 1.0, 1.1, 1.2)]
tta_pipeline = [
    _base_.tta_pipeline[0],
    dict(
        type='TestTimeAug',
        transforms=[[
            dict(type='Resize', scale=(s, s), keep_ratio=True)
            for s in tta_sides
        ]] + _base_.tta_pipeline[1].transforms[1:]),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[9, 11],
        gamma=0.1),
]
# from scratch with a small batch: a higher learning rate than the 1x recipe
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
randomness = dict(seed=0)
