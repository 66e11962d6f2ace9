# Mask R-CNN + FPN with a Dual-ViT-S backbone, COCO instance segmentation,
# 1x schedule (12 epochs, single scale 1333x800), AdamW as in the official
# Dual-ViT release. Total batch 16 (8 GPUs x 2 images).
_base_ = [
    './_base_/dualvit_s_maskrcnn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/instance_tta.py',  # --tta: multi-scale + flip
]

optim_wrapper = dict(
    type='AmpOptimWrapper',  # tools/train.py falls back to fp32 on CPU
    loss_scale='dynamic',
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=1e-4))

auto_scale_lr = dict(base_batch_size=16)
