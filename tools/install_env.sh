#!/usr/bin/env bash
# Create or update the mmext environment (a venv at $MMEXT_VENV, default .venv)
# with the pinned stack. Idempotent: a stamp keyed by the pins skips finished work.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMEXT_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
REQ=$ROOT/requirements
KEY=$(cat "$REQ"/*.txt | sha256sum | cut -c1-16)
STAMP=$VENV/.mmext-stack-$KEY
PY=$VENV/bin/python
PIP=("$PY" -m pip install --progress-bar off)

say() { printf '[mmext install] %s\n' "$*"; }
fail() { printf '[mmext install] ERROR: %s\n' "$*" >&2; exit 1; }

start=$(date +%s)
[ -x "$PY" ] || { say "creating venv at $VENV"; "$PYTHON" -m venv "$VENV"; }

if [ -f "$STAMP" ]; then
    say "stack $KEY already installed in $VENV"
else
    say "installing build tools"
    "${PIP[@]}" -q --upgrade pip -r "$REQ/build.txt"

    say "installing torch + torchvision (registry builds)"
    "${PIP[@]}" -r "$REQ/torch.txt"
    "$PY" - <<'PYEOF' || fail "torch/torchvision pair is broken (see above). A CPU-only local torch wheel (2.13.0+cpu) has no matching torchvision: remove the venv ($VENV) and re-run; requirements/torch.txt pins exact registry builds with '==='."
import torch, torchvision
assert '+cpu' not in torch.__version__, torch.__version__
torchvision.ops.nms(torch.rand(2, 4), torch.rand(2), 0.5)
print(f'[mmext install] torch {torch.__version__}, torchvision {torchvision.__version__}: OK')
PYEOF

    if "$PY" -c "import mmcv, sys; sys.exit(mmcv.__version__ != '2.1.0')" 2>/dev/null &&
       "$PY" -c "import mmcv.ops" 2>/dev/null; then
        say "mmcv 2.1.0 with ops already present"
    else
        # No wheel exists for this torch: build from source (about 9 min on 2 cores,
        # pip caches the wheel afterwards). CUDA ops when nvcc is found or FORCE_CUDA=1.
        say "installing mmcv 2.1.0 (compiled from source unless pip cached the wheel: ~9-20 min cold)"
        MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
            "${PIP[@]}" --no-build-isolation -c "$REQ/torch.txt" -r "$REQ/mmcv.txt"
    fi

    say "installing mmengine / mmdet / mmseg / mmpretrain"
    "${PIP[@]}" -q -c "$REQ/torch.txt" -c "$REQ/mmcv.txt" -r "$REQ/stack.txt"
    touch "$STAMP"
fi

# The editable install points at this checkout; redo it when the checkout moved.
if ! (cd / && "$PY" -c "import mmext, os, sys; sys.exit(not os.path.samefile(os.path.dirname(mmext.__file__), '$ROOT/mmext'))" 2>/dev/null); then
    say "installing mmext (editable) from $ROOT"
    "${PIP[@]}" -q --no-deps --no-build-isolation -e "$ROOT"
fi

say "verifying the stack"
(cd / && "$PY" -m mmext.apis.env --check) || { rm -f "$STAMP"; fail "stack verification failed (see above)"; }
say "done in $(( $(date +%s) - start )) s; python: $PY"
