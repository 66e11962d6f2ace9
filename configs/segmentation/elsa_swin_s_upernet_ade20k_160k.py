# UperNet with an ELSA-Swin-S backbone on ADE20K, 160k iterations.
# Everything else as in elsa_swin_t_upernet_ade20k_160k.py.
_base_ = './elsa_swin_t_upernet_ade20k_160k.py'

# made by:
#   python tools/convert_imagenet.py elsa_swin <elsa_swin_small.pth> <this path>
pretrained = 'checkpoints/elsa_swin_s_in1k.pth'

model = dict(
    backbone=dict(
        arch='s',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
