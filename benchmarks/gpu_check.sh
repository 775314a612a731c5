#!/usr/bin/env bash
# Every row of the speed table on one CUDA GPU, one command (about 6-8 minutes on one H100):
#   naive pipeline, the hook path (default) and the explicit runner (eager / compiled / CUDA-graph) fp16
#   at batch 32, 8 and 1 (both paths: the first lent GPU decides whether the explicit one earns its place), compare rate,
#   peak GPU memory, max score difference to float32, 2AFC flips of half-precision compare.
# The table goes to stdout and to $OUT/bench_gpu.txt, the numbers to $OUT/bench_gpu.json ($OUT defaults to .).
# Compiled rows run batch 32 first: its static kernels give the headline number; batch 8 then
# recompiles once with a dynamic batch dimension that batch 1 reuses.
# Extra arguments go to bench_gpu.py, e.g. --rows naive,eager,compiled to skip the CUDA-graph rows.
# Then one DiffSim loss step (forward + backward) at 512 px against one embed (bench_loss.py; target <= 3x),
# to $OUT/bench_loss.txt and $OUT/bench_loss.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-.}"
mkdir -p "$OUT"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
python benchmarks/bench_gpu.py --device cuda --size 512 --dtype float16 --batch-sizes 32,8,1 --images 128 \
    --naive-images 16 --compare 128x128 --out "$OUT/bench_gpu.json" "$@" 2>&1 | tee "$OUT/bench_gpu.txt"
python benchmarks/bench_loss.py --device cuda --size 512 --dtype float16 --out "$OUT/bench_loss.json" 2>&1 \
    | tee "$OUT/bench_loss.txt"
