#!/usr/bin/env bash
# One-call GPU check (< 8 min on an H100): build with CUDA, run the GPU tests,
# then time packed vs dense bf16. Writes logs and the table to $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-}"
log() { if [ -n "$OUT" ]; then tee -a "$OUT/gpu_check.log"; else cat; fi; }
{
  echo "== versions"; nvidia-smi || true; nvcc --version | tail -2
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
} 2>&1 | log
echo "== build (CUDA required)" | log
GOLFPACK_CUDA=ON timeout 300 pip install -e . --no-build-isolation -q 2>&1 | tail -20 | log
python -c "import golfpack._C as C; assert C.with_cuda, 'extension built without CUDA'; print('with_cuda', C.with_cuda)" 2>&1 | log
echo "== GPU tests" | log
rc=0
timeout 180 python -m pytest -q tests/test_qmatmul_cuda.py tests/test_packed.py 2>&1 | tail -25 | log || rc=$?
echo "== benchmark" | log
timeout 240 python benchmarks/gpu_check.py 2>&1 | log || rc=$?
exit $rc
