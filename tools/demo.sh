#!/usr/bin/env bash
# The CPU demo (`make demo`): generate the embedded demo data, train a tiny
# Dual-ViT Mask R-CNN and a tiny Dual-ViT UperNet on it, evaluate them (COCO
# box/mask AP; single- and multi-scale mIoU), save drawn predictions under
# work_dirs/demo/ and print a summary. About 10-15 minutes on 2 CPU cores.
# One line per stage here (a progress bar and ETA from the run's log); the
# full output of every stage goes to work_dirs/demo/logs/.
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
LOGS=$OUT/logs
mkdir -p "$LOGS"
start=$(date +%s)
echo "mmext demo: every stage's full output goes to $LOGS/ (and each run's"
echo "own log under its work dir); here one line per stage."

# stage NAME LOG CMD...: run CMD with its output in LOG, showing one line
# (redrawn on a terminal) with a progress bar, the step and mmengine's ETA
# read from the log as the run goes; on failure the end of LOG, and exit
STAGE_PY='
import os, re, subprocess, sys, time
name, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
start = float(os.environ["DEMO_START"])
tty = sys.stdout.isatty()
step_re = re.compile(r"(Epoch|Iter)\((train|test)\)\s+\[\s*(\d+)\]"
                     r"(?:\[\s*(\d+)/(\d+)\])?")
test_re = re.compile(r"Epoch\(test\)\s+\[\s*(\d+)/(\d+)\]")
iter_re = re.compile(r"Iter\(train\)\s+\[\s*(\d+)/(\d+)\]")
eta_re = re.compile(r"eta: ((?:\d+ days?, )?[\d:]+)")

def progress(text):
    """(fraction done, what) from the last progress line of the log."""
    total = re.search(r"max_epochs=(\d+)", text)
    for line in reversed(text.splitlines()):
        eta = eta_re.search(line)
        eta = f"  eta {eta.group(1)}" if eta else ""
        m = test_re.search(line)
        if m:
            i, n = int(m.group(1)), int(m.group(2))
            return i / n, f"image batch {i}/{n}{eta}"
        m = iter_re.search(line)
        if m:
            i, n = int(m.group(1)), int(m.group(2))
            return i / n, f"iteration {i}/{n}{eta}"
        m = step_re.search(line)
        if m and m.group(1) == "Epoch" and m.group(4) and total:
            e, i, n = int(m.group(3)), int(m.group(4)), int(m.group(5))
            epochs = int(total.group(1))
            return ((e - 1) * n + i) / (epochs * n), \
                f"epoch {e}/{epochs}{eta}"
    return None, "starting"

def show(text, end=""):
    now = int(time.time() - start)
    print(f"\r[demo {now:4d}s] {name}  {text}\033[K" if tty else
          f"[demo {now:4d}s] {name}  {text}", end=end, flush=True)

with open(log, "w") as out:
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    began, shown = time.time(), -1.
    while proc.poll() is None:
        time.sleep(1)
        with open(log, errors="replace") as f:
            frac, what = progress(f.read())
        if frac is None:
            bar = ""
        else:
            bar = "[" + "#" * int(20 * frac) + "." * (20 - int(20 * frac)) + \
                f"] {100 * frac:3.0f}%  "
        if tty:
            show(bar + what)
        elif frac is not None and frac >= shown + 0.25:  # a log: few lines
            shown = frac
            show(bar + what, end="\n")
seconds = time.time() - began
if proc.returncode:
    show(f"FAILED (exit {proc.returncode}); the end of {log}:", end="\n")
    with open(log, errors="replace") as f:
        print("".join(f.readlines()[-25:]), end="")
    sys.exit(proc.returncode)
show(f"done in {seconds:.0f} s", end="\n")
'
export DEMO_START=$start
stage() { "$PY" -c "$STAGE_PY" "$@"; }

stage "demo data in $MMEXT_DEMO_DATA (skipped if present)" "$LOGS/0_data.log" \
    "$PY" -m mmext.datasets.demo --root "$MMEXT_DEMO_DATA"

stage "detection: training Mask R-CNN (tiny Dual-ViT, from scratch)" \
    "$LOGS/1_det_train.log" \
    "$PY" tools/train.py "$DET_CFG" --work-dir "$OUT/det" "${NO_VAL[@]}"
DET_CKPT=$(cat "$OUT/det/last_checkpoint")

stage "detection: COCO evaluation (bbox + segm), drawn predictions" \
    "$LOGS/2_det_test.log" \
    "$PY" tools/test.py "$DET_CFG" "$DET_CKPT" --work-dir "$OUT/det" \
    --show-dir "$OUT/det/predictions"

stage "detection: image demo (tools/infer.py) on two validation images" \
    "$LOGS/2b_det_infer.log" \
    "$PY" tools/infer.py "$DET_CFG" "$DET_CKPT" --out-dir "$OUT/det/infer" \
    --force "$MMEXT_DEMO_DATA"/coco/val/val_000[01].jpg

stage "segmentation: training UperNet (tiny Dual-ViT, from scratch)" \
    "$LOGS/3_seg_train.log" \
    "$PY" tools/train.py "$SEG_CFG" --work-dir "$OUT/seg" "${NO_VAL[@]}"
SEG_CKPT=$(cat "$OUT/seg/last_checkpoint")

stage "segmentation: single-scale mIoU" "$LOGS/4_seg_test.log" \
    "$PY" tools/test.py "$SEG_CFG" "$SEG_CKPT" --work-dir "$OUT/seg" \
    --show-dir "$OUT/seg/predictions"

stage "segmentation: image demo (tools/infer.py) on two validation images" \
    "$LOGS/4b_seg_infer.log" \
    "$PY" tools/infer.py "$SEG_CFG" "$SEG_CKPT" --out-dir "$OUT/seg/infer" \
    --force "$MMEXT_DEMO_DATA"/ade/images/validation/demo_validation_000[01].jpg

stage "segmentation: multi-scale + flip mIoU (--tta)" "$LOGS/5_seg_tta.log" \
    "$PY" tools/test.py "$SEG_CFG" "$SEG_CKPT" --work-dir "$OUT/seg_tta" \
    --tta --show-dir "$OUT/seg/predictions_tta"

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
print(f'full logs    {out}/logs/ (and each run\'s own log in its work dir)')
print(f'wall time    {seconds // 60} min {seconds % 60} s')
print('=' * 64)
PYEOF
