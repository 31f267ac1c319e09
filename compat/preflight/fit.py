"""Does the model fit: weights + KV cache for max_model_len per GPU at the smallest valid tensor_parallel_size.

Per GPU: usable = memory x gpu_memory_utilization; needed = weights/tp (+ replicated parts) + overhead
(fixed margin + activation peak of the profile run) + kv_bytes_per_token x max_model_len. This is vLLM's own
start-up test: it refuses to start when the KV cache left after profiling cannot hold one max_model_len
sequence ("max seq len ... is larger than the maximum number of tokens that can be stored in KV cache").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from .config import ModelConfig
from .size import activation_bytes_per_gpu, kv_bytes_per_token, weight_bytes_per_gpu

MIB = 1 << 20


@dataclass(frozen=True)
class Budget:
    """The memory assumptions (compat/data/preflight.toml [memory])."""
    gpu_memory_utilization: float
    overhead_mib: int
    batched_tokens: int
    max_num_seqs: int
    block_tokens: int


@dataclass(frozen=True)
class Option:
    """One tensor_parallel_size, with the per-GPU numbers."""
    tp: int
    usable: int            # bytes: memory x utilization
    weights: int
    overhead: int
    kv_per_token: int
    tokens: int            # KV tokens that fit (<= 0: not even the weights fit)

    @property
    def kv_free(self) -> int:
        return self.usable - self.weights - self.overhead


@dataclass(frozen=True)
class Fit:
    gpu_memory_mib: int
    gpu_count: int
    max_model_len: int                 # what was asked (or the model's)
    requested: bool                    # the user gave --max-model-len
    valid_tps: Tuple[int, ...]
    invalid_tps: Tuple[Tuple[int, str], ...]   # (tp, why not)
    options: Tuple[Option, ...]        # one per valid tp, ascending
    chosen: Optional[Option]           # smallest tp that holds max_model_len; None when none does
    shrink_to: Optional[int] = None    # a max_model_len that fits at the best tp, when the asked one does not

    @property
    def best(self) -> Optional[Option]:
        return max(self.options, key=lambda o: o.tokens, default=None)


def tp_problem(m: ModelConfig, tp: int) -> str:
    """Why vLLM would refuse this tensor_parallel_size for this model ("" when it accepts it)."""
    if m.num_heads % tp:
        return f"{m.num_heads} attention heads are not divisible by {tp}"
    kv = m.num_kv_heads
    if not m.mla and (kv % tp if tp <= kv else tp % kv):
        return f"{kv} KV heads and tp {tp}: one must divide the other"
    q = m.quantization
    if q is not None:
        inter = m.moe_intermediate_size if m.moe else m.intermediate_size
        if q.group_size and q.bits and q.bits < 8:  # AWQ/GPTQ: row-parallel inputs split whole groups
            for what, size in (("intermediate size", inter), ("attention output", m.num_heads * m.head_dim)):
                if size % tp or (size // tp) % q.group_size:
                    return f"{what} {size}/{tp} is not a multiple of the quantization group size {q.group_size}"
        if q.block:
            if inter % tp or (inter // tp) % q.block[0] or (inter // tp) % q.block[1]:
                return f"intermediate size {inter}/{tp} is not a multiple of the FP8 weight block {q.block[0]}"
    return ""


def compute(m: ModelConfig, dtype: str, gpu_memory_mib: int, gpu_count: int, max_model_len: int,
            requested: bool, budget: Budget, mla_cache: bool = True) -> Fit:
    valid: List[int] = []
    invalid: List[Tuple[int, str]] = []
    for tp in range(1, gpu_count + 1):
        why = tp_problem(m, tp)
        (invalid.append((tp, why)) if why else valid.append(tp))
    usable = int(gpu_memory_mib * MIB * budget.gpu_memory_utilization)
    options = []
    for tp in valid:
        weights = weight_bytes_per_gpu(m, dtype, tp)
        overhead = budget.overhead_mib * MIB + activation_bytes_per_gpu(m, dtype, tp, budget.batched_tokens,
                                                                      budget.max_num_seqs)
        per_token = kv_bytes_per_token(m, dtype, tp, mla_cache)
        free = usable - weights - overhead
        options.append(Option(tp, usable, weights, overhead, per_token, free // per_token if free > 0 else 0))
    chosen = next((o for o in options if o.tokens >= max_model_len), None)
    shrink = None
    if chosen is None and options:
        best = max(options, key=lambda o: o.tokens)
        shrink = best.tokens // budget.block_tokens * budget.block_tokens or None
    return Fit(gpu_memory_mib, gpu_count, max_model_len, requested, tuple(valid), tuple(invalid), tuple(options),
               chosen, shrink)


def gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def describe(o: Option, tokens: int) -> str:
    """The arithmetic, per GPU, as one phrase."""
    return (f"weights {gib(o.weights)} + overhead {gib(o.overhead)} + KV {gib(o.kv_per_token * tokens)} "
            f"({tokens} tokens x {o.kv_per_token / 1024:.0f} KiB) vs {gib(o.usable)} usable per GPU at tp={o.tp}")
