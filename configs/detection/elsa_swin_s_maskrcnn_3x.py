# Mask R-CNN + FPN, ELSA-Swin-S, 3x multi-scale recipe.
# Everything else as in elsa_swin_t_maskrcnn_3x.py.
_base_ = './elsa_swin_t_maskrcnn_3x.py'

# made by:
#   python tools/convert_imagenet.py elsa_swin <elsa_swin_small.pth> <this path>
pretrained = 'checkpoints/elsa_swin_s_in1k.pth'

model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.75,  # official 3x setting
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
