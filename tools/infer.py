"""Predict on images with a detector or a segmentor (mmdet or mmseg config
and a checkpoint): drawn predictions in OUT/vis/, raw results in OUT/preds/.

Examples::

    python tools/infer.py CONFIG CKPT demo.jpg
    python tools/infer.py CONFIG CKPT images/ 'more/*.png' --out-dir out/
    python tools/infer.py CONFIG CKPT images/ --score-thr 0.5 --device cuda
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.apis.inference import main  # noqa: E402

if __name__ == '__main__':
    main()
