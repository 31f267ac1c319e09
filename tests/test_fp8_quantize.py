"""compat.fp8 numerics on CPU: error bound, scale layout, odd shapes, zero blocks, NaN/Inf refusal,
input dtypes, and the streaming state-dict API. Skipped as a module where torch is not installed.
The Triton kernels are checked in tests/test_fp8_triton.py (interpreter and GPU) and by
benchmarks/fp8_quantize.py."""

from __future__ import annotations

import gc
import inspect
import math
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from compat import fp8  # noqa: E402
from compat.fp8 import quantize as qmod  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DTYPES = [torch.bfloat16, torch.float16, torch.float32]
E4M3_MAX = 448.0


def _weight(shape, dtype, seed=0, scale=0.02):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * scale
    # a few outliers so blocks have different scales
    w.view(-1)[torch.randint(0, w.numel(), (max(1, w.numel() // 500),), generator=g)] *= 40
    return w.to(dtype)


def _naive(weight, bs=(128, 128)):
    """Independent per-block loop implementing the documented numerics."""
    m, n = weight.shape
    bm, bn = bs
    mb, nb = math.ceil(m / bm), math.ceil(n / bn)
    q = torch.empty((m, n), dtype=torch.float8_e4m3fn)
    s = torch.empty((mb, nb), dtype=torch.float32)
    for i in range(mb):
        for j in range(nb):
            blk = weight[i * bm:(i + 1) * bm, j * bn:(j + 1) * bn].to(torch.float32)
            amax = blk.abs().max()
            eff = torch.tensor(E4M3_MAX) if amax == 0 else torch.clamp(amax, min=fp8.AMAX_FLOOR)
            s[i, j] = eff / E4M3_MAX
            inv = torch.tensor(E4M3_MAX) / eff
            q[i * bm:(i + 1) * bm, j * bn:(j + 1) * bn] = (blk * inv).clamp(-E4M3_MAX, E4M3_MAX).to(q.dtype)
    return q, s


def _codes(q):
    return q.view(torch.uint8)


# --------------------------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(256, 384), (300, 257), (1, 1), (129, 127), (5, 1000)])
def test_shapes_dtypes_and_layout(dtype, shape):
    w = _weight(shape, dtype)
    q, s = fp8.quantize_blockwise(w)
    assert q.dtype == torch.float8_e4m3fn and q.shape == w.shape and q.device == w.device
    assert s.dtype == torch.float32
    assert tuple(s.shape) == (math.ceil(shape[0] / 128), math.ceil(shape[1] / 128))
    q_naive, s_naive = _naive(w)
    assert torch.equal(s, s_naive)
    assert torch.equal(_codes(q), _codes(q_naive))


def test_scale_layout_300x257_is_row_major_block_grid():
    w = _weight((300, 257), torch.bfloat16)
    # make every block's amax distinct and known: block (i, j) gets amax = 1 + 3*i + j
    for i in range(3):
        for j in range(3):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            blk.clamp_(-0.5, 0.5)
            blk[0, 0] = 1.0 + 3 * i + j
    _, s = fp8.quantize_blockwise(w)
    expected = torch.tensor([[(1.0 + 3 * i + j) / E4M3_MAX for j in range(3)] for i in range(3)])
    assert s.shape == (3, 3)
    assert torch.equal(s, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_error_bound_within_one_e4m3_step(dtype):
    w = _weight((300, 257), dtype, seed=3)
    q, s = fp8.quantize_blockwise(w)
    deq = fp8.dequantize_blockwise(q, s)
    wf = w.to(torch.float32)
    err = (deq - wf).abs()
    s_full = s.repeat_interleave(128, 0)[:300].repeat_interleave(128, 1)[:, :257]
    # element-wise: round-to-nearest in e4m3 is off by at most half a step: 2^-4 relative for normals,
    # 2^-10 (absolute, in q units) in the subnormal range; tiny slack for the fp32 multiply.
    bound = wf.abs() * 2.0**-4 + s_full * 2.0**-10
    assert torch.all(err <= bound * (1 + 1e-6) + 1e-30)
    # block-wise: relative to the block's amax, the error is at most half the top-binade step (16/448)
    for i in range(3):
        for j in range(3):
            b = (slice(i * 128, (i + 1) * 128), slice(j * 128, (j + 1) * 128))
            amax = wf[b].abs().max()
            assert err[b].max() <= amax * (16.0 / 448.0) * (1 + 1e-6)
    # and the dequantized weight is close overall
    assert (deq - wf).norm() / wf.norm() < 0.05


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_max_maps_to_448(dtype):
    w = _weight((256, 384), dtype, seed=5)
    q, s = fp8.quantize_blockwise(w)
    qf = q.to(torch.float32)
    for i in range(2):
        for j in range(3):
            blk = qf[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            assert blk.abs().max() == E4M3_MAX
            src = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128].float()
            assert s[i, j] == src.abs().max() / E4M3_MAX


def test_zero_block_has_scale_one_and_zero_codes():
    w = _weight((300, 257), torch.bfloat16)
    w[128:256, 128:256] = 0
    q, s = fp8.quantize_blockwise(w)
    assert s[1, 1] == 1.0
    assert torch.all(q[128:256, 128:256].to(torch.float32) == 0)
    deq = fp8.dequantize_blockwise(q, s)
    assert torch.isfinite(deq).all() and torch.all(deq[128:256, 128:256] == 0)
    assert torch.isfinite(s).all() and torch.all(s > 0)


def test_all_zero_tensor_and_ragged_zero_edge():
    q, s = fp8.quantize_blockwise(torch.zeros(130, 3, dtype=torch.float16))
    assert torch.equal(s, torch.ones(2, 1))
    assert torch.all(q.to(torch.float32) == 0)


def test_tiny_block_stays_finite():
    w = torch.zeros(128, 128, dtype=torch.float32)
    w[3, 4] = 1e-35  # below AMAX_FLOOR: 448/amax would overflow float32 without the floor
    w[5, 6] = -1e-36
    q, s = fp8.quantize_blockwise(w)
    assert torch.isfinite(s).all() and s[0, 0] > 0
    assert not torch.isnan(q.to(torch.float32)).any()


def test_negative_and_positive_extremes():
    w = torch.tensor([[-3.0, 1.5], [0.75, 3.0]], dtype=torch.bfloat16)
    q, s = fp8.quantize_blockwise(w)
    assert torch.equal(s, torch.tensor([[3.0]]) / E4M3_MAX)
    assert q.to(torch.float32).tolist() == [[-448.0, 224.0], [112.0, 448.0]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_inf_refused(dtype, bad):
    w = _weight((300, 257), dtype)
    w[290, 250] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        fp8.quantize_blockwise(w)
    # without the check the poisoned block shows up as a non-finite scale (and only that block)
    _, s = fp8.quantize_blockwise(w, check_finite=False)
    assert not torch.isfinite(s[2, 1]) and torch.isfinite(s).sum() == 8


def test_non_contiguous_input_matches_contiguous():
    w = _weight((257, 300), torch.bfloat16).t()
    assert not w.is_contiguous()
    q1, s1 = fp8.quantize_blockwise(w)
    q2, s2 = fp8.quantize_blockwise(w.contiguous())
    assert torch.equal(s1, s2) and torch.equal(_codes(q1), _codes(q2))


def test_other_block_sizes():
    w = _weight((100, 70), torch.float32)
    q, s = fp8.quantize_blockwise(w, block_size=(32, 64))
    assert s.shape == (4, 2)
    q_naive, s_naive = _naive(w, (32, 64))
    assert torch.equal(s, s_naive) and torch.equal(_codes(q), _codes(q_naive))
    assert fp8.quantize_blockwise(w, block_size=50)[1].shape == (2, 2)


def test_empty_weight():
    q, s = fp8.quantize_blockwise(torch.empty(0, 300, dtype=torch.bfloat16))
    assert q.shape == (0, 300) and s.shape == (0, 3)


@pytest.mark.parametrize(
    "bad, kwargs, exc",
    [
        (torch.zeros(4), {}, ValueError),
        (torch.zeros(2, 2, 2), {}, ValueError),
        (torch.zeros(4, 4, dtype=torch.int32), {}, ValueError),
        (torch.zeros(4, 4, dtype=torch.float64), {}, ValueError),
        ([[1.0]], {}, TypeError),
        (torch.zeros(4, 4), {"impl": "cuda"}, ValueError),
        (torch.zeros(4, 4), {"block_size": (0, 128)}, ValueError),
    ],
)
def test_bad_inputs(bad, kwargs, exc):
    with pytest.raises(exc):
        fp8.quantize_blockwise(bad, **kwargs)


def test_triton_impl_refused_for_cpu_tensor(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="triton"):
        fp8.quantize_blockwise(torch.ones(4, 4), impl="triton")


def test_auto_uses_torch_on_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert qmod._pick_impl(torch.ones(4, 4), "auto", (128, 128)) == "torch"


def test_dequantize_checks_shapes():
    q, s = fp8.quantize_blockwise(torch.ones(300, 257))
    with pytest.raises(ValueError, match="expected"):
        fp8.dequantize_blockwise(q, s[:2])
    assert fp8.dequantize_blockwise(q, s, dtype=torch.bfloat16).dtype == torch.bfloat16


# ------------------------------------------------------------------------------------------- streaming


def _model_items(tracker=None):
    shapes = [
        ("model.embed_tokens.weight", (320, 64)),
        ("model.layers.0.input_layernorm.weight", (64,)),
        ("model.layers.0.self_attn.qkv_proj.weight", (192, 64)),
        ("model.layers.0.self_attn.qkv_proj.bias", (192,)),
        ("model.layers.0.mlp.gate_up_proj.weight", (300, 64)),
        ("model.layers.0.mlp.gate.weight", (8, 64)),
        ("model.layers.0.mlp.down_proj.weight", (64, 150)),
        ("model.norm.weight", (64,)),
        ("lm_head.weight", (320, 64)),
    ]
    def make(i, name, shape):
        t = _weight(shape, torch.bfloat16, seed=i) if len(shape) == 2 else torch.ones(shape, dtype=torch.bfloat16)
        if tracker is not None:
            tracker.append((name, weakref.ref(t)))
        return t

    # like a safetensors reader: the source itself keeps no reference to what it yielded
    for i, (name, shape) in enumerate(shapes):
        yield name, make(i, name, shape)


QUANTIZED = {
    "model.layers.0.self_attn.qkv_proj.weight",
    "model.layers.0.mlp.gate_up_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
}


@pytest.mark.parametrize("suffix", ["_scale_inv", "_scale"])
def test_state_dict_names_order_and_passthrough(suffix):
    out = list(fp8.quantize_state_dict(_model_items(), scale_suffix=suffix))
    names = [n for n, _ in out]
    expected = []
    for name, _ in _model_items():
        expected.append(name)
        if name in QUANTIZED:
            expected.append(name + suffix)
    assert names == expected
    d = dict(out)
    for name in QUANTIZED:
        assert d[name].dtype == torch.float8_e4m3fn
        assert d[name + suffix].dtype == torch.float32
        assert d[name + suffix].shape == (math.ceil(d[name].shape[0] / 128), math.ceil(d[name].shape[1] / 128))
    assert d["lm_head.weight"].dtype == torch.bfloat16
    assert d["model.embed_tokens.weight"].dtype == torch.bfloat16
    assert d["model.layers.0.mlp.gate.weight"].dtype == torch.bfloat16


def test_state_dict_is_lazy_generator():
    pulled = []

    def source():
        for name, t in _model_items():
            pulled.append(name)
            yield name, t

    gen = fp8.quantize_state_dict(source())
    assert inspect.isgenerator(gen)
    assert pulled == []  # nothing read before the first next()
    first = next(gen)
    assert first[0] == "model.embed_tokens.weight" and len(pulled) == 1
    name, q = next(gen)  # skips the norm (passed through), then the first quantized weight
    name, q = next(gen)
    assert name == "model.layers.0.self_attn.qkv_proj.weight" and q.dtype == torch.float8_e4m3fn
    assert len(pulled) == 3  # still has not touched the rest of the model


def test_state_dict_releases_each_input_before_yielding_its_quantized_copy():
    tracker = []
    for name, t in fp8.quantize_state_dict(_model_items(tracker)):
        if t.dtype == torch.float8_e4m3fn:
            gc.collect()
            ref = dict(tracker)[name]
            assert ref() is None, f"{name}: the bf16 input is still alive while its fp8 copy is handed out"
        del t


def test_state_dict_accepts_mapping_and_custom_predicate():
    sd = dict(_model_items())
    out = dict(fp8.quantize_state_dict(sd, should_quantize=lambda n, t: n == "lm_head.weight"))
    assert out["lm_head.weight"].dtype == torch.float8_e4m3fn
    assert out["lm_head.weight_scale_inv"].shape == (3, 1)
    assert out["model.layers.0.mlp.down_proj.weight"].dtype == torch.bfloat16


def test_state_dict_errors():
    with pytest.raises(ValueError, match="scale_suffix"):
        fp8.quantize_state_dict({}, scale_suffix=".scale")  # raised at call time, not at first next()
    w = _weight((64, 64), torch.bfloat16)
    w[0, 0] = float("nan")
    with pytest.raises(ValueError, match="layers.1.o_proj.weight"):
        list(fp8.quantize_state_dict([("layers.1.o_proj.weight", w)]))


@pytest.mark.parametrize(
    "name, shape, expected",
    [
        ("model.layers.0.self_attn.o_proj.weight", (64, 64), True),
        ("model.layers.0.mlp.gate_proj.weight", (64, 64), True),
        ("model.layers.0.mlp.experts.3.w1.weight", (64, 64), True),
        ("model.layers.0.mlp.gate.weight", (8, 64), False),
        ("model.layers.0.mlp.shared_expert_gate.weight", (1, 64), False),
        ("model.embed_tokens.weight", (64, 64), False),
        ("lm_head.weight", (64, 64), False),
        ("model.layers.0.post_attention_layernorm.weight", (64,), False),
        ("model.layers.0.self_attn.q_norm.weight", (64, 64), False),
        ("model.layers.0.self_attn.o_proj.bias", (64,), False),
        ("model.layers.0.self_attn.o_proj.weight_scale_inv", (1, 1), False),
    ],
)
def test_default_should_quantize(name, shape, expected):
    assert fp8.default_should_quantize(name, torch.zeros(shape, dtype=torch.bfloat16)) is expected


def test_scale_name():
    assert fp8.scale_name("a.weight") == "a.weight_scale_inv"
    assert fp8.scale_name("a.weight", "_scale") == "a.weight_scale"


# ------------------------------------------------------------------------------------- import hygiene


def test_import_compat_fp8_does_not_import_torch():
    code = "import sys, compat.fp8; assert 'torch' not in sys.modules, 'torch imported'; print(compat.fp8.FP8_E4M3_MAX)"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "448.0"


# The Triton kernels (interpreter and GPU): tests/test_fp8_triton.py
