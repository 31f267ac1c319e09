#!/usr/bin/env bash
# Device run for the CUDA ragged-row FP8 kernel (issue 12.6): the GPU tests, the builds of ragged.cu against each
# other, then the library benchmark on the ragged shapes. Usage on the device:
#   bash docs/validation/2026-12-01-h200-cuda/run.sh TAG [fast]
set -u
tag=${1:-run}
out=${OUT:-/tmp/out}/$tag
mkdir -p "$out"
{
  date -u; nvidia-smi -L; nvidia-smi --query-gpu=driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
  python3 -c "from compat.fp8 import _cuda; print('nvrtc', _cuda.nvrtc_version(), _cuda.nvrtc_candidates()[:2], _cuda.DEFINES)"
} > "$out/env.txt" 2>&1
COMPAT_PROMISES=gpu,nvrtc,torch,triton\>=3.4 timeout 200 python3 -m pytest -q -p no:cacheprovider \
  tests/test_fp8_cuda.py tests/test_fp8_triton.py -k "gpu or without_nvrtc or broken" > "$out/pytest-gpu.txt" 2>&1
echo "pytest rc=$?" >> "$out/pytest-gpu.txt"
tail -3 "$out/pytest-gpu.txt"
timeout 200 python3 benchmarks/fp8_cuda_variants.py --out "$out" > "$out/variants.txt" 2>&1
echo "variants rc=$?" >> "$out/variants.txt"
cat "$out/variants.txt" | tail -8
[ "${2:-}" = fast ] && exit 0
timeout 200 python3 benchmarks/fp8_quantize.py --out "$out" --no-compile --no-checks --iters 20 \
  --shapes ragged_4097x11007 ragged_11008x4097 ragged_4096x11009 > "$out/bench.txt" 2>&1
echo "bench rc=$?" >> "$out/bench.txt"
tail -5 "$out/bench.txt"
