# UperNet with a Dual-ViT-S backbone on ADE20K, 160k iterations; the recipe
# (schedule, optimiser, TTA) is in _base_/upernet_ade20k_adamw_160k.py.
_base_ = './_base_/upernet_ade20k_adamw_160k.py'

# made by: python tools/convert_imagenet.py dualvit <dualvit_s.pth> <this>
pretrained = 'checkpoints/dualvit_s_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.DualViT',
        arch='s',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.15,  # official ADE20K setting for S
        # the convolutional stem trains its BN layers (synchronised)
        stem_norm_cfg=dict(type='SyncBN', requires_grad=True),
        # inference on large test images runs the backbone in 768px tiles
        test_tile_size=768,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[64, 128, 320, 448]),
    auxiliary_head=dict(in_channels=320))
