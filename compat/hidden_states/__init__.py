"""Final hidden states next to the tokens: settings of the opt-in `hidden_states` switch and the accessors.

On vLLM 0.5.4 the patch set `vllm054_hidden` (compat/patches/sets/vllm054_hidden.py) fills
`RequestOutput.hidden_states_prefill` and `CompletionOutput.hidden_states_decode`; `prefill()` / `decode()` read them,
and on releases without the set they read what that release gives instead (see docs/hidden_states.md), or None.
Settings travel as environment variables so that vLLM's worker processes (multiprocessing, Ray) inherit them.
Nothing here imports torch or vLLM.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from compat.errors import CompatError
from compat.switches import Switches

ENV_SWITCH = "COMPAT_HIDDEN_STATES"  # 1/true/on/last -> last prompt position; all_prompt -> every prompt position
ENV_PROMPT = "COMPAT_HIDDEN_STATES_PROMPT"  # last | all (overrides the prompt part of ENV_SWITCH)
ENV_DECODE_LIMIT = "COMPAT_HIDDEN_STATES_DECODE_LIMIT"  # keep only the last k decode rows per sequence; 0 = all



@dataclass(frozen=True)
class Settings:
    enabled: bool
    all_prompt: bool = False  # every prompt position, not only the last, for every request
    decode_limit: Optional[int] = None  # keep only the last k decode rows per sequence (None: keep all)


def settings(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """The switch as the environment states it (read by each process when the set is applied / a worker starts).

    Parsed by compat.switches, the one reader of every COMPAT_* knob: CompatError on a malformed value."""
    sw = Switches.parse(environ)
    return Settings(enabled=sw.hidden_states, all_prompt=sw.hidden_states_all_prompt,
                    decode_limit=sw.hidden_states_decode_limit)


def configure(all_prompt: Optional[bool] = None, decode_limit: Optional[int] = None) -> Settings:
    """Set the options of the hidden-states switch for this process and the workers it starts.

    Call before the engine is built (each worker reads them when it is constructed). The switch itself is
    `compat.setup(hidden_states=True)` or COMPAT_HIDDEN_STATES=1.
    """
    if all_prompt is not None:
        os.environ[ENV_PROMPT] = "all" if all_prompt else "last"
    if decode_limit is not None:
        if isinstance(decode_limit, bool) or not isinstance(decode_limit, int) or decode_limit < 0:
            raise CompatError(f"decode_limit={decode_limit!r}: use a whole number >= 0 (0 keeps every row)")
        os.environ[ENV_DECODE_LIMIT] = str(decode_limit)
    return settings()


def prefill(output: Any) -> Any:
    """[num_prompt_positions, hidden] CPU tensor of a request's prompt, or None where the release gives none.

    vLLM 0.5.4 with the switch on: `RequestOutput.hidden_states_prefill`. Pooling outputs (any release with
    `LLM.encode`): the pooled tensor, as a 2-D tensor (what the model's pooler returns; raw final hidden states
    only for ALL/LAST pooling without normalisation).
    """
    if hasattr(output, "hidden_states_prefill"):
        return output.hidden_states_prefill
    pooled = getattr(getattr(output, "outputs", None), "data", None)  # PoolingRequestOutput (newer releases)
    if pooled is None:
        pooled = getattr(getattr(output, "outputs", None), "embedding", None)  # EmbeddingRequestOutput (0.5.x)
    if pooled is None:
        return None
    import torch

    t = pooled if isinstance(pooled, torch.Tensor) else torch.tensor(pooled)
    return t.reshape(1, -1) if t.dim() == 1 else t


def decode(completion: Any) -> Any:
    """[num_generated (or the last k), hidden] CPU tensor of one completion, or None where the release gives none.

    Row i is the final hidden state the model produced generated token i from (the same state its logprob comes
    from). Only vLLM 0.5.4 with the switch on fills it; no vLLM release returns decode hidden states itself.
    """
    return getattr(completion, "hidden_states_decode", None)
