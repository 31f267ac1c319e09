#!/bin/sh
# FP8 ordered kernel (issue 12.6) on the device's H200, from the repository root; OUT comes back.
set -u
export PYTHONPATH=$PWD
O=${OUT:-/tmp/out}; mkdir -p "$O"
python3 -m pytest -q tests/test_fp8_triton.py -k "${PYTEST_K:-gpu}" > "$O/pytest-gpu.txt" 2>&1; echo "exit $?" >> "$O/pytest-gpu.txt"
python3 benchmarks/fp8_quantize.py --no-compile --iters 50 --warmup 5 --out "$O" --shapes \
  ragged_4097x11007 ragged_11008x4097 ragged_4096x11009 ${EXTRA_SHAPES:-} > "$O/bench.txt" 2>&1
echo "exit $?" >> "$O/bench.txt"
if command -v ncu >/dev/null; then
  for k in ${NCU_KERNELS:-auto}; do
    ncu --clock-control none --kernel-name regex:block_fp8 --launch-skip 2 --launch-count 1 \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
      --section WarpStateStats --section SchedulerStats --section InstructionStats \
      python3 benchmarks/fp8_profile_one.py 4097 11007 --kernel $k > "$O/ncu-4097x11007-$k.txt" 2>&1
  done
fi
tail -3 "$O/pytest-gpu.txt"; tail -6 "$O/bench.txt"
