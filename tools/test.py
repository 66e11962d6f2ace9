"""Evaluate a checkpoint of an mmext detection or segmentation config.

Usage, options and examples: ``python tools/test.py --help`` and the
module docstring of :mod:`mmext.apis.test`, which this script runs.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.apis.test import main  # noqa: E402

if __name__ == '__main__':
    main()
