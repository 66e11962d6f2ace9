#!/usr/bin/env bash
# Shuffle Swin-XTi vs mmdet Swin-T vs a vanilla Swin-XTi (mmdet's
# SwinTransformer, 48 channels, depths 2-2-5-2), side by side on CPU:
# inference 1x3x800x1344 and a 2x3x512x512 training step, in alternating
# rounds (A B C, then C B A, ...), one fresh process per measurement
# (tools/benchmark.py: latency and peak memory); then the three models
# interleaved iteration by iteration in one process (interleaved.py: the
# ratios that survive the VM's drift). The load average is logged.
# MACs from tools/get_flops.py. Idle-half copies: idle_copies.py.
#
#   bash benchmarks/shuffle/run.sh [ROUNDS]     (from the repository root)
set -euo pipefail
ROUNDS=${ROUNDS:-${1:-2}}
PY=${PY:-python}
OUT=benchmarks/shuffle
export OMP_NUM_THREADS=${THREADS:-2}

names=(shuffle_swin_xtiny swin_xtiny_vanilla swin_t)
specs=(
  "dict(type='mmext.ShuffleSwin', arch='xtiny', drop_path_rate=0.1)"
  "dict(type='mmdet.SwinTransformer', embed_dims=48, depths=[2, 2, 5, 2], num_heads=[3, 6, 12, 24], drop_path_rate=0.1)"
  "dict(type='mmdet.SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], drop_path_rate=0.1)"
)

: > "$OUT/load.log"
for round in $(seq 1 "$ROUNDS"); do
  order=(0 1 2)
  if (( round % 2 == 0 )); then order=(2 1 0); fi
  for i in "${order[@]}"; do
    for mode in infer train; do
      echo "round $round ${names[$i]} $mode: $(uptime)" | tee -a "$OUT/load.log"
      $PY tools/benchmark.py "${specs[$i]}" --name "${names[$i]}" \
        --mode "$mode" --shape 1x3x800x1344 --train-shape 2x3x512x512 \
        --threads "$OMP_NUM_THREADS" --warmup 1 --iters 3 \
        --out "$OUT/round${round}.json"
    done
  done
done

for i in 0 1 2; do
  for shape in 1x3x224x224 1x3x800x1344; do
    $PY tools/get_flops.py "${specs[$i]}" --name "${names[$i]}" \
      --shape "$shape" --depth 0 --out "$OUT/macs_${names[$i]}_${shape}.json"
  done
done

for hw in "56 56" "200 336"; do
  $PY benchmarks/shuffle/idle_copies.py --hw $hw \
    --out "$OUT/idle_copies_${hw/ /x}.json"
done

for mode in infer train; do
  $PY benchmarks/shuffle/interleaved.py --mode $mode --rounds 7 \
    --threads 1 --out "$OUT/interleaved_${mode}.json"
done
$PY benchmarks/shuffle/summarize.py
