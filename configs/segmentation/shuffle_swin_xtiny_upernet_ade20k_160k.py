# UperNet with a Shuffle Swin-XTi backbone on ADE20K, 160k iterations:
# mmseg's Swin-T recipe (the smallest Swin baseline) unchanged (512x512
# crops, AdamW 6e-5 / wd 0.01, no decay on norms and position tables, 1500
# warm-up iterations then poly; total batch 16). Shuffle Swin-XTi has
# Swin-T's stage widths (96-768), so the heads are the same.
_base_ = ('mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_'
          '8xb2-160k_ade20k-512x512.py')
custom_imports = dict(imports=['mmext.models'], allow_failed_imports=False)

# made by:
#   python tools/convert_imagenet.py shuffle_swin <checkpoint.pth> <this path>
pretrained = 'checkpoints/shuffle_swin_xtiny_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmext.ShuffleSwin',
        arch='xtiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,  # the authors' ImageNet setting (Swin-T here: 0.3)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
