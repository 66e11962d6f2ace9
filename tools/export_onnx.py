"""Export a segmentor, a detector or a backbone to ONNX (mmseg or mmdet
config and a checkpoint), checked in onnxruntime before it is written.

Examples::

    python tools/export_onnx.py CONFIG CKPT model.onnx
    python tools/export_onnx.py CONFIG CKPT model.onnx --shape 800 1344
    python tools/export_onnx.py CONFIG CKPT backbone.onnx --backbone-only
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmext.deploy.export_tool import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
