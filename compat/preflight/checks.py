"""The pre-flight checks: pure functions from (model, machine, release facts, compat's choices) to findings
and the engine arguments that follow. Finding ids are stable (docs/preflight.md lists them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .. import versions
from .._toml import load_data
from ..choose import Backend
from ..findings import Finding
from . import facts as factsmod
from .config import ModelConfig
from .facts import BackendFacts, ReleaseFacts
from .fit import Budget, Fit, compute, describe, gib
from .size import DTYPE_BYTES, attention_head_size, params, quantized


@dataclass(frozen=True)
class Machine:
    """The GPUs the engine would use: the oldest compute capability, the smallest memory, how many."""
    sm: Optional[int]
    gpu_count: int
    memory_mib: int


@dataclass(frozen=True)
class Target:
    """What compat would run: the vLLM release, the profile's dtype rules and compat's attention backend."""
    vllm: Optional[str]
    vllm_source: str                    # "installed" | "planned" | "given"
    profile: str
    dtype: str                          # the profile's dtype
    bf16_ok: bool                       # False where the profile refuses bfloat16 (sm < 80)
    backend: Optional[Backend]
    refuse_vllm: Optional[str] = None   # releases this GPU family cannot run (profile [refuse] vllm)
    packages: Tuple[Tuple[str, str], ...] = ()   # installed or planned distributions (kernel packages included)


@dataclass(frozen=True)
class Preflight:
    model: ModelConfig
    target: Target
    machine: Machine
    facts_file: Optional[str]
    dtype: str
    quantization: Optional[str]
    backend: Optional[str]
    fit: Optional[Fit]
    findings: Tuple[Finding, ...]
    engine_kwargs: Tuple[Tuple[str, Any], ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def kwargs(self) -> Dict[str, Any]:
        return dict(self.engine_kwargs)

    def as_dict(self) -> Dict[str, Any]:
        m, fit = self.model, self.fit
        chosen = fit.chosen if fit else None
        return {
            "ok": self.ok, "path": m.path, "architecture": m.architecture, "model_type": m.model_type,
            "parameters": params(m).total,
            "checkpoint_dtype": m.torch_dtype,
            "quantization": m.quantization.method if m.quantization else None,
            "vllm": self.target.vllm, "vllm_source": self.target.vllm_source, "facts": self.facts_file,
            "dtype": self.dtype, "quantization_kernel": self.quantization, "attention_backend": self.backend,
            "memory": None if fit is None else {
                "gpu_memory_mib": fit.gpu_memory_mib, "gpu_count": fit.gpu_count,
                "max_model_len": fit.max_model_len, "valid_tensor_parallel_sizes": list(fit.valid_tps),
                "tensor_parallel_size": chosen.tp if chosen else None, "max_model_len_fits": fit.shrink_to,
                "per_gpu": [{"tensor_parallel_size": o.tp, "usable_bytes": o.usable, "weights_bytes": o.weights,
                             "overhead_bytes": o.overhead, "kv_bytes_per_token": o.kv_per_token,
                             "kv_tokens": o.tokens} for o in fit.options],
            },
            "engine_kwargs": self.kwargs(),
            "findings": [f.as_dict() for f in self.findings],
        }


def _data() -> Dict[str, Any]:
    return load_data("preflight")


def budget(gpu_memory_utilization: Optional[float] = None) -> Budget:
    mem = _data()["memory"]
    return Budget(gpu_memory_utilization=gpu_memory_utilization or float(mem["gpu_memory_utilization"]),
                  overhead_mib=int(mem["overhead_mib"]), batched_tokens=int(mem["batched_tokens"]),
                  max_num_seqs=int(mem["max_num_seqs"]), block_tokens=int(mem["block_tokens"]))


def _norm_dtype(d: Optional[str]) -> Optional[str]:
    return {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32",
            "fp32": "float32"}.get(d or "", d) if d else None


# ---------------------------------------------------------------------------------------------- architecture
def check_architecture(m: ModelConfig, t: Target, f: Optional[ReleaseFacts],
                       hdir: Optional[Path]) -> List[Finding]:
    out: List[Finding] = []
    if m.custom_code:
        out.append(Finding("preflight-custom-code", "warning",
                           f"{m.path} declares auto_map (custom modeling code); pre-flight checks vLLM's own "
                           f"implementation of {m.architecture}, not the repository's code",
                           "vLLM ignores auto_map when it implements the architecture; otherwise it needs "
                           "trust_remote_code=True and a vLLM plugin for the model"))
    if f is None or f.architectures is None:
        return out
    known = [a for a in m.architectures if a in f.architectures]
    if known:
        out.append(Finding("preflight-arch", "info", f"vLLM {t.vllm} implements {known[0]}"))
        return out
    first = factsmod.first_release(lambda r: r.architectures is not None
                                   and any(a in r.architectures for a in m.architectures), hdir,
                                   mentions=m.architectures)
    if first is not None:
        fix = f"use vLLM {first} or newer (python -m compat plan 'vllm>={first}')"
    else:
        fix = ("no harvested vLLM release implements it: a custom-code model needs trust_remote_code=True and a "
               "vLLM model plugin, or serve it with transformers")
    out.append(Finding("preflight-arch-unknown", "error",
                       f"vLLM {t.vllm} does not implement {' / '.join(m.architectures) or '(no architectures)'} "
                       f"(its model registry, {Path(f.file).name})", fix))
    return out


# ---------------------------------------------------------------------------------------------- quantization
@dataclass(frozen=True)
class QuantResult:
    kernel: Optional[str]
    act_dtypes: Tuple[str, ...]
    findings: Tuple[Finding, ...]


def _kernels(method: str) -> List[str]:
    table = _data()["quantization"]["kernels"]
    k = table.get(method)
    return list(k) if isinstance(k, list) else [method]


def _runs(f: ReleaseFacts, kernels: List[str], sm: int) -> List[str]:
    return [k for k in kernels if k in f.quantization and f.quantization[k].min_capability is not None
            and (f.quantization[k].min_capability or 0) <= sm]


def check_quantization(m: ModelConfig, t: Target, mach: Machine, f: Optional[ReleaseFacts],
                       hdir: Optional[Path]) -> QuantResult:
    q = m.quantization
    if q is None or f is None:
        return QuantResult(None, (), ())
    if not f.quantization:  # the harvest could not import the release: unknown, not unsupported
        return QuantResult(None, (), (Finding("preflight-quant-unverified", "warning",
                                              f"vLLM {t.vllm}'s harvested facts list no quantization methods; "
                                              f"{q.method} not checked"),))
    kernels = _kernels(q.method)
    known = [k for k in kernels if k in f.quantization]
    if not known:
        first = factsmod.first_release(lambda r: any(k in r.quantization for k in kernels), hdir, mentions=kernels)
        return QuantResult(None, (), (Finding(
            "preflight-quant-unknown", "error", f"vLLM {t.vllm} has no quantization method {q.method!r}",
            f"use vLLM {first} or newer" if first else f"use a checkpoint in a format vLLM {t.vllm} loads "
            f"({', '.join(sorted(f.quantization)[:8])}...)"),))
    floors = {k: f.quantization[k].min_capability for k in known}
    floor_text = " or ".join(f"{k} (sm{c}+)" if c is not None else f"{k} (floor not stated)"
                             for k, c in floors.items())
    if mach.sm is None:
        return QuantResult(known[0], f.quantization[known[0]].act_dtypes, (Finding(
            "preflight-quant-skipped", "info", f"no GPU visible: {q.method} needs {floor_text}"),))
    runs = _runs(f, known, mach.sm)
    if not runs:
        if all(c is None for c in floors.values()):
            return QuantResult(known[0], (), (Finding(
                "preflight-quant-unverified", "warning",
                f"vLLM {t.vllm} does not state a minimum compute capability for {q.method}; not checked"),))
        return QuantResult(None, (), (Finding(
            "preflight-quant-gpu", "error",
            f"{q.method} checkpoint: vLLM {t.vllm} runs it with {floor_text}; this GPU is sm{mach.sm}",
            _quant_fix(m, t, mach, f, kernels, hdir)),))
    kernel = runs[0]
    out = [Finding("preflight-quant", "info",
                   f"{q.method} checkpoint runs with vLLM's {kernel} kernel (sm{floors[kernel]}+) on sm{mach.sm}")]
    if known[0] != kernel:
        out.append(Finding("preflight-quant-slow-kernel", "info",
                           f"the faster {known[0]} kernel needs sm{floors[known[0]]}+; using {kernel}"))
    out += _fp8_path(m, mach, kernel)
    return QuantResult(kernel, f.quantization[kernel].act_dtypes, tuple(out))


def _quant_fix(m: ModelConfig, t: Target, mach: Machine, f: ReleaseFacts, kernels: List[str],
               hdir: Optional[Path]) -> str:
    """Cheapest fix first: another vLLM release, another checkpoint of the model, another GPU."""
    sm = mach.sm or 0
    fixes: List[str] = []
    rel = factsmod.first_release(lambda r: bool(_runs(r, kernels, sm)) and not (
        t.refuse_vllm and versions.in_spec(r.vllm or "0", t.refuse_vllm)), hdir, mentions=kernels)
    if rel is not None:
        fixes.append(f"vLLM {rel} runs it on sm{sm}")
    q = m.quantization
    others = []
    for fmt, bits in _data()["quantization"]["checkpoints"].items():
        if fmt in ("reason",) or q is None or fmt == q.method:
            continue
        ks = _runs(f, _kernels(fmt), sm)
        if ks:
            others.append(f"{fmt} ({bits}-bit, {ks[0]} from sm{f.quantization[ks[0]].min_capability})")
    others.append(f"the unquantized checkpoint ({gib(params(m).total * 2)} in 16-bit)")
    fixes.append("another checkpoint of the model: " + ", ".join(others))
    need = min(c for c in (f.quantization[k].min_capability for k in kernels if k in f.quantization) if c)
    fixes.append(f"a GPU with compute capability {need // 10}.{need % 10} or newer")
    return "; ".join(f"({i}) {x}" for i, x in enumerate(fixes, 1))


def _fp8_path(m: ModelConfig, mach: Machine, kernel: str) -> List[Finding]:
    q = m.quantization
    if q is None or q.bits != 8 or mach.sm is None or kernel not in ("fp8", "fbgemm_fp8", "compressed-tensors"):
        return []
    fp8 = _data()["fp8"]
    native = int(fp8["native_min_sm"])
    block = f" with {q.block[0]}x{q.block[1]} weight blocks" if q.block else ""
    if mach.sm >= native:
        return [Finding("preflight-fp8-native", "info",
                        f"FP8{block}: native W8A8 FP8 matmuls on sm{mach.sm} (sm{native}+)")]
    return [Finding("preflight-fp8-weight-only", "warning",
                    f"FP8{block} on sm{mach.sm}: no FP8 tensor cores (sm{native}+), so vLLM runs weight-only FP8 "
                    "through Marlin: weights stay 1 byte, matmuls run in 16-bit, slower than native FP8",
                    f"fine for memory; for FP8 speed use an sm{native}+ GPU (L40S, H100), or serve a 16-bit or "
                    "AWQ/GPTQ checkpoint")]


# ---------------------------------------------------------------------------------------------- dtype
def choose_dtype(m: ModelConfig, t: Target, act_dtypes: Tuple[str, ...]) -> Tuple[str, List[Finding]]:
    ckpt = _norm_dtype(m.torch_dtype)
    dtype, out = t.dtype, []
    unsafe16 = m.model_type in _data()["dtype"]["float16_unsupported"]
    if ckpt == "float16" and dtype == "bfloat16" and (not act_dtypes or "float16" in act_dtypes):
        dtype = "float16"
        out.append(Finding("preflight-dtype", "info", "float16 checkpoint: served in float16 (what vLLM's "
                                                      "dtype='auto' does), not re-rounded to bfloat16"))
    elif ckpt in ("bfloat16", "float32") and not t.bf16_ok and not quantized(m):
        if unsafe16:
            dtype = "float32"
            out.append(Finding("preflight-dtype-float32", "warning",
                               f"{ckpt} checkpoint of {m.model_type} on a GPU without bfloat16 (profile {t.profile}):"
                               f" {m.model_type} overflows in float16 (vLLM's float16 blocklist; newer releases "
                               "refuse it), so it is served in float32: twice the weight and KV memory, much slower",
                               "serve it on an sm80+ GPU in bfloat16"))
        else:
            out.append(Finding("preflight-dtype-cast", "warning",
                               f"{ckpt} checkpoint served in float16 (profile {t.profile} has no bfloat16): "
                               "activations beyond float16's range (65504) overflow to inf, which shows as NaN or "
                               "garbage output on some prompts; most Llama/Qwen/Mistral checkpoints are fine",
                               "compare a few outputs against a bfloat16 run; dtype='float32' avoids it at twice "
                               "the memory; an sm80+ GPU runs bfloat16"))
    if act_dtypes and dtype not in act_dtypes:
        new = "float16" if "float16" in act_dtypes else act_dtypes[0]
        out.append(Finding("preflight-quant-dtype", "info",
                           f"the quantization kernel takes {', '.join(act_dtypes)} activations: dtype {new}"))
        dtype = new
    if ckpt == "float32" and dtype != "float32" and not unsafe16:
        out.append(Finding("preflight-dtype", "info", f"float32 checkpoint served in {dtype} (half the bytes)"))
    return dtype, out


# ---------------------------------------------------------------------------------------------- attention
def _floor(name: str, bf: BackendFacts) -> Optional[int]:
    if bf.min_capability is not None:
        return bf.min_capability
    row = load_data("attention_backends").get("backend", {}).get(name)
    if isinstance(row, dict) and "min_sm" in row:
        return int(row["min_sm"])
    mla = _data()["attention"]["mla_min_sm"].get(name)
    return int(mla) if isinstance(mla, int) else None


def _kernel_present(t: Target, name: str) -> bool:
    """The backend's kernel package (vllm_attention.toml [range.requires]) is installed or planned: the
    harvest env's import failure for lack of it does not apply."""
    from ..choose import attention_range

    r = attention_range(t.vllm) or {}
    dists = r.get("requires", {}).get(name) or []
    have = dict(t.packages)
    return bool(dists) and any(have.get(d) for d in dists)


def _backend_problems(m: ModelConfig, name: str, bf: BackendFacts, dtype: str, sm: Optional[int],
                      t: Target) -> List[str]:
    why = []
    if bf.importable is False and not _kernel_present(t, name):
        why.append("it does not import in this release's install (a kernel package is missing)")
    floor = _floor(name, bf)
    if sm is not None and floor is not None and sm < floor:
        why.append(f"it needs sm{floor}+")
    only = _data()["attention"]["mla_only_sm"].get(name)
    if sm is not None and isinstance(only, list) and sm // 10 * 10 not in only:
        why.append(f"it is built for sm{'/sm'.join(map(str, only))} only")
    head = attention_head_size(m, bool(bf.mla))
    if (not m.mla or not bf.mla) and bf.head_sizes is not None and head not in bf.head_sizes:
        why.append(f"head size {head} is not among its {list(bf.head_sizes)}")
    if m.sliding_window and bf.sliding_window is False:
        why.append(f"it has no sliding-window attention (the model uses a {m.sliding_window}-token window)")
    if bf.dtypes is not None and dtype not in bf.dtypes:
        why.append(f"it takes {', '.join(bf.dtypes)}, not {dtype}")
    return why


def mla_cache(m: ModelConfig, f: Optional[ReleaseFacts]) -> bool:
    """Whether the release serves an MLA model with its latent cache: it has an MLA backend (unknown: assume so)."""
    if not m.mla or f is None or not f.attention:
        return m.mla
    return any(bf.mla for bf in f.attention.values())


def _alternative(m: ModelConfig, f: ReleaseFacts, dtype: str, sm: Optional[int], t: Target) -> Optional[str]:
    names = list(f.attention)
    mla = mla_cache(m, f)
    if mla:
        pref = [n for n in _data()["attention"]["mla_preference"] if n in f.attention]
        names = pref + [n for n in names if n not in pref]
    for name in names:
        bf = f.attention[name]
        if bool(bf.mla) != mla or (bf.importable is not True and not _kernel_present(t, name)) \
                or _floor(name, bf) is None:
            continue
        if bf.head_sizes is None and not mla:
            continue  # unknown is not supported
        if not _backend_problems(m, name, bf, dtype, sm, t):
            return name
    return None


def _how(t: Target) -> str:
    """How this release is told its attention backend (a format string for the name)."""
    b = t.backend
    if b is not None and b.env_var:
        return f"set {b.env_var}={{}}"
    if b is not None and b.option:
        return f"pass {b.option}={{!r}}"
    from ..choose import attention_range

    r = attention_range(t.vllm) or {}
    if r.get("env_var") and r.get("env_var_status", "read") == "read":
        return f"set {r['env_var']}={{}}"
    if r.get("config_option"):
        return f"pass {r['config_option']}={{!r}}"
    return "select the {} attention backend"


def check_backend(m: ModelConfig, t: Target, mach: Machine, f: Optional[ReleaseFacts],
                  dtype: str) -> Tuple[Optional[str], List[Finding]]:
    b = t.backend
    if f is None or not f.attention:  # no facts, or the harvest could not import the release: not checked
        return (b.name if b else None), []
    if b is None:
        return None, [Finding("preflight-backend-default", "info",
                              f"compat leaves the attention backend to vLLM {t.vllm} here; not checked")]
    bf = f.attention.get(b.name)
    how = _how(t)
    plain: List[Finding] = []
    if m.mla and not mla_cache(m, f):
        plain = [Finding("preflight-backend-mla", "info",
                         f"vLLM {t.vllm} has no MLA attention backend: {m.architecture} runs plain attention over "
                         f"{m.num_heads} decompressed heads of size {attention_head_size(m, False)}, so its KV cache "
                         "is uncompressed (see the memory numbers)", "a release with MLA backends caches ~20x less")]
    elif m.mla and (bf is None or not bf.mla):
        alt = _alternative(m, f, dtype, mach.sm, t)
        if alt is None:
            return b.name, [Finding("preflight-backend-mla", "error",
                                    f"{m.architecture} uses MLA but no MLA attention backend of vLLM {t.vllm} runs "
                                    f"on sm{mach.sm} ({Path(f.file).name})", "use an sm90 GPU (FlashMLA) or a "
                                    "newer vLLM release")]
        return alt, [Finding("preflight-backend-mla", "info",
                             f"{m.architecture} uses MLA (latent KV cache); {b.name}, the backend for this GPU, "
                             f"is not an MLA backend, so the MLA backend {alt} is asked for instead",
                             how.format(alt))]
    if bf is None:
        return b.name, plain + [Finding("preflight-backend-unknown", "warning",
                                f"vLLM {t.vllm}'s harvested facts do not list backend {b.name}; not checked")]
    why = _backend_problems(m, b.name, bf, dtype, mach.sm, t)
    head = attention_head_size(m, mla_cache(m, f))
    if not why:
        said = [f"head size {head}" + (f" (of {list(bf.head_sizes)})" if bf.head_sizes else " (sizes not "
                                       "stated)")]
        if m.sliding_window:
            said.append(f"sliding window {m.sliding_window}" + ("" if bf.sliding_window else " (not stated)"))
        return b.name, plain + [Finding("preflight-backend", "info",
                                        f"attention backend {b.name}: {', '.join(said)}")]
    alt = _alternative(m, f, dtype, mach.sm, t)
    fix = how.format(alt) if alt else "no harvested backend of this release fits; try another vLLM release"
    return alt or b.name, plain + [Finding("preflight-backend-unsupported", "error",
                                   f"compat's attention backend {b.name} cannot serve {m.architecture} on vLLM "
                                   f"{t.vllm}: {'; '.join(why)}", fix)]


# ---------------------------------------------------------------------------------------------- memory
def check_fit(m: ModelConfig, mach: Machine, dtype: str, max_model_len: Optional[int],
              bud: Budget, mla_cache: bool = True) -> Tuple[Optional[Fit], Optional[int], List[Finding]]:
    """(fit, max_model_len to pass when it must shrink or was asked, findings)."""
    want = max_model_len or m.max_position_embeddings
    if not mach.gpu_count or not mach.memory_mib:
        return None, None, [Finding("preflight-fit-skipped", "info", "no GPU visible: memory fit not checked")]
    if not want:
        return None, None, [Finding("preflight-fit-skipped", "warning", "config.json has no "
                                    "max_position_embeddings; pass --max-model-len to check the memory fit")]
    fit = compute(m, dtype, mach.memory_mib, mach.gpu_count, want, max_model_len is not None, bud, mla_cache)
    gpus = f"{mach.gpu_count} x {mach.memory_mib} MiB"
    if not fit.options:
        return fit, None, [Finding("preflight-fit-none", "error",
                                   f"no valid tensor_parallel_size <= {mach.gpu_count} GPUs: "
                                   + "; ".join(f"tp={tp}: {why}" for tp, why in fit.invalid_tps),
                                   "use a GPU count that divides the attention heads")]
    skipped = [f"tp={tp} ({why})" for tp, why in fit.invalid_tps if tp < (fit.chosen.tp if fit.chosen else 1 << 30)]
    skip = f"; skipped {', '.join(skipped)}" if skipped else ""
    if fit.chosen is not None:
        o = fit.chosen
        return fit, max_model_len, [Finding(
            "preflight-fit", "info",
            f"fits at tensor_parallel_size={o.tp} on {gpus} at gpu_memory_utilization "
            f"{bud.gpu_memory_utilization}: {describe(o, want)}; room for {o.tokens} KV tokens{skip}")]
    best = fit.best
    assert best is not None
    if fit.shrink_to is None:
        quant = "" if quantized(m) else "; a 4-bit AWQ/GPTQ checkpoint needs about a quarter of the weight bytes"
        return fit, None, [Finding(
            "preflight-fit-none", "error",
            f"does not fit {gpus}: even at the largest valid tensor_parallel_size {best.tp} "
            f"weights {gib(best.weights)} + overhead {gib(best.overhead)} per GPU leave no room for the KV cache "
            f"({best.kv_per_token / 1024:.0f} KiB per token) in {gib(best.usable)} usable "
            f"({fit.gpu_memory_mib} MiB x {bud.gpu_memory_utilization}){skip}",
            f"more or larger GPUs (pipeline_parallel_size across nodes){quant}")]
    if fit.requested:
        return fit, max_model_len, [Finding(
            "preflight-fit-none", "error",
            f"max_model_len {want} does not fit {gpus}: at tensor_parallel_size={best.tp} {describe(best, want)}; "
            f"room for {best.tokens} KV tokens{skip}",
            f"--max-model-len {fit.shrink_to} (or fewer), or more GPUs")]
    return fit, fit.shrink_to, [Finding(
        "preflight-fit-shrink", "warning",
        f"the model's max_model_len {want} does not fit {gpus}: at tensor_parallel_size={best.tp} "
        f"{describe(best, want)}; room for {best.tokens} KV tokens, so max_model_len={fit.shrink_to}{skip}",
        f"pass max_model_len={fit.shrink_to} (compat.vllm_kwargs(model=...) does), or use more/larger GPUs")]


# ---------------------------------------------------------------------------------------------- all together
def run(m: ModelConfig, mach: Machine, t: Target, max_model_len: Optional[int] = None,
        gpu_memory_utilization: Optional[float] = None, harvest_dir: Optional[Path] = None) -> Preflight:
    findings: List[Finding] = []
    f = factsmod.load(t.vllm, harvest_dir) if t.vllm else None
    if t.vllm is None:
        findings.append(Finding("preflight-no-vllm", "warning", "no vLLM installed or planned: release facts "
                                "(architecture, quantization, backend) not checked",
                                "install vLLM, or run `python -m compat plan --model PATH`"))
    elif f is None:
        findings.append(Finding("preflight-facts-missing", "warning",
                                f"compat has no harvested facts for vLLM {t.vllm}: architecture, quantization "
                                "and backend not checked", "upgrade compat, or run tools/harvest.py in that env"))
    if m.multimodal:
        findings.append(Finding("preflight-multimodal", "info", "multimodal config: the language model "
                                "(text_config) is checked; vision/audio encoders are not counted in memory"))
    findings += check_architecture(m, t, f, harvest_dir)
    qr = check_quantization(m, t, mach, f, harvest_dir)
    findings += qr.findings
    dtype, dfind = choose_dtype(m, t, qr.act_dtypes)
    findings += dfind
    backend, bfind = check_backend(m, t, mach, f, dtype)
    findings += bfind
    fit, mml, ffind = check_fit(m, mach, dtype, max_model_len, budget(gpu_memory_utilization), mla_cache(m, f))
    findings += ffind
    kw: List[Tuple[str, Any]] = [("dtype", dtype)]
    if fit is not None and fit.chosen is not None:
        kw.append(("tensor_parallel_size", fit.chosen.tp))
    elif fit is not None and fit.best is not None and mml is not None:
        kw.append(("tensor_parallel_size", fit.best.tp))
    if qr.kernel is not None:
        kw.append(("quantization", qr.kernel))
    b = t.backend
    if backend and b is not None and b.option:
        kw.append((b.option, backend))
    if mml is not None:
        kw.append(("max_model_len", mml))
    if gpu_memory_utilization is not None:
        kw.append(("gpu_memory_utilization", gpu_memory_utilization))
    assert dtype in DTYPE_BYTES
    return Preflight(model=m, target=t, machine=mach, facts_file=f.file if f else None, dtype=dtype,
                     quantization=qr.kernel, backend=backend, fit=fit, findings=tuple(findings),
                     engine_kwargs=tuple(kw))
