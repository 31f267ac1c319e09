"""vLLM 0.5.4: final hidden states of prompt and generated tokens in RequestOutput (opt-in switch `hidden_states`).

Declaration only: what is patched, why, on which release, with which verified fingerprints. The runtime code (row
stores, the wrappers each patch installs, and the vLLM 0.5.4 facts it builds on) lives with its feature in
compat/hidden_states/vllm054.py. Importing this module imports neither torch nor vLLM.
"""

from __future__ import annotations

from compat.hidden_states.vllm054 import (  # noqa: F401  (ATTR_*: re-exported for tests and callers)
    ATTR_DECODE,
    ATTR_GROUP,
    ATTR_PROMPT,
    ATTR_RUNNER,
    make_execute_model,
    make_from_seq_group,
    make_process_prompt_logprob,
    make_process_sequence_group_outputs,
    make_worker_init,
)
from compat.patches.engine import Patch, PatchSet

__all__ = ["ATTR_DECODE", "ATTR_GROUP", "ATTR_PROMPT", "ATTR_RUNNER", "PATCH_SET"]

_UPSTREAM = ("none: no vLLM release returns decode hidden states with RequestOutput (requests: vllm-project/vllm "
             "issues 4435, 6165; PR 15434 closed unmerged)")

PATCH_SET = PatchSet(
    name="vllm054_hidden",
    package="vllm",
    versions="==0.5.4",
    switch="hidden_states",
    ledger="""\
what                                           why                                                  upstream fix
Worker.__init__ -> runner.return_hidden_states  runner path exists (spec decode) but is never enabled  none
ModelRunner.execute_model: split rows per seq   SamplerOutput.hidden_states has no per-seq layout      none
process_prompt_logprob: keep prompt rows        engine drops SamplerOutput.hidden_states               none
_process_sequence_group_outputs: decode rows    same; forks (n>1, beam) must carry parent rows         none
RequestOutput.from_seq_group: expose tensors    RequestOutput has no field for them                    none""",
    patches=(
        Patch(
            id="vllm054_hidden.worker_enables_runner",
            target="vllm.worker.worker:Worker.__init__",
            why="turn on ModelRunner.return_hidden_states (0.5.4 enables it only for medusa/mlp_speculator drafts)",
            upstream_fix=_UPSTREAM,
            fingerprint="sha256:0bc61b3976d0d0f8",
            make=make_worker_init,
        ),
        Patch(
            id="vllm054_hidden.runner_splits_rows",
            target="vllm.worker.model_runner:ModelRunner.execute_model",
            why="copy the rows each sequence needs to CPU in the step (graph output buffers are reused) and "
                "attach them per group and sequence",
            upstream_fix=_UPSTREAM,
            fingerprint="sha256:64c036895a10e77e",
            make=make_execute_model,
        ),
        Patch(
            id="vllm054_hidden.keep_prompt_rows",
            target="vllm.engine.output_processor.single_step:SingleStepOutputProcessor.process_prompt_logprob",
            why="keep prompt-position rows on the SequenceGroup, once per position (recompute re-runs prefill)",
            upstream_fix=_UPSTREAM,
            fingerprint="sha256:ffe94e175d933845",
            make=make_process_prompt_logprob,
        ),
        Patch(
            id="vllm054_hidden.keep_decode_rows",
            target="vllm.engine.output_processor.single_step:"
                   "SingleStepOutputProcessor._process_sequence_group_outputs",
            why="append each parent's row before the release code forks/extends sequences (n>1, beam search)",
            upstream_fix=_UPSTREAM,
            fingerprint="sha256:bb294d3953575383",
            make=make_process_sequence_group_outputs,
        ),
        Patch(
            id="vllm054_hidden.request_output_fields",
            target="vllm.outputs:RequestOutput.from_seq_group",
            why="expose hidden_states_prefill / hidden_states_decode on RequestOutput / CompletionOutput",
            upstream_fix=_UPSTREAM,
            fingerprint="sha256:4e771bf6d2745abb",
            make=make_from_seq_group,
        ),
    ),
)
