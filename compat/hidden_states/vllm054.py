"""vLLM 0.5.4: final hidden states of prompt and generated tokens in RequestOutput (opt-in switch `hidden_states`).

Facts this builds on (vLLM 0.5.4 wheel source):
- worker/model_runner.py `GPUModelRunnerBase.__init__(..., return_hidden_states=False)` stores the flag, and
  `ModelRunner.execute_model` then sets `SamplerOutput.hidden_states`: the model output index-selected by
  `sampling_metadata.selected_token_indices` for prompt batches, `[:len(indices)]` of the padded CUDA-graph output
  buffer for graph decode, the whole output otherwise. Row j of it is row j of the pruned logits, so the per-group
  `SequenceGroupToSample.prompt_logprob_indices` / `sample_indices` (model_executor/sampling_metadata.py) say which
  rows belong to which group and sequence.
- worker/worker.py `Worker.__init__` passes return_hidden_states=True only for medusa / mlp_speculator drafts.
- The engine then drops the tensor: engine/output_processor/util.py `create_output_by_sequence_group` regroups only
  the per-group outputs, single_step.py `process_prompt_logprob` / `_process_sequence_group_outputs` copy tokens and
  logprobs only, sequence.py has nowhere to keep it, outputs.py `RequestOutput.from_seq_group` never reads it.

What the patches do (each wraps the release function and calls it unchanged):
1. Worker.__init__: after construction, a `ModelRunner` (not the embedding runner) gets return_hidden_states=True
   and compat's settings.
2. ModelRunner.execute_model: right after the step (before the next CUDA-graph replay can overwrite the output
   buffer), gathers the rows each group needs in one device->host copy and hangs them, split per group and
   sequence, on each CompletionSequenceGroupOutput (`_compat_hidden`). With all_prompt it also takes every prompt
   position from the model output through a forward hook held for the duration of the call.
3. SingleStepOutputProcessor.process_prompt_logprob: prompt rows go to the SequenceGroup, deduplicated by position
   (a recompute after preemption re-runs prefill over prompt+generated tokens; rows already held and rows of
   generated positions are dropped).
4. SingleStepOutputProcessor._process_sequence_group_outputs: before the release code runs, each running parent
   sequence gets the row its samples came from; forks (n > 1, beam search) deep-copy the parent, row included.
5. RequestOutput.from_seq_group: sets `hidden_states_prefill` and, per CompletionOutput, `hidden_states_decode`.

The patch set that installs these (ids, targets, fingerprints) is declared in compat/patches/sets/vllm054_hidden.py.
Everything heavy is imported inside functions; importing this module imports neither torch nor vLLM.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    from compat.hidden_states import Settings

ATTR_GROUP = "_compat_hidden"  # on CompletionSequenceGroupOutput: _GroupHidden of this step
ATTR_PROMPT = "_compat_hidden_prompt"  # on SequenceGroup: _PromptRows
ATTR_DECODE = "_compat_hidden_decode"  # on Sequence: _DecodeRows
ATTR_RUNNER = "_compat_hidden_settings"  # on ModelRunner: compat.hidden_states.Settings


def _settings() -> Settings:
    from compat import hidden_states

    return hidden_states.settings()


# ------------------------------------------------------------------------------------------------------------------
# row stores (CPU tensors; torch arrives with the rows, nothing here imports it)


class _GroupHidden:
    """One step's rows for one sequence group: prompt rows [start, start+k) and one row per sampled parent seq."""

    __slots__ = ("prompt_start", "prompt", "samples")

    def __init__(self, prompt_start: int, prompt: Any, samples: Dict[int, Any]) -> None:
        self.prompt_start = prompt_start
        self.prompt = prompt  # [k, hidden] or None
        self.samples = samples  # seq_id -> [hidden]

    def __repr__(self) -> str:
        k = 0 if self.prompt is None else int(self.prompt.shape[0])
        return f"_GroupHidden(prompt_start={self.prompt_start}, prompt_rows={k}, samples={sorted(self.samples)})"


class _PromptRows:
    """Prompt positions [start, end) held for a SequenceGroup; later rows must continue at `end`."""

    def __init__(self) -> None:
        self.start: Optional[int] = None
        self.end = 0
        self.chunks: List[Any] = []
        self._cat: Any = None

    def add(self, start: int, rows: Any, prompt_len: int) -> None:
        stop = min(start + int(rows.shape[0]), prompt_len)
        if self.start is None:
            lo = start
        elif start <= self.end < stop:
            lo = self.end  # overlap (a recompute's prefill): keep only what is new
        else:
            return  # everything already held, or not contiguous with it
        if lo >= stop:
            return
        self.chunks.append(rows[lo - start: stop - start].clone())
        if self.start is None:
            self.start = lo
        self.end = stop
        self._cat = None

    def tensor(self) -> Any:
        if not self.chunks:
            return None
        if self._cat is None:
            if len(self.chunks) == 1:
                self._cat = self.chunks[0]
            else:
                import torch

                self._cat = torch.cat(self.chunks)
                self.chunks = [self._cat]
        return self._cat


class _DecodeRows:
    """Decode rows of one Sequence in a growable CPU buffer; hands out views, never rewrites a row it handed out.

    With `limit` only the last `limit` rows are kept (older ones are dropped when the buffer is compacted, into a
    new buffer, so earlier views stay valid). Deep-copied with the Sequence when vLLM forks it.
    """

    def __init__(self, limit: Optional[int]) -> None:
        self.limit = limit
        self.total = 0  # rows ever appended (generated tokens seen)
        self._buf: Any = None
        self._lo = 0
        self._n = 0
        self._frozen: Any = None

    def append(self, row: Any) -> None:
        if self._buf is None:
            cap = 16 if self.limit is None else min(16, 2 * self.limit)
            self._buf = row.new_empty((cap, row.shape[-1]))
        elif self._n == self._buf.shape[0]:
            live = self._buf[self._lo: self._n]
            k = int(live.shape[0])
            cap = max(16, 2 * k) if self.limit is None else max(16, 2 * self.limit)
            new = self._buf.new_empty((cap, self._buf.shape[1]))
            new[:k] = live
            self._buf, self._lo, self._n = new, 0, k
        self._buf[self._n] = row
        self._n += 1
        self.total += 1
        if self.limit is not None and self._n - self._lo > self.limit:
            self._lo = self._n - self.limit
        self._frozen = None

    def __len__(self) -> int:
        return self._n - self._lo

    def tensor(self, final: bool = False) -> Any:
        """[rows, hidden]: a view while the sequence runs, a compact copy once it is finished (`final`)."""
        if self._buf is None:
            return None
        if not final:
            return self._buf[self._lo: self._n]
        if self._frozen is None:
            self._frozen = self._buf[self._lo: self._n].clone()
        return self._frozen

    def __deepcopy__(self, memo: Dict[int, Any]) -> _DecodeRows:
        new = _DecodeRows(self.limit)
        new.total = self.total
        if self._buf is not None:
            new._buf = self._buf.clone()
            new._lo, new._n = self._lo, self._n
        memo[id(self)] = new
        return new


# ------------------------------------------------------------------------------------------------------------------
# worker side: split SamplerOutput.hidden_states per group and sequence


def _flat_offsets(seq_groups: Any) -> List[int]:
    """Offset of each group's first token in the flattened model output (prompt: query_len rows, decode: 1/seq)."""
    offsets, off = [], 0
    for sg in seq_groups:
        offsets.append(off)
        off += sg.query_len if sg.is_prompt else len(sg.seq_ids)
    return offsets


def split_rows(sampler_output: Any, sampling_metadata: Any, all_prompt: bool,
               full_hidden: Any = None) -> List[Optional[_GroupHidden]]:
    """Per group, the rows it needs, as CPU tensors (one copy per source tensor), and attach them to the outputs.

    `sampler_output.hidden_states` rows follow the pruned logits (see module docstring); `full_hidden` is the whole
    model output of a prompt batch (only with all_prompt), rows in flattened-token order.
    """
    import torch

    selected = sampler_output.hidden_states
    groups = sampling_metadata.seq_groups
    if selected is None or len(sampler_output.outputs) != len(groups):
        return []
    offsets = _flat_offsets(groups) if full_hidden is not None else None
    sel_rows: List[int] = []
    full_rows: List[int] = []
    plans: List[Optional[Tuple[int, List[Tuple[str, int]], Dict[int, int]]]] = []
    for gi, sg in enumerate(groups):
        samples: Dict[int, int] = {}
        prompt_src: List[Tuple[str, int]] = []
        lo = 0
        if sg.is_prompt:
            seq_id = sg.seq_ids[0]
            prompt_len = sg.seq_data[seq_id].get_prompt_len()
            chunk_start = sg.seq_len - sg.query_len
            want_all = all_prompt or sg.sampling_params.prompt_logprobs is not None
            if want_all:
                lo, hi = chunk_start, min(sg.seq_len, prompt_len)
            else:
                lo, hi = max(chunk_start, prompt_len - 1), min(sg.seq_len, prompt_len)
            # selected rows of this group cover positions [chunk_start, seq_len) when prompt logprobs were asked
            # for, else only the sampled last position seq_len - 1
            sel_pos: Dict[int, int] = {}
            rows = list(sg.prompt_logprob_indices) + list(sg.sample_indices)
            if sg.prompt_logprob_indices:
                sel_pos = {chunk_start + k: r for k, r in enumerate(rows)}
            elif sg.sample_indices:
                sel_pos = {sg.seq_len - 1: sg.sample_indices[0]}
            for p in range(lo, hi):
                if p in sel_pos:
                    prompt_src.append(("sel", sel_pos[p]))
                elif offsets is not None:
                    prompt_src.append(("full", offsets[gi] + p - chunk_start))
                else:
                    break  # contiguous rows only
            if sg.sample_indices:
                samples[seq_id] = sg.sample_indices[0]
        else:
            for seq_id, r in zip(sg.seq_ids, sg.sample_indices):
                samples[seq_id] = r
        for src, r in prompt_src:
            (sel_rows if src == "sel" else full_rows).append(r)
        sel_rows.extend(samples.values())
        plans.append((lo, prompt_src, samples) if (prompt_src or samples) else None)

    def fetch(t: Any, rows: List[int]) -> Dict[int, Any]:
        if not rows:
            return {}
        uniq = sorted(set(rows))
        cpu = t.index_select(0, torch.tensor(uniq, device=t.device)).to("cpu")
        return {r: cpu[i] for i, r in enumerate(uniq)}

    sel = fetch(selected, sel_rows)
    full = fetch(full_hidden, full_rows) if full_rows else {}
    out: List[Optional[_GroupHidden]] = []
    for group_output, plan in zip(sampler_output.outputs, plans):
        rec = None
        if plan is not None:
            lo, prompt_src, samples = plan
            prompt = None
            if prompt_src:
                prompt = torch.stack([(sel if s == "sel" else full)[r] for s, r in prompt_src])
            rec = _GroupHidden(lo, prompt, {sid: sel[r] for sid, r in samples.items()})
        setattr(group_output, ATTR_GROUP, rec)
        out.append(rec)
    return out


def make_worker_init(original: Any) -> Any:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        from vllm.worker.model_runner import ModelRunner

        runner = getattr(self, "model_runner", None)
        if isinstance(runner, ModelRunner):  # not EmbeddingModelRunner (no sampler, no hidden-states path)
            runner.return_hidden_states = True
            setattr(runner, ATTR_RUNNER, _settings())

    return __init__


def make_execute_model(original: Any) -> Any:
    @functools.wraps(original)
    def execute_model(self: Any, model_input: Any, *args: Any, **kwargs: Any) -> Any:
        cfg = getattr(self, ATTR_RUNNER, None)
        if cfg is None or not self.return_hidden_states:
            return original(self, model_input, *args, **kwargs)
        captured: List[Any] = []
        handle = None
        if cfg.all_prompt and model_input.is_prompt and self.is_driver_worker:
            # prefill never runs through a CUDA graph, so self.model's forward is the prompt batch's output
            handle = self.model.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            result = original(self, model_input, *args, **kwargs)
        finally:
            if handle is not None:
                handle.remove()
        if (isinstance(result, list) and len(result) == 1 and model_input.sampling_metadata is not None
                and getattr(result[0], "hidden_states", None) is not None):
            full = captured[-1] if captured and hasattr(captured[-1], "index_select") else None
            split_rows(result[0], model_input.sampling_metadata, cfg.all_prompt, full)
        return result

    return execute_model


# ------------------------------------------------------------------------------------------------------------------
# engine side


def make_process_prompt_logprob(original: Any) -> Any:
    @functools.wraps(original)
    def process_prompt_logprob(self: Any, seq_group: Any, outputs: Any) -> Any:
        result = original(self, seq_group, outputs)
        for out in outputs:
            rec = getattr(out, ATTR_GROUP, None)
            if rec is not None and rec.prompt is not None:
                store = getattr(seq_group, ATTR_PROMPT, None)
                if store is None:
                    store = _PromptRows()
                    setattr(seq_group, ATTR_PROMPT, store)
                store.add(rec.prompt_start, rec.prompt, len(seq_group.prompt_token_ids))
        return result

    return process_prompt_logprob


def make_process_sequence_group_outputs(original: Any) -> Any:
    @functools.wraps(original)
    def _process_sequence_group_outputs(self: Any, seq_group: Any, outputs: Any) -> Any:
        rec = getattr(outputs, ATTR_GROUP, None)
        if rec is not None and rec.samples:
            from vllm.sequence import SequenceStatus

            limit = None
            for seq in seq_group.get_seqs(status=SequenceStatus.RUNNING):
                row = rec.samples.get(seq.seq_id)
                if row is None:
                    continue
                store = getattr(seq, ATTR_DECODE, None)
                if store is None:
                    if limit is None:
                        limit = _settings().decode_limit or 0
                    store = _DecodeRows(limit or None)
                    setattr(seq, ATTR_DECODE, store)
                # before the release code forks children from this parent: they deep-copy the row with it
                store.append(row)
        return original(self, seq_group, outputs)

    return _process_sequence_group_outputs


def make_from_seq_group(original: Any) -> Any:
    func = original.__func__  # a classmethod on RequestOutput

    @functools.wraps(func)
    def from_seq_group(cls: Any, seq_group: Any) -> Any:
        out = func(cls, seq_group)
        prompt = getattr(seq_group, ATTR_PROMPT, None)
        out.hidden_states_prefill = prompt.tensor() if prompt is not None else None
        seqs = seq_group.get_seqs()
        for completion in out.outputs:
            seq = seqs[completion.index]  # CompletionOutput.index is seqs.index(seq) in 0.5.4
            store = getattr(seq, ATTR_DECODE, None)
            completion.hidden_states_decode = store.tensor(final=seq.is_finished()) if store is not None else None
        return out

    return classmethod(from_seq_group)
