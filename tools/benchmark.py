#!/usr/bin/env python
"""Latency and peak memory of a backbone, inference and training step (the
code: ``mmext/apis/benchmark.py``; ``--help``)."""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.apis.benchmark import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
