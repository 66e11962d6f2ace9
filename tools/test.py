"""Evaluate a checkpoint: COCO box/mask AP for detection configs, mIoU (with
the per-class table) for segmentation configs.

Examples::

    python tools/test.py CONFIG CKPT                      # single scale
    python tools/test.py CONFIG CKPT --tta                # multi-scale + flip
    python tools/test.py CONFIG CKPT --show-dir vis/      # save drawings
    bash tools/dist_test.sh CONFIG CKPT 8 [--tta]
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.apis.test import main  # noqa: E402

if __name__ == '__main__':
    main()
