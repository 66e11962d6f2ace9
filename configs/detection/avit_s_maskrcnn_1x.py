# Mask R-CNN with an A-ViT-S backbone; the recipe is avit_t_maskrcnn_1x.py.
_base_ = './avit_t_maskrcnn_1x.py'

# made by: python tools/convert_imagenet.py avit <small-10-75.pth> <this path>
pretrained = 'checkpoints/avit_s_in1k.pth'

model = dict(
    backbone=dict(
        arch='small',
        gate_center=75.,  # released A-ViT-S gate: 10 / 75
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=384))
