"""The CUDA kernel for block-FP8 on rows that are not 16-element aligned (compat/fp8/ragged.cu, compat/fp8/_cuda.py).

- On CPU, in the envs that promise `nvrtc` (tox: vllm0110 and vllm-latest, whose CUDA torch brings NVRTC 12.x and
  13.x): the real NVRTC compiles the kernel for Ada and Hopper, per input dtype, with no spills; and where NVRTC
  cannot be found the launcher says so and the caller keeps the Triton kernel.
- On a CUDA GPU of sm89+ (feature `gpu`, the device machine): the kernel's own output, poisoned first, bit-equal
  to the torch reference on the GPU and on the CPU over shapes that hit every spill case (a row's last group
  running into the next block, into the next row, into the next stripe, past a last block narrower than a group,
  the tensor's cut-short last group), for bf16, fp16 and fp32, with NaN/Inf only in the blocks that hold them.
  Results: docs/validation/2026-12-01-h200-cuda/.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import promises  # noqa: E402

# (M, K): K % 16 != 0 everywhere. 129/143: the last block narrower than a group (K % 128 in 1..15) so a row's
# last group crosses it into the next row; 100/17: one block per row (the next row's block is this one);
# 300/4097 rows: stripes that end mid-block; 1 and 5 rows: a single partial stripe.
SHAPES = [(4097, 11007), (11008, 4097), (4096, 11009), (300, 257), (257, 300), (129, 1000), (7, 40),
          (1, 17), (5, 17), (200, 131), (128, 129), (300, 143), (129, 100), (1000, 255), (4097, 4111)]


def _need_nvrtc():
    from compat.fp8 import _cuda

    try:
        return _cuda.nvrtc_version()
    except _cuda.CompileError as exc:
        promises.need("nvrtc", str(exc))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("arch", ["sm_89", "sm_90"])
def test_nvrtc_compiles_the_kernel_without_spills(arch, dtype):
    from compat.fp8 import _cuda

    _need_nvrtc()
    cubin, log = _cuda.compile_source(arch, dtype, extra=("--ptxas-options=-v",))
    assert cubin[:4] == b"\x7fELF", "NVRTC returned no cubin"
    assert "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" in log, log
    assert "block_fp8_ragged" in log, log


def test_a_broken_source_is_a_compile_error_with_the_log():
    from compat.fp8 import _cuda

    _need_nvrtc()
    with pytest.raises(_cuda.CompileError, match="could not compile ragged.cu for sm_90: .*error"):
        _cuda.compile_source("sm_90", source=_cuda.SOURCE.read_text().replace("GROUP - 1", "GROUP -"))


def test_without_nvrtc_the_kernel_is_none_and_the_reason_is_kept(monkeypatch):
    """No NVRTC anywhere: kernel_for answers None before touching the driver (so no GPU is needed to check it)."""
    from compat.fp8 import _cuda

    monkeypatch.setattr(_cuda, "nvrtc_candidates", lambda: ["/nonexistent/libnvrtc.so.99"])
    monkeypatch.setattr(_cuda, "_cubins", {})
    monkeypatch.setattr(_cuda, "_functions", {})
    monkeypatch.setattr(_cuda, "_errors", {})
    assert _cuda.kernel_for(0, "bfloat16", (9, 0)) is None
    assert "no NVRTC library found" in _cuda.last_error() and "libnvrtc.so.99" in _cuda.last_error()


def _need_gpu() -> "torch.device":
    if not torch.cuda.is_available():
        promises.need("gpu", "no CUDA GPU visible to torch (CI has none; run on the device machine)")
    if torch.cuda.get_device_capability() < (8, 9):
        promises.need("gpu", f"{torch.cuda.get_device_name()} is below sm89 (no e4m3 conversion)")
    return torch.device("cuda")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_cuda_kernel_bit_equal_on_gpu(dtype):
    dev = _need_gpu()
    from compat.fp8 import _cuda
    from compat.fp8 import _triton as tri
    from compat.fp8 import quantize as qmod

    dt = getattr(torch, dtype)
    g = torch.Generator(device=dev).manual_seed(0)
    for m, k in SHAPES:
        w = torch.randn((m, k), device=dev, generator=g).mul_(0.02).to(dt)
        w.view(-1)[::9973] *= 50.0                     # outliers: neighbouring blocks get different scales
        if m >= 128 and k >= 128:
            w[:128, :128] = 0                          # a zero block: scale 1.0, q 0
        q = torch.empty((m, k), dtype=torch.float8_e4m3fn, device=dev)
        q.view(torch.uint8).fill_(0x7F)                # e4m3fn NaN code: every element must be overwritten
        s = torch.full(((m + 127) // 128, (k + 127) // 128), float("nan"), device=dev)
        assert tri.kernel_name(w, q) == "cuda", ((m, k), _cuda.last_error())
        tri.quantize_triton(w, (128, 128), out=(q, s))
        torch.cuda.synchronize()
        for ref_dev in (dev, torch.device("cpu")):
            qr, sr = qmod.quantize_reference_core(w.to(ref_dev), (128, 128))
            assert torch.equal(sr.cpu(), s.cpu()), ((m, k), dtype, ref_dev, "scales")
            bad = (qr.view(torch.uint8).cpu() != q.view(torch.uint8).cpu()).nonzero()[:5].tolist()
            assert not bad, ((m, k), dtype, ref_dev, bad)


def test_cuda_kernel_non_finite_only_where_it_is():
    dev = _need_gpu()
    from compat.fp8 import _triton as tri
    from compat.fp8 import quantize as qmod

    w = torch.randn((300, 257), device=dev).to(torch.bfloat16)
    w[200, 129] = float("nan")                         # block (1, 1)
    w[5, 256] = float("inf")                           # block (0, 2): the narrow last block
    q, s = tri.quantize_triton(w, (128, 128))
    assert tri.kernel_name(w, q) == "cuda"
    finite = torch.isfinite(s).cpu()
    assert not finite[1, 1] and not finite[0, 2] and int(finite.sum()) == s.numel() - 2, s
    with pytest.raises(ValueError, match="NaN or Inf"):
        qmod.quantize_blockwise(w)


def test_cuda_kernel_kill_switch_and_stream(monkeypatch):
    """COMPAT_FP8_CUDA=0 keeps the Triton kernel; the CUDA kernel runs on torch's current stream."""
    dev = _need_gpu()
    from compat.fp8 import _triton as tri
    from compat.fp8 import quantize as qmod

    w = torch.randn((4097, 4111), device=dev).to(torch.bfloat16)
    q = torch.empty(w.shape, dtype=torch.float8_e4m3fn, device=dev)
    monkeypatch.setenv(tri.CUDA_OFF_ENV, "0")
    assert tri.kernel_name(w, q) == "rowflat"
    monkeypatch.delenv(tri.CUDA_OFF_ENV)
    assert tri.kernel_name(w, q) == "cuda"
    side = torch.cuda.Stream(device=dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        q2, s2 = tri.quantize_triton(w, (128, 128))
    torch.cuda.current_stream(dev).wait_stream(side)
    qr, sr = qmod.quantize_reference_core(w, (128, 128))
    assert torch.equal(sr, s2) and torch.equal(qr.view(torch.uint8), q2.view(torch.uint8))
