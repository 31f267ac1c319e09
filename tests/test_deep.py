"""doctor --deep: the probe's result becomes findings; skipped cleanly without GPU or torch."""

from __future__ import annotations

import compat
from compat.report.deep import deep_findings, findings_from_probe
from helpers import FIXTURES


def test_skipped_on_simulated_or_gpu_less_machines():
    rep = compat.setup(hardware=str(FIXTURES / "h100-sxm.toml"), patches=False)
    assert [f.id for f in deep_findings(rep)] == ["deep-skipped"]


def test_failed_claims_become_errors_with_fix():
    result = {"gpus": [{"index": 0, "name": "Tesla V100-SXM2-32GB", "sm": "7.0", "checks": {
        "arch": {"ok": False, "detail": "sm_70 not in torch.cuda.get_arch_list() ['sm_75', 'sm_80']"},
        "matmul": {"ok": True, "detail": "float16 4096^3 matmul 98.1 TFLOP/s"}}}],
        "nccl": {"ok": True, "detail": "NCCL 2.27.3 single-rank all_reduce ok"}}
    fs = {f.id: f for f in findings_from_probe(result)}
    assert fs["deep-arch"].severity == "error" and "compat plan" in fs["deep-arch"].fix
    assert fs["deep-matmul"].severity == "info" and "TFLOP/s" in fs["deep-matmul"].message
    assert fs["deep-nccl"].severity == "info"


def test_torch_without_cuda_is_an_error():
    fs = findings_from_probe({"error": "torch.cuda.is_available() is False"})
    assert fs[0].id == "deep-torch-cuda" and fs[0].severity == "error"
