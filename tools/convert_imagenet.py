#!/usr/bin/env python
"""Convert an official ImageNet checkpoint to mmext's layout (see
``mmext/apis/convert.py`` or ``--help``)::

    python tools/convert_imagenet.py FAMILY SRC DST [--keep-head] [--force]
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.apis.convert import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
