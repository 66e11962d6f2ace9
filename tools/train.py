"""Train a detector or a segmentor from an mmext config.

Usage, options and examples: ``python tools/train.py --help`` and the
module docstring of :mod:`mmext.apis.train`, which this script runs.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.apis.train import main  # noqa: E402

if __name__ == '__main__':
    main()
