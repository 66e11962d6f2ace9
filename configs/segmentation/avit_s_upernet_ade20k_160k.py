# UperNet with an A-ViT-S backbone on ADE20K; the recipe is
# avit_t_upernet_ade20k_160k.py.
_base_ = './avit_t_upernet_ade20k_160k.py'

# made by: python tools/convert_imagenet.py avit <small-10-75.pth> <this path>
pretrained = 'checkpoints/avit_s_in1k.pth'
embed_dims = 384

model = dict(
    backbone=dict(
        arch='small',
        gate_center=75.,  # released A-ViT-S gate: 10 / 75
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=embed_dims, out_channels=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4),
    auxiliary_head=dict(in_channels=embed_dims))
