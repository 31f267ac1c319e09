"""Every fixture model on every fixture machine, against harvested vLLM releases: the verdicts pre-flight gives
equal the ones derived here from the harvested facts (read as plain TOML) and arithmetic written out below.

Nothing here calls compat's size or fit code: parameter shapes, bytes per weight, KV bytes per token and the
memory budget are recomputed from config.json. Where the arithmetic lands within 2% of a boundary (a model
that just fits) the test only requires one of the memory verdicts, since the two computations round
differently (norms and biases are left out here).

Release facts: compat/data/harvested/ (tools/harvest.py's files): the oldest and the newest harvested release,
and 0.11.0.
"""

import json
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from compat.choose import choose_backend
from compat.detect import detect
from compat.detect.model import Software
from compat.preflight import for_environment
from compat.profiles import select_profile

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "fixtures" / "models"
MACHINES = ROOT / "tests" / "fixtures" / "hardware"
HARVEST = ROOT / "compat" / "data" / "harvested"     # tools/harvest.py's files, one per release
# compat's own estimate parameters (overhead margin, profile-run batch, block rounding: preflight.toml [memory],
# stated as compat's modelling choices there) are read; the vLLM facts the verdicts hinge on are written out here
# from the releases' sources, not from preflight.toml (which pre-flight itself reads):
DATA = tomllib.loads((ROOT / "compat" / "data" / "preflight.toml").read_text())
# vllm 0.10.2 vllm/config/cache.py CacheConfig.gpu_memory_utilization: float = 0.9 (EngineArgs takes it over)
GPU_MEMORY_UTILIZATION = 0.9
# vllm 0.10.2 vllm/model_executor/layers/quantization/fp8.py: use_marlin = not has_device_capability(89)
FP8_NATIVE_MIN_SM = 89
# vllm 0.10.2 vllm/config/__init__.py _verify_quantization: awq/gptq checkpoints are served by the Marlin kernels
# (awq_marlin, gptq_marlin) where the GPU allows, else by their own
QUANT_KERNELS = {"awq": ["awq_marlin", "awq"], "gptq": ["gptq_marlin", "gptq"]}
# vllm 0.10.2 vllm/config/__init__.py _FLOAT16_NOT_SUPPORTED_MODELS ('Numerical instability. Please use bfloat16 or
# float32 instead.')
FLOAT16_UNSUPPORTED = {"gemma2", "gemma3", "gemma3_text", "plamo2", "glm4"}
MIB, GIB = 1 << 20, 1 << 30


def _toml(p):
    return tomllib.loads(Path(p).read_text())


def _releases():
    files = sorted(HARVEST.glob("vllm-*.toml"), key=lambda p: Version(p.name[5:-5]))
    picked = {files[0], files[-1]} | {p for p in files if p.name == "vllm-0.11.0.toml"}
    return sorted((p.name[5:-5] for p in picked), key=Version)


RELEASES = _releases()
MODEL_NAMES = sorted(p.name for p in MODELS.iterdir() if (p / "config.json").exists())
MACHINE_NAMES = sorted(p.stem for p in MACHINES.glob("*.toml"))


# ------------------------------------------------------------------------------------------ the arithmetic
def bytes_per_linear_weight(cfg, dtype_bytes):
    q = cfg.get("quantization_config")
    if not q:
        return dtype_bytes
    if q["quant_method"] == "fp8":
        bn, bk = q.get("weight_block_size", [0, 0])
        return 1 + (4 / (bn * bk) if bn else 0)               # e4m3 byte + float32 scale per block
    bits, group = q["bits"], q["group_size"]
    return bits / 8 + (2 + bits / 8) / group                  # packed weight + fp16 scale + packed zero per group


def shapes(cfg):
    """(linear weights, embedding + lm_head weights, weights every rank holds whole) from config shapes."""
    h, n, v = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    if "kv_lora_rank" in cfg:                                  # DeepSeek MLA
        qk = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
        repl = h * cfg["q_lora_rank"] + h * (cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"])
        attn = (cfg["q_lora_rank"] * heads * qk + cfg["kv_lora_rank"] * heads * (cfg["qk_nope_head_dim"] + cfg["v_head_dim"])
                + heads * cfg["v_head_dim"] * h)
    else:
        hd = cfg.get("head_dim") or h // heads
        kv = cfg.get("num_key_value_heads", heads)
        attn, repl = h * heads * hd + 2 * h * kv * hd + heads * hd * h, 0
    experts = cfg.get("num_local_experts") or cfg.get("n_routed_experts") or 0
    if experts:
        dense = cfg.get("first_k_dense_replace", 0)
        moe_i = cfg.get("moe_intermediate_size", cfg["intermediate_size"])
        mlp = dense * 3 * h * cfg["intermediate_size"] + (n - dense) * (experts + cfg.get("n_shared_experts", 0)) * 3 * h * moe_i
    else:
        mlp = n * 3 * h * cfg["intermediate_size"]
    tied = cfg.get("tie_word_embeddings", True)
    return n * attn + mlp, v * h * (1 if tied else 2), n * repl


def kv_per_token(cfg, dtype_bytes, tp, mla_cache):
    """mla_cache: the release has an MLA backend, so an MLA model caches its latent; else full heads of
    qk_nope + qk_rope dims."""
    n = cfg["num_hidden_layers"]
    if "kv_lora_rank" in cfg and mla_cache:
        return n * (cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]) * dtype_bytes
    heads = cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // heads
    if "kv_lora_rank" in cfg:
        hd = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
    kv = cfg.get("num_key_value_heads", heads)
    return 2 * n * max(1, kv // tp) * hd * dtype_bytes


def valid_tp(cfg, tp):
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    if heads % tp or ("kv_lora_rank" not in cfg and (kv % tp if tp <= kv else tp % kv)):
        return False
    q = cfg.get("quantization_config") or {}
    inter = cfg.get("moe_intermediate_size", cfg["intermediate_size"]) if (cfg.get("num_local_experts") or cfg.get("n_routed_experts")) else cfg["intermediate_size"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // heads
    if q.get("group_size") and q.get("bits", 16) < 8:
        return all(size % tp == 0 and (size // tp) % q["group_size"] == 0 for size in (inter, heads * hd))
    if q.get("weight_block_size"):
        return inter % tp == 0 and all((inter // tp) % b == 0 for b in q["weight_block_size"])
    return True


def tokens_that_fit(cfg, dtype, memory_mib, tp, mla_cache):
    b = {"float16": 2, "bfloat16": 2, "float32": 4}[dtype]
    linear, embed, repl = shapes(cfg)
    lb = bytes_per_linear_weight(cfg, b)
    weights = (linear * lb + embed * b) / tp + repl * lb
    mem = DATA["memory"]
    experts = cfg.get("num_local_experts") or cfg.get("n_routed_experts")
    inter = cfg.get("moe_intermediate_size", cfg["intermediate_size"]) * cfg["num_experts_per_tok"] if experts else cfg["intermediate_size"]
    activations = mem["batched_tokens"] * (2 * inter // tp + 4 * cfg["hidden_size"]) * b + 2 * mem["max_num_seqs"] * (cfg["vocab_size"] // tp) * 4
    usable = memory_mib * MIB * GPU_MEMORY_UTILIZATION
    return (usable - weights - mem["overhead_mib"] * MIB - activations) / kv_per_token(cfg, b, tp, mla_cache)


# ------------------------------------------------------------------------------------------ expected verdicts
# A backend's floor where the release states none (harvests before 0.33.0 carry no supports_compute_capability),
# written out from outside compat's tables (attention_backends.toml is what pre-flight itself reads):
OUTSIDE_FLOOR = {
    "FLASH_ATTN": (80, "vLLM 0.5.4 vllm/attention/selector.py and 0.7-0.10 vllm/platforms/cuda.py: capability < 8.0 "
                       "never gets FlashAttention ('Cannot use FlashAttention-2 backend for Volta and Turing GPUs')"),
    "XFORMERS": (70, "vLLM GPU installation docs: compute capability 7.0 or higher; xformers builds for sm70+"),
    "FLEX_ATTENTION": (70, "vLLM 0.10.2-0.11.0 vllm/platforms/cuda.py: 'FlexAttention is the default for older GPUs' "
                           "(capability < 8.0, down to vLLM's own 7.0 floor)"),
    "TORCH_SDPA": (0, "vLLM 0.5.4-0.11.0 vllm/platforms/cpu.py: the CPU platform's backend, no GPU needed"),
}
FA2_LIBS = ("vllm/vllm_flash_attn/vllm_flash_attn_c.abi3.so", "vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so")


def floor(name, bf, rel):
    """A backend's minimum compute capability: the release's own (harvested supports_compute_capability, or for
    FLASH_ATTN the lowest arch compiled into its bundled flash-attn library), else written out above."""
    if "min_capability" in bf:
        return bf["min_capability"]
    files = rel.get("arch", {}).get("files", {})
    fa2 = next((files[lib] for lib in FA2_LIBS if lib in files), None)
    if name in ("FLASH_ATTN", "FLASH_ATTN_VLLM_V1") and fa2:
        return min(int(a.split("_", 1)[1].rstrip("af")) for a in fa2)
    assert name in OUTSIDE_FLOOR, f"no floor for {name} in vLLM {rel['release']['vllm']}: add one with its source"
    return OUTSIDE_FLOOR[name][0]


def expected(cfg, hw, rel, rel_version, profile):
    gpus = hw.get("gpus", [])
    sm = min((int(g["compute_capability"].replace(".", "")) for g in gpus), default=None)
    count = sum(g.get("count", 1) for g in gpus)
    memory = min((g["memory_mib"] for g in gpus), default=0)
    e = {"ids": set(), "absent": set(), "kwargs": {}}
    # architecture: the release's model registry
    archs = set(rel.get("models", {}).get("architectures", []))
    (e["ids"] if not set(cfg["architectures"]) & archs else e["absent"]).add("preflight-arch-unknown")
    # quantization: vLLM's kernels for the checkpoint's method and their harvested floors
    q = cfg.get("quantization_config")
    act = ()
    if q and sm is not None:
        kernels = QUANT_KERNELS.get(q["quant_method"], [q["quant_method"]])
        floors = {k: rel["quantization"][k]["min_capability"] for k in kernels
                  if "min_capability" in rel.get("quantization", {}).get(k, {})}
        runs = [k for k in kernels if k in floors and floors[k] <= sm]
        if floors and not runs:
            e["ids"].add("preflight-quant-gpu")
        elif runs:
            e["absent"].add("preflight-quant-gpu")
            e["kwargs"]["quantization"] = runs[0]
            act = tuple(rel["quantization"][runs[0]].get("act_dtypes", ()))
            if runs[0] == "fp8":
                e["ids"].add("preflight-fp8-native" if sm >= FP8_NATIVE_MIN_SM else "preflight-fp8-weight-only")
    # dtype: the profile's, the checkpoint's float16 kept, no bfloat16 below sm80, float16-unsafe models in float32
    ckpt, dtype = cfg.get("torch_dtype"), profile.dtype
    if ckpt == "float16" and dtype == "bfloat16" and (not act or "float16" in act):
        dtype = "float16"
    elif ckpt in ("bfloat16", "float32") and "bfloat16" in profile.refuse_dtypes and not q:
        dtype = "float32" if cfg["model_type"] in FLOAT16_UNSUPPORTED else "float16"
        e["ids"].add("preflight-dtype-float32" if dtype == "float32" else "preflight-dtype-cast")
    if act and dtype not in act:
        dtype = "float16" if "float16" in act else act[0]
    e["kwargs"]["dtype"] = dtype
    # attention backend compat chooses for this release and GPU, against the harvested constraints
    # (what a plain install of the release brings: a kernel package that is only an extra is absent)
    backend, _ = choose_backend(profile, rel_version, sm, Software(python="3.11", packages=(("vllm", rel_version),)))
    mla = "kv_lora_rank" in cfg
    if backend is not None and backend.name in rel.get("attention", {}) and not mla:
        bf = rel["attention"][backend.name]
        hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        window = cfg.get("sliding_window") and cfg.get("use_sliding_window", True)
        bad = (bf.get("importable") is False or ("head_sizes" in bf and hd not in bf["head_sizes"])
               or (window and bf.get("sliding_window") is False) or ("dtypes" in bf and dtype not in bf["dtypes"])
               or (sm is not None and floor(backend.name, bf, rel) > sm))
        (e["ids"] if bad else e["absent"]).add("preflight-backend-unsupported")
    if backend is not None and mla and not rel.get("attention", {}).get(backend.name, {}).get("mla"):
        e["ids"].add("preflight-backend-mla")
    # memory: smallest valid tensor_parallel_size whose KV room holds max_model_len
    if not count:
        e["ids"].add("preflight-fit-skipped")
        return e, None
    want = cfg["max_position_embeddings"]
    attention = rel.get("attention", {})
    latent = not attention or any(a.get("mla") for a in attention.values())
    room = {tp: tokens_that_fit(cfg, dtype, memory, tp, latent) for tp in range(1, count + 1) if valid_tp(cfg, tp)}
    return e, (want, room)


def memory_verdict(want, room):
    """(finding id, tp, max_model_len or None, ambiguous)."""
    near = any(abs(t - want) < 0.02 * want for t in room.values())
    fits = [tp for tp, t in sorted(room.items()) if t >= want]
    if fits:
        return "preflight-fit", fits[0], None, near
    best_tp = max(room, key=room.get)
    shrink = int(room[best_tp]) // DATA["memory"]["block_tokens"] * DATA["memory"]["block_tokens"]
    near = near or abs(room[best_tp]) < 0.02 * want + DATA["memory"]["block_tokens"]
    if shrink > 0:
        return "preflight-fit-shrink", best_tp, shrink, near
    return "preflight-fit-none", None, None, near


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("machine", MACHINE_NAMES)
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_verdict(model, machine, release):
    cfg = json.loads((MODELS / model / "config.json").read_text())
    hw = _toml(MACHINES / f"{machine}.toml")
    rel = _toml(HARVEST / f"vllm-{release}.toml")
    env = detect(str(MACHINES / f"{machine}.toml"))
    profile, _ = select_profile([g.sm for g in env.hardware.gpus], {})
    pf = for_environment(MODELS / model, env, vllm=release, profile=profile, environ={}, harvest_dir=HARVEST)
    ids = {f.id for f in pf.findings}
    kw = pf.kwargs()
    e, memory = expected(cfg, hw, rel, release, profile)
    assert e["ids"] <= ids, (e["ids"] - ids, pf.findings)
    assert not (e["absent"] & ids), (e["absent"] & ids, pf.findings)
    for k, v in e["kwargs"].items():
        assert kw.get(k) == v, (k, kw, pf.findings)
    if memory is None:
        return
    want, room = memory
    if not room:
        assert "preflight-fit-none" in ids
        return
    verdict, tp, shrink, ambiguous = memory_verdict(want, room)
    got = ids & {"preflight-fit", "preflight-fit-shrink", "preflight-fit-none"}
    assert len(got) == 1, pf.findings
    if ambiguous:
        return
    assert got == {verdict}, (verdict, tp, shrink, room, pf.findings)
    if tp is not None:
        assert kw["tensor_parallel_size"] == tp, (room, kw)
    if shrink is not None:
        assert kw["max_model_len"] == pytest.approx(shrink, rel=0.02, abs=DATA["memory"]["block_tokens"]), (room, kw)


def test_the_matrix_covers_every_model_machine_and_verdict():
    """The fixtures exercise each memory verdict and the quantization floor, not only the happy path."""
    seen = set()
    for release in RELEASES:
        rel = _toml(HARVEST / f"vllm-{release}.toml")
        for model in MODEL_NAMES:
            cfg = json.loads((MODELS / model / "config.json").read_text())
            for machine in MACHINE_NAMES:
                hw = _toml(MACHINES / f"{machine}.toml")
                env = detect(str(MACHINES / f"{machine}.toml"))
                profile, _ = select_profile([g.sm for g in env.hardware.gpus], {})
                e, memory = expected(cfg, hw, rel, release, profile)
                seen |= e["ids"]
                if memory and memory[1]:
                    seen.add(memory_verdict(*memory)[0])
    assert {"preflight-fit", "preflight-fit-shrink", "preflight-fit-none", "preflight-quant-gpu",
            "preflight-dtype-cast", "preflight-fp8-weight-only", "preflight-fp8-native"} <= seen, seen
