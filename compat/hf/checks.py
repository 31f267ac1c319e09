"""Doctor's findings for Hugging Face model loading: what the transformers sets do on this machine."""

from __future__ import annotations

from typing import List, Mapping

from .. import versions
from ..choose import Resolved
from ..detect.model import Environment
from ..findings import Finding
from .verdict import switch_value, why_no_flash_attn


def _set_state(name: str, transformers: str, environ: Mapping[str, str]) -> str:
    """'on', 'disabled' (kill switch) or 'outside' (release outside the set's range)."""
    from ..patches import engine
    from ..patches.sets import get

    ps = get(name)
    if not versions.in_spec(transformers, ps.versions):
        return "outside"
    off = frozenset(x for x in environ.get(engine.DISABLE_ENV, "").replace(",", " ").split() if x)
    if "all" in off or name in off or all(p.id in off for p in ps.patches if p.fits(transformers)):
        return "disabled"
    return "on"


def hf_loading(env: Environment, r: Resolved, environ: Mapping[str, str]) -> List[Finding]:
    tf = env.software.version("transformers")
    if tf is None:
        return []
    out: List[Finding] = []
    why = why_no_flash_attn(r, env)
    if why:
        state = _set_state("transformers_attn", tf, environ)
        served = "sdpa (eager where a model has no sdpa)" if r.hf_attn_implementation == "sdpa" else \
            repr(r.hf_attn_implementation)
        if state == "on":
            out.append(Finding("hf-flash-attention-2-served", "info",
                               f"transformers {tf}: attn_implementation='flash_attention_2' requests (a loading kwarg "
                               f"or a config built with it, as verl does) are served with {served}: {why}",
                               "nothing to do (compat's transformers_attn set); for FlashAttention-2 install a "
                               "flash-attn that fits (`python -m compat plan`)"))
        else:
            what = "is switched off" if state == "disabled" else f"does not cover transformers {tf}"
            out.append(Finding("hf-flash-attention-2-fails", "warning",
                               f"transformers {tf}: attn_implementation='flash_attention_2' fails with transformers' "
                               f"ImportError here ({why}) and compat's transformers_attn set {what}",
                               f"request attn_implementation={r.hf_attn_implementation!r} (compat.hf_kwargs())"
                               + (", or take transformers_attn out of COMPAT_DISABLE_PATCHES"
                                  if state == "disabled" else "")))
    if "bfloat16" in r.profile.refuse_dtypes:
        given = switch_value(environ)
        state = _set_state("transformers_dtype", tf, environ)
        if given is not False and state == "on":
            out.append(Finding("hf-bfloat16-loaded-as-float16", "info",
                               f"transformers {tf}: bfloat16 model loading (torch_dtype/dtype=bfloat16, or 'auto' on a "
                               f"bfloat16 checkpoint) becomes float16 on profile {r.profile.name}; float16 training "
                               "needs loss scaling (torch.amp.GradScaler, FSDP ShardedGradScaler), which compat "
                               "does not add (docs/hf.md)",
                               "use a loss scaler in float16 training; COMPAT_HF_DTYPE=0 keeps bfloat16"))
    return out


def flash_attn_loads(env: Environment) -> List[Finding]:
    """`doctor --deep` (a subprocess that imports torch, seconds): does the installed flash-attn import with torch?

    Metadata cannot tell (compat/hf/flash_load.py): only an import shows a wheel built for another torch or one
    without its extension. Runs where flash-attn and torch are installed in this interpreter (not for a simulated
    software list); a torch that does not import is other checks' business (no finding here).
    """
    import subprocess
    import sys

    fa, torch = env.software.version("flash-attn"), env.software.version("torch")
    if fa is None or torch is None or env.software.source != "metadata":
        return []
    code = ("import torch\nprint('TORCH-OK', flush=True)\ntry:\n    import flash_attn\nexcept Exception as e:\n"
            "    print('FAILED ' + type(e).__name__ + ': ' + str(e).replace(chr(10), ' '))\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return [Finding("flash-attn-does-not-load", "warning", f"importing flash-attn {fa} with torch {torch} did "
                        "not finish in 300 s", "check the flash-attn install (`python -c 'import flash_attn'`)")]
    lines = proc.stdout.strip().splitlines()
    if "TORCH-OK" not in lines:            # torch itself did not import: other checks' business
        return []
    if proc.returncode != 0:               # the import killed the process (a signal: a crash in the extension)
        err = f"the import ended the process (exit {proc.returncode}): {proc.stderr.strip()[-200:]}"
    elif lines[-1].startswith("FAILED "):
        err = lines[-1][len("FAILED "):]
    else:
        return []
    return [Finding("flash-attn-does-not-load", "warning",
                    f"flash-attn {fa} is installed but does not load with torch {torch} ({err[:300]}); where "
                    "transformers would import it, compat's flash_attn_hide set hides it (unless disabled) and "
                    "models run without FlashAttention-2",
                    f"install a flash-attn built for torch {torch} (`python -m compat plan`), or uninstall it")]
