"""Doctor's checks: each a plain function (Environment, Resolved, environ) -> findings.

Below both compat.report (doctor adds the installer's plan check, compat/install/check.py) and compat.install
(which runs these on an environment it just installed), so neither of those packages imports the other's way round.
"""

from __future__ import annotations

from typing import Callable, List, Mapping

from . import knowledge, versions
from .choose import Resolved, attention_range
from .detect.model import Environment
from .errors import CompatError
from .findings import Finding

Check = Callable[[Environment, Resolved, Mapping[str, str]], List[Finding]]


def driver_vs_torch(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    """A CUDA torch needs a driver at least the minimum of its CUDA major (minor-version compatibility)."""
    hw, sw = env.hardware, env.software
    if not sw.torch_cuda or not hw.gpus or not hw.driver:
        return []
    need = knowledge.min_driver_for_cuda(sw.torch_cuda)
    if need and versions.driver_tuple(hw.driver) < versions.driver_tuple(need):
        return [Finding("driver-too-old-for-torch", "error",
                        f"torch {sw.version('torch')} is built for CUDA {sw.torch_cuda}; driver {hw.driver} is older "
                        f"than {need}, the minimum for CUDA {sw.torch_cuda.split('.')[0]}.x",
                        f"upgrade the driver to >= {need}, or install a torch built for CUDA {hw.cuda or 'your driver'} "
                        "(`python -m compat plan`)")]
    return []


def torch_has_arch(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    sw = env.software
    tv, variant = sw.version("torch"), sw.torch_variant
    if not tv or not variant or variant == "cpu" or not env.hardware.gpus:
        return []
    archs = knowledge.torch_archs(tv, variant)
    if archs is None:
        return [Finding("torch-build-unknown", "info", f"compat does not know the archs of torch {tv} ({variant})",
                        "upgrade compat; `python -m compat doctor --deep` checks torch.cuda.get_arch_list()")]
    out = []
    for cc, sm, name in sorted({(g.compute_capability, g.sm, g.name) for g in env.hardware.gpus}):
        if not knowledge.runs_arch(archs, cc):
            out.append(Finding("torch-lacks-arch", "error",
                               f"torch {tv} ({variant}) carries no kernels for {name} (sm_{sm}); it has "
                               f"{', '.join('sm_' + a.replace('.', '') for a in archs)}",
                               "install a torch build that includes this GPU (`python -m compat plan`)"))
    return out


def driver_vs_gpu(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    """A GPU needs a driver whose CUDA knows its architecture (B200 needs CUDA 12.8: driver 570+)."""
    hw = env.hardware
    if not hw.cuda:
        return []
    out = []
    for cc, name in sorted({(g.cc, g.name) for g in hw.gpus}):
        row = knowledge.arch_row(cc)
        if row and row.get("first_cuda") and versions.parse(hw.cuda) < versions.parse(row["first_cuda"]):
            out.append(Finding("driver-too-old-for-gpu", "error",
                               f"{name} (sm_{cc.replace('.', '')}) needs CUDA {row['first_cuda']}; driver "
                               f"{hw.driver} supports CUDA {hw.cuda}", "upgrade the NVIDIA driver"))
    return out


def vllm_vs_torch(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    sw = env.software
    vv, tv = sw.version("vllm"), sw.version("torch")
    if not vv:
        return []
    row = knowledge.vllm_release(vv)
    if row is None:
        return [Finding("vllm-release-unknown", "info", f"compat has no release data for vLLM {vv}",
                        "upgrade compat")]
    pin = row.get("torch")
    if pin and tv and versions.release(tv) != versions.release(pin):
        return [Finding("vllm-torch-mismatch", "error",
                        f"vLLM {vv} is built against torch {pin}, but torch {tv} is installed; its compiled "
                        "kernels will fail to load", f"pip install torch=={pin} (or `python -m compat plan vllm=={vv}`)")]
    if pin and not tv:
        return [Finding("vllm-without-torch", "error", f"vLLM {vv} is installed without torch",
                        f"pip install torch=={pin}")]
    return []


def vllm_vs_gpu(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    vv = env.software.version("vllm")
    p = r.profile
    if not vv or not env.hardware.gpus:
        return []
    try:
        refused = bool(p.refuse_vllm and versions.in_spec(vv, p.refuse_vllm))
    except CompatError as exc:  # validated here, where it is used, so setup() never imports packaging for it
        raise CompatError(f"profile {p.path}: refuse.vllm: {exc}") from None
    if refused:
        return [Finding("vllm-gpu-unsupported", "error",
                        f"vLLM {vv} cannot run on profile {p.name!r} ({p.description}): releases {p.refuse_vllm} "
                        "are refused", "install a vLLM release this GPU supports (`python -m compat plan`)")]
    return []


def flash_attn(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    sw = env.software
    fa = sw.version("flash-attn")
    if not fa:
        return []
    fixes = {
        "flash-attn-unsupported-gpu": ("warning", "use attn_implementation='sdpa' (compat.hf_kwargs() does), "
                                                  "or pip uninstall flash-attn"),
        "flash-attn-torch-mismatch": ("error", "reinstall flash-attn for this torch: pip install "
                                               "--no-build-isolation --force-reinstall flash-attn"),
    }
    sm = env.hardware.min_sm if env.hardware.gpus else None
    return [Finding(fid, fixes[fid][0], msg, fixes[fid][1])
            for fid, msg in knowledge.flash_attn_problems(fa, sw.version("torch"), sm)]


def user_attention_backend(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    name = environ.get("VLLM_ATTENTION_BACKEND")
    vv = env.software.version("vllm")
    if not name or not vv:
        return []
    rng = attention_range(vv)
    if rng is None:
        return []
    if rng.get("env_var") != "VLLM_ATTENTION_BACKEND" or rng.get("env_var_status") == "removed":
        opt = rng.get("config_option") or "the attention backend engine option"
        return [Finding("attention-env-ignored", "warning",
                        f"VLLM_ATTENTION_BACKEND={name} is ignored by vLLM {vv}", f"pass {opt} instead "
                        "(compat.vllm_kwargs() does)")]
    out = []
    if name not in rng.get("names", []):
        out.append(Finding("attention-backend-unknown", "error",
                           f"VLLM_ATTENTION_BACKEND={name} is not a backend of vLLM {vv} "
                           f"(it knows {', '.join(rng.get('names', []))})", "unset VLLM_ATTENTION_BACKEND"))
        return out
    need = knowledge.backend_requirements(vv).get(name, {}).get("min_sm")
    sm = env.hardware.min_sm
    if need is not None and sm is not None and sm < need:
        out.append(Finding("attention-backend-unsupported", "error",
                           f"VLLM_ATTENTION_BACKEND={name} needs sm{need}+; this GPU is sm{sm}",
                           f"unset it (compat chooses {r.attention_backend.name if r.attention_backend else 'one'})"))
    if name in rng.get("v0_fallback_backends", []):
        out.append(Finding("attention-backend-v0", "warning",
                           f"VLLM_ATTENTION_BACKEND={name} makes vLLM {vv} fall back to the V0 engine",
                           "unset it unless you need V0"))
    if rng.get("env_var_status") == "deprecated":
        out.append(Finding("attention-env-deprecated", "info", f"VLLM_ATTENTION_BACKEND is deprecated in vLLM {vv}",
                           f"pass {rng.get('config_option') or 'the engine option'} instead"))
    return out


def topology(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    out = []
    gpus = env.hardware.gpus
    if any(g.mig for g in gpus):
        out.append(Finding("mig", "warning",
                           f"MIG is enabled ({', '.join(sorted({g.name for g in gpus if g.mig}))}): a process uses one "
                           "MIG instance and NCCL cannot span instances, so tensor parallelism is not possible",
                           "run one single-GPU job per MIG instance, or disable MIG for multi-GPU jobs"))
    if not gpus:
        out.append(Finding("no-gpu", "info", "no NVIDIA GPU visible: CPU profile", ""))
    return out


def profile_env(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    return [Finding(f"env-{name.lower()}", "info", f"{name}={value}: {reason}", "")
            for name, value, reason in r.env if not name.startswith("VLLM_ATTENTION")]


CHECKS: List[Check] = [driver_vs_torch, torch_has_arch, driver_vs_gpu, vllm_vs_torch, vllm_vs_gpu, flash_attn,
                       user_attention_backend, topology, profile_env]


def run_checks(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    out: List[Finding] = []
    for check in CHECKS:
        out.extend(check(env, r, environ))
    return out
