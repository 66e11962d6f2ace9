"""Check a config's data sets: every problem that would stop or spoil a
run, with its count and first files.

Examples::

    python tools/check_data.py CONFIG                  # decode everything
    python tools/check_data.py CONFIG --quick          # what training checks
    python tools/check_data.py CONFIG --splits val --workers 8 --out r.json

Exit status 0: no errors (warnings and notes may be listed), 1: errors.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.apis.check_data import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
