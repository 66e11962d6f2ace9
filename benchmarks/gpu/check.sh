#!/usr/bin/env bash
# The GPU check of issue 17 (benchmarks/gpu/check.py): CUDA-only tests, the
# ELSA filter's CARAFE path vs its PyTorch path, float16 AMP training steps
# of every family's tiny detector and segmentor through tools/train.py, and
# DualViT-S / ELSA-Swin-T / mmdet Swin-T backbone timings (fp32 and AMP) with
# peak GPU memory, all into one JSON.
#
#   bash benchmarks/gpu/check.sh [OUT.json]   (default benchmarks/gpu/results.json)
#
# Uses $PY (default: .venv/bin/python if present, else python). On a machine
# without a GPU it prints one line and exits 0. Exit status 1 if a step fails.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
fi
OUT=${1:-benchmarks/gpu/results.json}
# one interpreter start: 3 = no torch, 1 = no GPU
status=0
"$PY" -c 'import sys
try:
    import torch
except ImportError:
    sys.exit(3)
sys.exit(0 if torch.cuda.is_available() else 1)' || status=$?
if [ "$status" = 3 ]; then
    echo "gpu check: $PY cannot import torch; set PY to the venv's python" >&2
    exit 1
elif [ "$status" != 0 ]; then
    echo "gpu check: no GPU (torch.cuda.is_available() is False); nothing to check"
    exit 0
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu/check.py --out "$OUT" "${@:2}"
