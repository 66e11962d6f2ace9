#!/usr/bin/env bash
# The CPU demo (`make demo`): generate the embedded demo data, train a tiny
# Dual-ViT Mask R-CNN and a tiny Dual-ViT UperNet on it, evaluate them (COCO
# box/mask AP; single- and multi-scale mIoU), save drawn predictions under
# work_dirs/demo/ and print a summary. About 10-15 minutes on 2 CPU cores.
# Uses $PY (default: .venv/bin/python if present, else python) and the demo
# data in $MMEXT_DEMO_DATA (default data/demo; the demo configs read it too).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
fi
OUT=${DEMO_OUT:-work_dirs/demo}
export MMEXT_DEMO_DATA=${MMEXT_DEMO_DATA:-data/demo}
# One compute thread (the data loader worker gets the other core): with more
# OpenMP threads than free cores, PyTorch on CPU spin-waits and slows down
# several-fold. Override with OMP_NUM_THREADS=N on an idle many-core machine.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DET_CFG=configs/demo/dualvit_tiny_maskrcnn_demo_12e.py
SEG_CFG=configs/demo/dualvit_tiny_upernet_demo_400i.py
# the tests run after training; no separate validation pass while training
NO_VAL=(--cfg-options train_cfg.val_begin=1000000)
start=$(date +%s)
step() { printf '\n[demo %4ds] %s\n' "$(( $(date +%s) - start ))" "$*"; }

step "generating demo data in $MMEXT_DEMO_DATA (deterministic; skipped if present)"
"$PY" -m mmext.datasets.demo --root "$MMEXT_DEMO_DATA"

step "detection: training Mask R-CNN (tiny Dual-ViT, from scratch) on CPU"
"$PY" tools/train.py "$DET_CFG" --work-dir "$OUT/det" "${NO_VAL[@]}"
DET_CKPT=$(cat "$OUT/det/last_checkpoint")

step "detection: COCO evaluation (bbox + segm) and drawn predictions"
"$PY" tools/test.py "$DET_CFG" "$DET_CKPT" --work-dir "$OUT/det" \
    --show-dir "$OUT/det/predictions"

step "detection: image demo (tools/infer.py) on two validation images"
"$PY" tools/infer.py "$DET_CFG" "$DET_CKPT" --out-dir "$OUT/det/infer" \
    --force "$MMEXT_DEMO_DATA"/coco/val/val_000[01].jpg

step "segmentation: training UperNet (tiny Dual-ViT, from scratch) on CPU"
"$PY" tools/train.py "$SEG_CFG" --work-dir "$OUT/seg" "${NO_VAL[@]}"
SEG_CKPT=$(cat "$OUT/seg/last_checkpoint")

step "segmentation: single-scale mIoU"
"$PY" tools/test.py "$SEG_CFG" "$SEG_CKPT" --work-dir "$OUT/seg" \
    --show-dir "$OUT/seg/predictions"

step "segmentation: image demo (tools/infer.py) on two validation images"
"$PY" tools/infer.py "$SEG_CFG" "$SEG_CKPT" --out-dir "$OUT/seg/infer" \
    --force "$MMEXT_DEMO_DATA"/ade/images/validation/demo_validation_000[01].jpg

step "segmentation: multi-scale + flip mIoU (--tta)"
"$PY" tools/test.py "$SEG_CFG" "$SEG_CKPT" --work-dir "$OUT/seg_tta" --tta \
    --show-dir "$OUT/seg/predictions_tta"

step "done"
"$PY" - "$OUT" "$(( $(date +%s) - start ))" <<'PYEOF'
import glob, json, os, sys
out, seconds = sys.argv[1], int(sys.argv[2])

def latest(sub):
    files = glob.glob(os.path.join(out, sub, '*', 'test_metrics.json'))
    if not files:
        return {}
    with open(max(files, key=os.path.getmtime)) as f:
        return json.load(f)['metrics']

det, seg, tta = latest('det'), latest('seg'), latest('seg_tta')
get = lambda d, k: d.get(k, float('nan'))
print('=' * 64)
print('mmext demo summary (synthetic demo data, tiny models trained from '
      'scratch on CPU;\nthese numbers say nothing about COCO/ADE20K accuracy)')
print('-' * 64)
print(f"Mask R-CNN   bbox AP {get(det, 'coco/bbox_mAP'):.3f}  "
      f"AP50 {get(det, 'coco/bbox_mAP_50'):.3f}   "
      f"segm AP {get(det, 'coco/segm_mAP'):.3f}  "
      f"AP50 {get(det, 'coco/segm_mAP_50'):.3f}")
print(f"UperNet      mIoU single-scale {get(seg, 'mIoU'):.2f}   "
      f"multi-scale+flip {get(tta, 'mIoU'):.2f}   (aAcc {get(seg, 'aAcc'):.2f})")
print(f'predictions  {out}/det/predictions, {out}/seg/predictions, '
      f'{out}/seg/predictions_tta')
print(f'image demo   {out}/det/infer, {out}/seg/infer (tools/infer.py)')
print(f'wall time    {seconds // 60} min {seconds % 60} s')
print('=' * 64)
PYEOF
