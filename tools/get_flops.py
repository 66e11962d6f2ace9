#!/usr/bin/env python
"""MACs and parameters of a backbone at a given input size (the code:
``mmext/apis/flops.py``; ``--help``)."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.apis.flops import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
