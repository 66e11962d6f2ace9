#!/usr/bin/env python
"""Draw A-ViT's per-token halting depth over an image (the code:
``mmext/apis/visualize_halting.py``; ``--help``)."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.apis.visualize_halting import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
