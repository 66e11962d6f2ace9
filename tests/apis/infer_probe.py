"""Run in a fresh interpreter by test_infer_tool.py: mmdet's and mmseg's
inferencers from config files and checkpoints saved as training saves them,
with nothing imported beforehand; the configs' ``custom_imports`` must
bring in everything (the mmext models and the checkpoint allow-list).

Usage: ``python infer_probe.py DET_CFG DET_CKPT DET_IMG SEG_CFG SEG_CKPT
SEG_IMG``; prints one JSON line.
"""
import json
import sys
import warnings


def main(det_cfg, det_ckpt, det_img, seg_cfg, seg_ckpt, seg_img):
    warnings.filterwarnings('ignore')
    from mmdet.apis import DetInferencer
    from mmseg.apis import MMSegInferencer
    imported_first = 'mmext' in sys.modules
    det = DetInferencer(det_cfg, det_ckpt, device='cpu',
                        show_progress=False)
    det_out = det(det_img)['predictions'][0]
    seg = MMSegInferencer(seg_cfg, seg_ckpt, device='cpu')
    seg_out = seg(seg_img)['predictions']
    print(json.dumps(dict(
        mmext_imported_before=imported_first,
        det_classes=list(det.model.dataset_meta['classes']),
        det_detections=len(det_out['labels']),
        seg_classes=list(seg.model.dataset_meta['classes']),
        seg_shape=list(seg_out.shape))))


if __name__ == '__main__':
    main(*sys.argv[1:])
