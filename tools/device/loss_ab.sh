#!/usr/bin/env bash
# Issue 17 on the device machine: the training loss of the code before the CUDA kernels
# (an archive of it carried in .devcarry/before) against this checkout, two seeds each, four
# runs at once on the one GPU; each run's metrics.jsonl comes back as $OUT/<code><seed>.metrics.jsonl
# for benchmarks/loss_runs.py. Needs MLX installed by tools/device/gpu_step.sh (same warm machine)
# and the TinyStories train.txt/valid.txt carried in .devcarry/data. Seeds: $SEEDS (default "0 1").
set -e
# The device machine has no platformdirs: the token cache needs its folder named.
export PYTHONUNBUFFERED=1 GRAIN_CACHE_DIR=${GRAIN_CACHE_DIR:-/tmp/grain-cache}
ARGS="--data_dir $PWD/.devcarry/data --steps 3000 --batch_size 64 --lr 3e-3 --dropout 0.2
      --precision bfloat16 --eval_every 500"
for seed in ${SEEDS:-0 1}; do
  (cd .devcarry/before && PYTHONPATH=/tmp/site:. python3 scripts/train.py $ARGS --seed $seed \
     --output_dir /tmp/runs/before$seed > "$OUT/before$seed.log" 2>&1) &
  (PYTHONPATH=/tmp/site:. python3 scripts/train.py $ARGS --seed $seed \
     --output_dir /tmp/runs/fused$seed > "$OUT/fused$seed.log" 2>&1) &
done
wait
for run in $(for s in ${SEEDS:-0 1}; do echo before$s fused$s; done); do
  cp /tmp/runs/$run/metrics.jsonl "$OUT/$run.metrics.jsonl"
  tail -2 "$OUT/$run.log"
done
