#!/usr/bin/env python
"""Where a backbone's CPU time goes, per op kind (the code:
``mmext/apis/profile_breakdown.py``; ``--help``)."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.apis.profile_breakdown import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
