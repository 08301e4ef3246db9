#!/usr/bin/env bash
# Issue 17 on the device machine: the CUDA kernels' GPU tests, the step breakdown and the
# throughput against PyTorch, all in one run (call 2 of ../shared/device/README.md's recipe,
# carrying .mlxcuda/part2 and .devcarry/wheels: pytest's wheels, which the machine lacks).
#   bash tools/device/gpu_step.sh [breakdown|throughput|tests]...   (default: all three)
set -e
source tools/device/install_mlx_cuda.sh
python3 - <<'PY'
import glob, zipfile
for wheel in glob.glob(".devcarry/wheels/*.whl"):
    zipfile.ZipFile(wheel).extractall("/tmp/site")
PY
export PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1
for part in "${@:-tests breakdown throughput}"; do
  for job in $part; do
    case $job in
      tests) # A kernel that fails its tests makes the timings meaningless: stop there.
             python3 -m pytest -q -p no:cacheprovider tests/test_head_loss.py tests/test_rms_norm.py \
               tests/test_model.py tests/test_embedding.py tests/test_rotary.py \
               tests/test_attention.py tests/test_fused_optimizer.py tests/test_train_batches.py > "$OUT/tests.log" 2>&1 \
               || { tail -40 "$OUT/tests.log"; exit 1; }
             tail -3 "$OUT/tests.log" ;;
      breakdown) python3 benchmarks/train_breakdown.py --batch_sizes 128 256 --profile \
               --out "$OUT/train_breakdown_gpu.json" 2>&1 | tee "$OUT/breakdown.log" ;;
      throughput) python3 benchmarks/train_throughput.py --device gpu --configs seed \
               --mlx-precisions bfloat16 \
               --out "$OUT/train_throughput_gpu.json" 2>&1 | tee "$OUT/throughput.log" ;;
    esac
  done
done
