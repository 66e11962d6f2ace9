"""Train a detector or a segmentor from an mmext config.

One entry point for mmdet and mmseg configs: the registry scope comes from
the config's ``default_scope``. Examples::

    python tools/train.py configs/detection/dualvit_s_maskrcnn_1x.py
    python tools/train.py CONFIG --resume                 # latest in work dir
    python tools/train.py CONFIG --resume work_dirs/x/iter_8000.pth

Checkpoints are written crash-safe (mmext.engine.SafeCheckpointHook): a run
killed at any moment leaves a checkpoint that ``--resume`` can continue from.
    bash tools/dist_train.sh CONFIG 8                     # torchrun, 8 GPUs
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.apis.train import main  # noqa: E402

if __name__ == '__main__':
    main()
