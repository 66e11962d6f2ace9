#!/usr/bin/env bash
# DualViT-S/B on CPU: mmext vs the official implementation, measured the same
# way (tools/benchmark.py: fresh process per measurement, median latency,
# peak RSS), alternating between the two for ROUNDS rounds and keeping each
# one's fastest round, since this runs on a shared, busy machine. Results
# merge into benchmarks/dualvit/cpu.{json,md}.
#
#   OFFICIAL_FACTORY=/path/to/factory.py benchmarks/dualvit/cpu.sh
#   ALLOCATORS="default retain" ...   # glibc malloc modes (tools/benchmark.py)
#
# OFFICIAL_FACTORY is a file defining dualvit_s() / dualvit_b() that return
# the official detection backbones (object_detection/dualvit.py of
# YehLi/ImageNetModel, whose mmcv-1.x imports need stand-ins on this stack);
# without it only mmext is measured. mmext runs with the official detection
# settings (drop_path_rate 0.15, frozen stem BN) so both do the same work.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/dualvit/cpu.json}
ITERS=${ITERS:-2}
ROUNDS=${ROUNDS:-2}  # alternate mmext / official, keep each one's best round
ALLOCATORS=${ALLOCATORS:-default}
for round in $(seq "$ROUNDS"); do
 for alloc in $ALLOCATORS; do
  for arch in s b; do
    for mode in infer train; do
      "$PY" tools/benchmark.py DualViT --arch $arch --name "mmext DualViT-${arch^^}" \
        --set drop_path_rate=0.15 "stem_norm_cfg=dict(type='BN', requires_grad=False)" \
        --mode $mode --allocator $alloc --warmup 1 --iters "$ITERS" \
        --out "$OUT" --keep-best
      if [ -n "${OFFICIAL_FACTORY:-}" ]; then
        "$PY" tools/benchmark.py --factory "$OFFICIAL_FACTORY:dualvit_$arch" \
          --name "official DualViT-${arch^^}" --mode $mode \
          --allocator $alloc --warmup 1 --iters "$ITERS" --out "$OUT" \
          --keep-best
      fi
    done
  done
 done
done
