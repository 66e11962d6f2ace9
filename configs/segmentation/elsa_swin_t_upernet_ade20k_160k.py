# UperNet with an ELSA-Swin-T backbone on ADE20K, 160k iterations; the
# recipe (schedule, optimiser, mixed precision) is the official ELSA one, in
# _base_/upernet_ade20k_adamw_160k.py.
_base_ = './_base_/upernet_ade20k_adamw_160k.py'

# made by:
#   python tools/convert_imagenet.py elsa_swin <elsa_swin_tiny.pth> <this path>
pretrained = 'checkpoints/elsa_swin_t_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.ELSASwin',
        arch='t',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,  # official ADE20K setting
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

# Multi-scale + flip testing with the ELSA paper's ratios 0.75-1.75 of the
# single-scale test size (2048, 512).
img_ratios = [0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(
                    type='Resize',
                    scale=(int(2048 * r), int(512 * r)),
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
