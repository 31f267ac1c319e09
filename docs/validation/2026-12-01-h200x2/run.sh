#!/bin/sh
# The 2 x H200 proof of issue 12.5, run through the device tool from the repository root: OUT is the folder
# whose files come back. NVLink multicast stays off (the device's rule); the checks keep NCCL_NVLS_ENABLE.
set -u
export NCCL_NVLS_ENABLE=0 PYTHONPATH=$PWD
O=${OUT:-/tmp/out}; mkdir -p "$O"
{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=index,name,uuid,driver_version,pci.bus_id --format=csv
  nvidia-smi topo -m
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl', torch.cuda.nccl.version(), 'devices', torch.cuda.device_count())"
} > "$O/machine.txt" 2>&1
{
  echo "command: python3 -m compat doctor --deep"
  /usr/bin/time -f "wall %e s" python3 -m compat doctor --deep; echo "exit $?"
} > "$O/doctor-deep-2gpu.txt" 2>&1
python3 -m compat doctor --deep --json > "$O/doctor-deep-2gpu.json" 2> "$O/doctor-deep-2gpu-json.stderr"; echo "exit $?" >> "$O/doctor-deep-2gpu-json.stderr"
python3 - > "$O/verdict-cache.txt" 2>&1 <<'PY'
# What setup() reads afterwards: the cached verdict for exactly these GPUs (no torch import on that path).
import sys, pynvml as n
n.nvmlInit()
drv = n.nvmlSystemGetDriverVersion()
uuids = [n.nvmlDeviceGetUUID(n.nvmlDeviceGetHandleByIndex(i)) for i in range(n.nvmlDeviceGetCount())]
from compat.detect.p2p_verdict import p2p_ok, read_verdict, verdict_path
print("path", verdict_path(drv, uuids)); print("verdict", read_verdict(drv, uuids)); print("p2p_ok", p2p_ok(drv, uuids))
import compat; compat.setup(); print("torch imported by setup():", "torch" in sys.modules)
PY
python3 -m pytest -q tests/test_deep_multi_gpu.py > "$O/pytest-deep-multi-gpu.txt" 2>&1; echo "exit $?" >> "$O/pytest-deep-multi-gpu.txt"
tail -5 "$O"/*.txt
