# Mask R-CNN + FPN with an ELSA-Swin-S backbone, COCO, 1x schedule.
# Everything else as in elsa_swin_t_maskrcnn_1x.py.
_base_ = './elsa_swin_t_maskrcnn_1x.py'

# made by:
#   python tools/convert_imagenet.py elsa_swin <elsa_swin_small.pth> <this path>
pretrained = 'checkpoints/elsa_swin_s_in1k.pth'

model = dict(
    backbone=dict(
        arch='s',
        drop_path_rate=0.2,  # official 1x setting
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
