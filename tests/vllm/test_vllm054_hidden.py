"""vLLM 0.5.4 hidden-states patch set, on the real release (CPU), through vLLM's own LLMEngine.

Each test builds a real `LLMEngine` (executor_class=the real GPUExecutor, a real Worker and ModelRunner, the real
Scheduler, CacheEngine on CPU, the real ModelInputForGPUBuilder + attention metadata builder, Sampler,
LogitsProcessor/ParallelLMHead, SingleStepOutputProcessor, `RequestOutput.from_seq_group`) and calls
`engine.add_request` / `engine.step()`. Stood in for, because each needs a GPU (the complete list):
- the model forward: `get_model` returns a stub whose forward writes each token's position and input token id into
  its hidden state (columns 0 and 1), so every row that arrives can be traced to its token; its logits and sampling
  are vLLM's own layers;
- the CUDA graph runner: `capture_model` installs one stand-in per batch size that replays into a static output
  buffer every replay overwrites (what a captured graph does), so decode batches run padded through it;
- the GPU device setup and memory probes around them: `Worker.init_device` (cuda device + free-memory probe; the
  real distributed init still runs), `Worker.determine_num_available_blocks` (GPU memory profiling; returns a
  fixed block count, `num_gpu_blocks_override` still applies), `CudaMemoryProfiler`, host-memory pinning
  (`is_pin_memory_available`: pinning needs a CUDA driver), and CacheEngine's block copy/swap kernels (CUDA ops of
  vLLM's _C; the stub model reads no KV cache, so copy-on-write of a forked sequence's blocks has nothing to move).
"Lost without the patch" compares the real engine's output of the same requests with and without the set.
The kill switch COMPAT_DISABLE_PATCHES is read at import (the suite's autouse fixture clears COMPAT_* in tests), so
tests/vllm/test_fail_without_patch.py can switch off each patch of the set in turn.
"""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import pytest
from probes import KILL

pytestmark = pytest.mark.vllm("==0.5.4")

H = 16  # hidden size of the stub model
VOCAB = 64
BLOCK = 4
GRAPH_SIZES = (1, 2, 4, 8)  # decode batches are padded to these, like vLLM's _BATCH_SIZES_TO_CAPTURE

TARGETS = (
    ("vllm.worker.worker", "Worker", "__init__"),
    ("vllm.worker.model_runner", "ModelRunner", "execute_model"),
    ("vllm.engine.output_processor.single_step", "SingleStepOutputProcessor", "process_prompt_logprob"),
    ("vllm.engine.output_processor.single_step", "SingleStepOutputProcessor", "_process_sequence_group_outputs"),
    ("vllm.outputs", "RequestOutput", "from_seq_group"),
)


def _raw_targets():
    import importlib

    return {f"{m}:{c}.{a}": vars(getattr(importlib.import_module(m), c))[a] for m, c, a in TARGETS}


# ------------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def vllm_env(tmp_path_factory):
    """vLLM imported, the GPU edges stood in for (module docstring), a world-size-1 gloo world, a tiny config."""

    pytest.importorskip("vllm")
    import torch
    import vllm.model_executor.sampling_metadata as sm
    import vllm.utils as vu
    import vllm.worker.cache_engine as ce
    import vllm.worker.model_runner as mr
    import vllm.worker.worker as ww
    from vllm.distributed import parallel_state as ps

    mp = pytest.MonkeyPatch()
    mp.setenv("VLLM_NO_USAGE_STATS", "1")
    for module in (vu, mr, ce, sm):  # pinning host memory needs a CUDA driver
        mp.setattr(module, "is_pin_memory_available", lambda: False)
    mp.setattr(mr, "get_model", lambda **_: make_stub_model())
    mp.setattr(mr, "CudaMemoryProfiler", NoCudaMemoryProfiler)
    mp.setattr(mr.ModelRunner, "capture_model", capture_stub_graphs)
    mp.setattr(ww.Worker, "init_device", init_cpu_device)
    mp.setattr(ww.Worker, "determine_num_available_blocks", lambda self: (64, 16))
    for op in ("copy", "swap_in", "swap_out"):  # the KV-cache block kernels (CUDA ops); the stub model reads no KV
        mp.setattr(ce.CacheEngine, op, lambda self, blocks: None)

    if not torch.distributed.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ps.init_distributed_environment(1, 0, f"tcp://127.0.0.1:{port}", 0, backend="gloo")
    ps.ensure_model_parallel_initialized(1, 1)
    model_dir = tmp_path_factory.mktemp("tiny_llama")
    (model_dir / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H, "intermediate_size": 32,
        "num_attention_heads": 2, "num_key_value_heads": 2, "num_hidden_layers": 1, "vocab_size": VOCAB,
        "max_position_embeddings": 256, "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5,
    }))
    yield model_dir
    mp.undo()


@pytest.fixture
def engine_state(monkeypatch):
    """The patch engine with nothing applied before and after, no hidden-states settings in the environment, and
    the kill switch this run was started with (test_fail_without_patch.py)."""
    from compat.patches import engine

    for name in ("COMPAT_HIDDEN_STATES", "COMPAT_HIDDEN_STATES_PROMPT", "COMPAT_HIDDEN_STATES_DECODE_LIMIT",
                 "COMPAT_DISABLE_PATCHES"):
        monkeypatch.delenv(name, raising=False)
    if KILL:
        monkeypatch.setenv("COMPAT_DISABLE_PATCHES", KILL)
    # names the backend, which skips 0.5.4's GPU capability probe (NVML); per test: the suite's autouse fixture
    # clears VLLM_ATTENTION_BACKEND
    monkeypatch.setenv("VLLM_ATTENTION_BACKEND", "XFORMERS")
    engine.revert()
    yield engine
    engine.revert()


@pytest.fixture
def patched(vllm_env, engine_state, monkeypatch):
    from compat.patches.sets.vllm054_hidden import PATCH_SET

    monkeypatch.setenv("COMPAT_HIDDEN_STATES", "1")  # what compat.setup(hidden_states=True) exports for workers
    engine_state.activate({"hidden_states": True}, sets=[PATCH_SET])
    assert engine_state.applied_sets() == ("vllm054_hidden",), engine_state.refusals()
    return engine_state


# ------------------------------------------------------------------------------------------------------------------
# the GPU edges (module docstring) and the engine


def make_stub_model():
    """Stands in for the model's forward (needs a GPU in 0.5.4); logits and sampling are vLLM's own layers."""
    import torch
    from vllm.model_executor.layers.logits_processor import LogitsProcessor
    from vllm.model_executor.layers.sampler import Sampler
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

    class StubModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.lm_head = ParallelLMHead(VOCAB, H, params_dtype=torch.bfloat16)
            w = torch.randn(self.lm_head.weight.shape, generator=g)
            w[:, :2] = 0  # the traced columns (position, token id) must not swamp the logits
            self.lm_head.weight.data.copy_(w)
            self.logits_processor = LogitsProcessor(VOCAB)
            self.sampler = Sampler()

        def forward(self, input_ids, positions, kv_caches, attn_metadata, intermediate_tensors=None, **_):
            pos = positions.to(torch.float32)
            tok = input_ids.to(torch.float32)
            k = torch.arange(H - 2, dtype=torch.float32)
            rest = torch.sin(pos[:, None] * 0.7 + tok[:, None] * 1.3 + k[None, :])
            return torch.cat([pos[:, None], tok[:, None], rest], dim=1).to(torch.bfloat16)

        def compute_logits(self, hidden_states, sampling_metadata):
            return self.logits_processor(self.lm_head, hidden_states, sampling_metadata)

        def sample(self, logits, sampling_metadata):
            return self.sampler(logits, sampling_metadata)

    return StubModel()


class StubGraphRunner:
    """CUDA-graph replay stand-in: writes into one static output buffer that every replay overwrites."""

    def __init__(self, model, batch_size):
        import torch

        self.model = model
        self.calls = 0
        self.buffer = torch.zeros((batch_size, H), dtype=torch.bfloat16)

    def __call__(self, input_ids, positions, kv_caches, attn_metadata, intermediate_tensors=None, **kw):
        self.calls += 1
        self.buffer.copy_(self.model.forward(input_ids, positions, kv_caches, attn_metadata))
        return self.buffer


def capture_stub_graphs(self, kv_caches):
    """ModelRunner.capture_model stand-in: one graph runner per batch size vLLM would capture (<= max_num_seqs)."""
    import vllm.worker.model_runner as mr

    for bs in mr._BATCH_SIZES_TO_CAPTURE:
        if bs <= self.scheduler_config.max_num_seqs:
            self.graph_runners[0][bs] = StubGraphRunner(self.model, bs)


class NoCudaMemoryProfiler:
    consumed_memory = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def init_cpu_device(self):
    """Worker.init_device without the CUDA part (device, free-memory probe); the distributed init is the real one."""
    import torch
    import vllm.worker.worker as ww

    self.device = torch.device("cpu")
    ww.init_worker_distributed_environment(self.parallel_config, self.rank, self.distributed_init_method,
                                           self.local_rank)
    ww.set_random_seed(self.model_config.seed)


def make_configs(model_dir, num_gpu_blocks=None, max_num_seqs=8):
    from vllm.config import (CacheConfig, DeviceConfig, LoadConfig, ModelConfig, ParallelConfig,
                             SchedulerConfig)

    # the engine refuses a max_model_len its KV cache cannot hold (worker.raise_if_cache_size_invalid)
    max_len = 256 if num_gpu_blocks is None else min(256, num_gpu_blocks * BLOCK)
    model = ModelConfig(str(model_dir), str(model_dir), "auto", False, "bfloat16", 0, max_model_len=max_len,
                        enforce_eager=False, skip_tokenizer_init=True)
    cache = CacheConfig(BLOCK, 0.9, 0, "auto", num_gpu_blocks_override=num_gpu_blocks)
    sched = SchedulerConfig(512, max_num_seqs, max_len)
    return SimpleNamespace(model=model, cache=cache, scheduler=sched, parallel=ParallelConfig(1, 1, False),
                           device=DeviceConfig("cpu"), load=LoadConfig())


def make_worker(cfg):
    """The real Worker and the ModelRunner it builds (constructing them needs no GPU once the backend is named)."""
    from vllm.worker.worker import Worker

    return Worker(cfg.model, cfg.parallel, cfg.scheduler, cfg.device, cfg.cache, cfg.load, local_rank=0,
                  rank=0, distributed_init_method="tcp://127.0.0.1:1", is_driver_worker=True)


class Engine:
    """A real vLLM 0.5.4 LLMEngine on the real GPUExecutor, plus spies (they call through) on what the worker
    returned per step (SamplerOutput) and on what the scheduler handed it."""

    def __init__(self, model_dir, num_gpu_blocks=None, return_hidden_states=None):
        from vllm.engine.llm_engine import LLMEngine
        from vllm.executor.gpu_executor import GPUExecutor

        cfg = make_configs(model_dir, num_gpu_blocks=num_gpu_blocks)
        self.engine = LLMEngine(
            model_config=cfg.model, cache_config=cfg.cache, parallel_config=cfg.parallel,
            scheduler_config=cfg.scheduler, device_config=cfg.device, load_config=cfg.load, lora_config=None,
            multimodal_config=None, speculative_config=None, decoding_config=None, observability_config=None,
            prompt_adapter_config=None, executor_class=GPUExecutor, log_stats=False)
        self.worker = self.engine.model_executor.driver_worker
        self.runner = self.worker.model_runner
        if return_hidden_states is not None:
            self.runner.return_hidden_states = return_hidden_states  # as 0.5.4's Worker does for mlp_speculator
        self.graphs = self.runner.graph_runners[0]
        self.sampler_outputs = []
        self.prefill_steps = []  # (request id, tokens generated so far) per prefilled sequence, per step
        execute = self.worker.execute_model

        def spy(execute_model_req=None):
            if execute_model_req is not None:
                self.prefill_steps.append([(md.request_id, d.get_output_len())
                                           for md in execute_model_req.seq_group_metadata_list if md.is_prompt
                                           for d in md.seq_data.values()])
            out = execute(execute_model_req)
            if out:
                self.sampler_outputs.append(out[0])
            return out

        self.worker.execute_model = spy
        self.ids = 0

    @property
    def scheduler(self):
        return self.engine.scheduler[0]

    def add(self, prompt, params):
        rid = f"req{self.ids}"
        self.ids += 1
        self.engine.add_request(rid, {"prompt_token_ids": list(prompt)}, params)
        return rid

    def step(self):
        return self.engine.step()

    def run(self, max_steps=200):
        final = {}
        for _ in range(max_steps):
            for out in self.step():
                if out.finished:
                    final[out.request_id] = out
            if not self.engine.has_unfinished_requests():
                return final
        raise AssertionError("requests did not finish")


def make_loop(vllm_env, num_gpu_blocks=None, return_hidden_states=None):
    return Engine(vllm_env, num_gpu_blocks=num_gpu_blocks, return_hidden_states=return_hidden_states)


def params(**kw):
    from vllm import SamplingParams

    kw.setdefault("max_tokens", 6)
    return SamplingParams(ignore_eos=True, detokenize=False, **kw)


# ------------------------------------------------------------------------------------------------------------------
# checks: each row is traced to its token through the stub's columns 0 (position) and 1 (input token id)


def assert_decode_rows(completion, prompt, limit=None):
    import torch

    rows = getattr(completion, "hidden_states_decode", "<no attribute>")
    tokens = list(prompt) + list(completion.token_ids)
    n = len(completion.token_ids)
    assert isinstance(rows, torch.Tensor), f"decode hidden states lost: hidden_states_decode is {rows!r}"
    assert rows.device.type == "cpu" and rows.dtype == torch.bfloat16
    want = n if limit is None else min(n, limit)
    assert tuple(rows.shape) == (want, H)
    first = len(prompt) - 1 + (n - want)
    # generated token i was sampled from the state at position prompt_len - 1 + i, whose input is tokens[that]
    assert rows[:, 0].tolist() == [float(p) for p in range(first, first + want)]
    assert rows[:, 1].tolist() == [float(tokens[p]) for p in range(first, first + want)]


def assert_prompt_rows(output, prompt, all_positions):
    import torch

    rows = getattr(output, "hidden_states_prefill", "<no attribute>")
    assert isinstance(rows, torch.Tensor), f"prefill hidden states lost: hidden_states_prefill is {rows!r}"
    assert rows.device.type == "cpu" and rows.dtype == torch.bfloat16
    positions = range(len(prompt)) if all_positions else [len(prompt) - 1]
    assert tuple(rows.shape) == (len(positions), H)
    assert rows[:, 0].tolist() == [float(p) for p in positions]
    assert rows[:, 1].tolist() == [float(prompt[p]) for p in positions]


PROMPTS = ([5, 9, 2, 7, 11], [3, 4, 8, 1, 6, 2, 10, 12, 13])


# ------------------------------------------------------------------------------------------------------------------
# tests


def test_off_by_default_nothing_of_vllm_is_modified(vllm_env, engine_state):
    from compat.patches.sets.vllm054_hidden import PATCH_SET

    before = _raw_targets()
    engine_state.activate({}, sets=[PATCH_SET])  # what compat.setup() does without hidden_states=...
    assert engine_state.applied_sets() == ()
    after = _raw_targets()
    assert all(after[k] is before[k] for k in before)
    statuses = {s.id: s.status for s in engine_state.status(sets=[PATCH_SET])}
    assert set(statuses.values()) == {"disabled"}
    # the switch applies it; revert restores the very same objects
    engine_state.activate({"hidden_states": True}, sets=[PATCH_SET])
    assert all(_raw_targets()[k] is not before[k] for k in before)
    engine_state.revert()
    assert all(_raw_targets()[k] is before[k] for k in before)


def test_env_switch_applies_and_fingerprints_match(vllm_env, engine_state, monkeypatch):
    from compat.patches.sets.vllm054_hidden import PATCH_SET

    monkeypatch.setenv("COMPAT_HIDDEN_STATES", "1")  # inherited by worker processes
    assert {s.status for s in engine_state.status(sets=[PATCH_SET], verify=True)} == {"applies"}
    engine_state.activate({}, sets=[PATCH_SET])
    assert engine_state.applied_sets() == ("vllm054_hidden",)


def test_compat_setup_switch_applies_the_registered_set(vllm_env, engine_state, monkeypatch):
    import os

    import compat

    monkeypatch.setenv("COMPAT_HIDDEN_STATES", "0")  # restored (removed) after the test; setup() overrides it
    monkeypatch.delenv("COMPAT_HIDDEN_STATES")
    before = _raw_targets()
    compat.setup(hidden_states=True)
    assert "vllm054_hidden" in engine_state.applied_sets()
    assert os.environ["COMPAT_HIDDEN_STATES"] == "1"  # worker processes inherit the switch
    assert all(_raw_targets()[k] is not before[k] for k in before)
    compat.revert()
    assert all(_raw_targets()[k] is before[k] for k in before)


def test_switch_reaches_model_runner_through_worker(vllm_env, engine_state, monkeypatch):
    from compat.patches.sets.vllm054_hidden import ATTR_RUNNER, PATCH_SET

    cfg = make_configs(vllm_env)
    runner = make_worker(cfg).model_runner
    assert runner.return_hidden_states is False and not hasattr(runner, ATTR_RUNNER)

    monkeypatch.setenv("COMPAT_HIDDEN_STATES", "all_prompt")
    monkeypatch.setenv("COMPAT_HIDDEN_STATES_DECODE_LIMIT", "3")
    engine_state.activate({}, sets=[PATCH_SET])
    runner = make_worker(cfg).model_runner
    assert type(runner).__name__ == "ModelRunner"
    assert runner.return_hidden_states is True, "the Worker left the runner's return_hidden_states off"
    settings = getattr(runner, ATTR_RUNNER)
    assert settings.all_prompt is True and settings.decode_limit == 3


def test_prefill_and_decode_states_arrive_in_order(vllm_env, patched):
    loop = make_loop(vllm_env)
    ids = [loop.add(PROMPTS[0], params(max_tokens=6)), loop.add(PROMPTS[1], params(max_tokens=4, prompt_logprobs=1))]
    final = loop.run()
    assert_prompt_rows(final[ids[0]], PROMPTS[0], all_positions=False)  # default: last prompt position
    assert_prompt_rows(final[ids[1]], PROMPTS[1], all_positions=True)  # prompt_logprobs: every prompt position
    for rid, prompt, n in ((ids[0], PROMPTS[0], 6), (ids[1], PROMPTS[1], 4)):
        (completion,) = final[rid].outputs
        assert len(completion.token_ids) == n
        assert_decode_rows(completion, prompt)


def test_cuda_graph_padding_and_buffer_reuse(vllm_env, patched):
    loop = make_loop(vllm_env)
    ids = [loop.add(PROMPTS[0], params(max_tokens=5)) for _ in range(3)]  # decode batch 3 -> graph of 4
    final = loop.run()
    assert any(o.hidden_states is not None and o.hidden_states.shape[0] == 3 for o in loop.sampler_outputs)
    assert loop.graphs[4].calls == 4  # vLLM's input builder padded each of the 4 decode steps to the graph of 4
    assert loop.graphs[4].buffer.abs().sum() > 0  # the graph path really ran (and overwrote its buffer)
    for rid in ids:
        assert_decode_rows(final[rid].outputs[0], PROMPTS[0])


def test_n_greater_than_one_children_carry_their_own_rows(vllm_env, patched):
    loop = make_loop(vllm_env)
    rid = loop.add(PROMPTS[1], params(n=3, temperature=2.0, seed=7, max_tokens=6))
    out = loop.run()[rid]
    assert len(out.outputs) == 3
    assert len({c.token_ids for c in out.outputs}) > 1  # the samples diverged, so lineage is really tested
    for c in out.outputs:
        assert_decode_rows(c, PROMPTS[1])
    assert_prompt_rows(out, PROMPTS[1], all_positions=False)


def test_beam_search(vllm_env, patched):
    loop = make_loop(vllm_env)
    rid = loop.add(PROMPTS[0], params(n=2, best_of=3, use_beam_search=True, temperature=0.0, max_tokens=5))
    out = loop.run()[rid]
    assert len(out.outputs) == 2
    for c in out.outputs:
        assert_decode_rows(c, PROMPTS[0])


@pytest.mark.parametrize("prompt", ["last", "all"])
def test_preempted_and_recomputed_sequence_has_no_duplicates_or_gaps(vllm_env, engine_state, monkeypatch, prompt):
    # 8 blocks of 4 tokens: two requests that grow to 9+12 tokens each cannot both stay; the later one is
    # preempted by recompute and later re-prefilled over prompt + generated tokens. (prompt_logprobs cannot be
    # combined with a recompute in 0.5.4: its sampler asserts in _get_next_prompt_tokens; "all" takes every
    # prompt position from the model output instead, which the recompute's prefill delivers a second time.)
    from compat.patches.sets.vllm054_hidden import PATCH_SET

    monkeypatch.setenv("COMPAT_HIDDEN_STATES", "1")
    monkeypatch.setenv("COMPAT_HIDDEN_STATES_PROMPT", prompt)
    engine_state.activate({}, sets=[PATCH_SET])
    loop = make_loop(vllm_env, num_gpu_blocks=8)
    a = loop.add(PROMPTS[1], params(max_tokens=12))
    b = loop.add(PROMPTS[1], params(max_tokens=12))
    final = loop.run()
    assert loop.scheduler.num_cumulative_preemption > 0
    recomputed = [(rid, n) for step in loop.prefill_steps for rid, n in step if n > 0]
    assert recomputed and recomputed[0][1] >= 2, loop.prefill_steps  # re-prefilled after generating tokens
    for rid in (a, b):
        (completion,) = final[rid].outputs
        assert len(completion.token_ids) == 12
        assert_decode_rows(completion, PROMPTS[1])
    for rid in (a, b):
        assert_prompt_rows(final[rid], PROMPTS[1], all_positions=prompt == "all")


def test_all_prompt_setting_and_decode_limit(vllm_env, engine_state, monkeypatch):
    from compat.patches.sets.vllm054_hidden import PATCH_SET

    monkeypatch.setenv("COMPAT_HIDDEN_STATES", "all_prompt")
    monkeypatch.setenv("COMPAT_HIDDEN_STATES_DECODE_LIMIT", "3")
    engine_state.activate({}, sets=[PATCH_SET])
    loop = make_loop(vllm_env)
    rid = loop.add(PROMPTS[1], params(max_tokens=8))
    running = []
    for _ in range(50):
        running += [o for o in loop.step() if o.request_id == rid]
        if not loop.scheduler.has_unfinished_seqs():
            break
    out = running[-1]
    assert out.finished
    assert out.prompt_logprobs is None  # no logits computed for the prompt: rows came from the model output
    assert_prompt_rows(out, PROMPTS[1], all_positions=True)
    assert_decode_rows(out.outputs[0], PROMPTS[1], limit=3)
    # earlier (streamed) outputs keep what they showed: later steps never rewrote their rows
    for o in running:
        assert_decode_rows(o.outputs[0], PROMPTS[1], limit=3)


def test_accessors(vllm_env, patched):
    from compat import hidden_states

    loop = make_loop(vllm_env)
    rid = loop.add(PROMPTS[0], params(max_tokens=3))
    out = loop.run()[rid]
    assert hidden_states.prefill(out) is out.hidden_states_prefill
    assert tuple(hidden_states.prefill(out).shape) == (1, H)
    assert hidden_states.decode(out.outputs[0]) is out.outputs[0].hidden_states_decode
    assert tuple(hidden_states.decode(out.outputs[0]).shape) == (3, H)


def _requests(loop):
    return [loop.add(PROMPTS[0], params(n=2, temperature=1.0, seed=3, max_tokens=4, prompt_logprobs=1)),
            loop.add(PROMPTS[1], params(max_tokens=3))]


def test_without_the_patch_the_states_are_lost(vllm_env, engine_state, monkeypatch):
    """The same requests through the real engine, unpatched and patched: vLLM's own return_hidden_states path fills
    SamplerOutput.hidden_states at every step, yet the RequestOutputs the engine returns carry none of it; the
    patched run returns the rows for the same tokens."""
    from compat.patches.sets.vllm054_hidden import PATCH_SET

    plain = make_loop(vllm_env, return_hidden_states=True)  # as 0.5.4's Worker does for an mlp_speculator draft
    plain_ids = _requests(plain)
    plain_final = plain.run()
    assert all(o.hidden_states is not None for o in plain.sampler_outputs)  # produced at every step...
    monkeypatch.setenv("COMPAT_HIDDEN_STATES", "1")
    monkeypatch.delenv("COMPAT_DISABLE_PATCHES", raising=False)  # the comparison run has the whole set
    engine_state.activate({}, sets=[PATCH_SET])
    assert engine_state.applied_sets() == ("vllm054_hidden",)
    fixed = make_loop(vllm_env)
    assert _requests(fixed) == plain_ids
    fixed_final = fixed.run()
    assert sorted(plain_final) == sorted(fixed_final) == sorted(plain_ids)
    for rid in plain_ids:
        a, b = plain_final[rid], fixed_final[rid]
        assert [c.token_ids for c in a.outputs] == [c.token_ids for c in b.outputs]  # the same generation
        assert getattr(a, "hidden_states_prefill", None) is None  # ...and none of it in the real output
        assert all(getattr(c, "hidden_states_decode", None) is None for c in a.outputs)
        assert b.hidden_states_prefill is not None
        assert all(c.hidden_states_decode is not None and len(c.hidden_states_decode) == len(c.token_ids)
                   for c in b.outputs)
