"""vLLM 0.5.4 hidden-states patch set, on the real release (CPU).

The step loop below is the real one with only the GPU-bound parts stood in for: the real Scheduler schedules,
a real ModelRunner built by the real Worker runs its real `execute_model` (stub model forward and CUDA-graph
runner; real LogitsProcessor + ParallelLMHead, real Sampler, real SamplingMetadata), and the real
`LLMEngine._process_model_outputs` drives the real SingleStepOutputProcessor, Sequence/SequenceGroup and
`RequestOutput.from_seq_group`. The stub model writes each token's position and input token id into its hidden
state (columns 0 and 1), so every row that arrives can be traced to the exact token it belongs to.
"""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import pytest

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
    """vLLM imported, a world-size-1 gloo parallel state (ParallelLMHead / get_pp_group need one), a tiny config."""

    pytest.importorskip("vllm")
    import torch
    import vllm.model_executor.sampling_metadata as sm
    from vllm.distributed import parallel_state as ps

    mp = pytest.MonkeyPatch()
    mp.setattr(sm, "is_pin_memory_available", lambda: False)  # pinning host memory needs a CUDA driver

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
    """The patch engine with nothing applied before and after, and no hidden-states settings in the environment."""
    from compat.patches import engine

    for name in ("COMPAT_HIDDEN_STATES", "COMPAT_HIDDEN_STATES_PROMPT", "COMPAT_HIDDEN_STATES_DECODE_LIMIT",
                 "COMPAT_DISABLE_PATCHES"):
        monkeypatch.delenv(name, raising=False)
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
# the step loop


def make_configs(model_dir, num_gpu_blocks=64, max_num_seqs=8):
    from vllm.config import (CacheConfig, DeviceConfig, LoadConfig, ModelConfig, ParallelConfig,
                             SchedulerConfig)

    model = ModelConfig(str(model_dir), str(model_dir), "auto", False, "bfloat16", 0, max_model_len=256,
                        enforce_eager=False, skip_tokenizer_init=True)
    cache = CacheConfig(BLOCK, 0.9, 0, "auto")
    cache.num_gpu_blocks, cache.num_cpu_blocks = num_gpu_blocks, 16
    sched = SchedulerConfig(512, max_num_seqs, 256)
    return SimpleNamespace(model=model, cache=cache, scheduler=sched, parallel=ParallelConfig(1, 1, False),
                           device=DeviceConfig("cuda"), load=LoadConfig())


def make_worker(cfg):
    """The real Worker and the ModelRunner it builds (constructing them needs no GPU once the backend is named)."""
    from vllm.worker.worker import Worker

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_ATTENTION_BACKEND", "XFORMERS")  # skips 0.5.4's GPU capability probe (NVML) on a CPU box
        return Worker(cfg.model, cfg.parallel, cfg.scheduler, cfg.device, cfg.cache, cfg.load, local_rank=0,
                      rank=0, distributed_init_method="tcp://127.0.0.1:1", is_driver_worker=True)


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
        self.buffer = torch.zeros((batch_size, H), dtype=torch.bfloat16)

    def __call__(self, input_ids, positions, kv_caches, attn_metadata, intermediate_tensors=None, **kw):
        self.buffer.copy_(self.model.forward(input_ids, positions, kv_caches, attn_metadata))
        return self.buffer


class Loop:
    """One engine step at a time: real Scheduler -> real ModelRunner.execute_model -> real engine output path."""

    def __init__(self, cfg, runner, cuda_graph=True):
        from vllm.core.scheduler import Scheduler
        from vllm.engine.output_processor.single_step import SingleStepOutputProcessor
        from vllm.engine.output_processor.stop_checker import StopChecker
        from vllm.utils import Counter

        self.cfg = cfg
        self.runner = runner
        self.cuda_graph = cuda_graph
        self.scheduler = Scheduler(cfg.scheduler, cfg.cache, None)
        self.seq_counter = Counter()
        self.request_counter = Counter()
        self.output_processor = SingleStepOutputProcessor(
            cfg.scheduler, None, [self.scheduler], self.seq_counter,
            StopChecker(cfg.scheduler.max_model_len, lambda seq: None))
        self.engine = SimpleNamespace(model_config=SimpleNamespace(embedding_mode=False),
                                      output_processor=self.output_processor, scheduler=[self.scheduler])
        runner.model = make_stub_model()
        self.graphs = runner.graph_runners[0]
        for bs in GRAPH_SIZES:
            self.graphs[bs] = StubGraphRunner(runner.model, bs)
        self.sampler_outputs = []  # what execute_model returned, per step
        self.prefill_steps = []

    def add(self, prompt, params):
        import time

        from vllm.sequence import Sequence, SequenceGroup

        seq = Sequence(next(self.seq_counter), {"prompt_token_ids": list(prompt), "prompt": None}, BLOCK,
                       eos_token_id=None)
        rid = f"req{next(self.request_counter)}"
        self.scheduler.add_seq_group(SequenceGroup(rid, [seq], time.time(), params))
        return rid

    def _model_input(self, metadata_list):
        import torch
        from vllm.model_executor.sampling_metadata import SamplingMetadata
        from vllm.worker.model_runner import ModelInputForGPUWithSamplingMetadata

        tokens, positions, seq_lens, query_lens = [], [], [], []
        for md in metadata_list:  # the same flattening as ModelInputForGPUBuilder in 0.5.4
            for seq_id, data in md.seq_data.items():
                if md.is_prompt:
                    ctx = data.get_num_computed_tokens()
                    end = min(data.get_len(), ctx + md.token_chunk_size)
                    tokens += data.get_token_ids()[ctx:end]
                    positions += range(ctx, end)
                    seq_lens.append(end)
                    query_lens.append(end - ctx)
                else:
                    tokens.append(data.get_last_token_id())
                    positions.append(data.get_len() - 1)
                    seq_lens.append(data.get_len())
                    query_lens.append(1)
        is_prompt = metadata_list[0].is_prompt
        use_graph = self.cuda_graph and not is_prompt
        if use_graph:  # pad the decode batch like the runner does for graph replay
            padded = next(bs for bs in GRAPH_SIZES if bs >= len(tokens))
            tokens += [0] * (padded - len(tokens))
            positions += [0] * (padded - len(positions))
        sampling = SamplingMetadata.prepare(metadata_list, seq_lens, query_lens, "cpu", pin_memory=False)
        attn = SimpleNamespace(prefill_metadata=SimpleNamespace() if is_prompt else None,
                               decode_metadata=None if is_prompt else SimpleNamespace(use_cuda_graph=use_graph))
        return ModelInputForGPUWithSamplingMetadata(
            input_tokens=torch.tensor(tokens), input_positions=torch.tensor(positions), seq_lens=seq_lens,
            query_lens=query_lens, attn_metadata=attn, sampling_metadata=sampling, is_prompt=is_prompt)

    def step(self):
        from vllm.engine.llm_engine import LLMEngine

        metadata_list, sched_out = self.scheduler.schedule()
        if sched_out.is_empty():
            return []
        # (request id, tokens generated so far) of each prefill: a recompute re-prefills generated tokens too
        self.prefill_steps.append([(md.request_id, d.get_output_len()) for md in metadata_list if md.is_prompt
                                   for d in md.seq_data.values()])
        output = self.runner.execute_model(self._model_input(metadata_list), kv_caches=[None])
        self.sampler_outputs.append(output[0])
        return LLMEngine._process_model_outputs(self.engine, output, sched_out.scheduled_seq_groups,
                                                sched_out.ignored_seq_groups, metadata_list)

    def run(self, max_steps=200):
        final = {}
        for _ in range(max_steps):
            for out in self.step():
                if out.finished:
                    final[out.request_id] = out
            if not self.scheduler.has_unfinished_seqs():
                return final
        raise AssertionError("requests did not finish")


def make_loop(vllm_env, num_gpu_blocks=64, cuda_graph=True):
    cfg = make_configs(vllm_env, num_gpu_blocks=num_gpu_blocks)
    return Loop(cfg, make_worker(cfg).model_runner, cuda_graph=cuda_graph)


def params(**kw):
    from vllm import SamplingParams

    kw.setdefault("max_tokens", 6)
    return SamplingParams(ignore_eos=True, detokenize=False, **kw)


# ------------------------------------------------------------------------------------------------------------------
# checks: each row is traced to its token through the stub's columns 0 (position) and 1 (input token id)


def assert_decode_rows(completion, prompt, limit=None):
    import torch

    rows = completion.hidden_states_decode
    tokens = list(prompt) + list(completion.token_ids)
    n = len(completion.token_ids)
    assert isinstance(rows, torch.Tensor) and rows.device.type == "cpu" and rows.dtype == torch.bfloat16
    want = n if limit is None else min(n, limit)
    assert tuple(rows.shape) == (want, H)
    first = len(prompt) - 1 + (n - want)
    # generated token i was sampled from the state at position prompt_len - 1 + i, whose input is tokens[that]
    assert rows[:, 0].tolist() == [float(p) for p in range(first, first + want)]
    assert rows[:, 1].tolist() == [float(tokens[p]) for p in range(first, first + want)]


def assert_prompt_rows(output, prompt, all_positions):
    import torch

    rows = output.hidden_states_prefill
    assert isinstance(rows, torch.Tensor) and rows.device.type == "cpu" and rows.dtype == torch.bfloat16
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
    assert runner.return_hidden_states is True
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
    loop = make_loop(vllm_env, cuda_graph=True)
    ids = [loop.add(PROMPTS[0], params(max_tokens=5)) for _ in range(3)]  # decode batch 3 -> graph of 4
    final = loop.run()
    assert any(o.hidden_states is not None and o.hidden_states.shape[0] == 3 for o in loop.sampler_outputs)
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


def test_without_the_patch_the_states_are_lost(vllm_env, engine_state):
    """vLLM's own return_hidden_states path fills SamplerOutput.hidden_states, and the engine drops it."""
    loop = make_loop(vllm_env)
    loop.runner.return_hidden_states = True  # as 0.5.4's Worker does for an mlp_speculator draft
    rid = loop.add(PROMPTS[0], params(n=2, temperature=1.0, seed=3, max_tokens=4, prompt_logprobs=1))
    out = loop.run()[rid]
    assert all(o.hidden_states is not None for o in loop.sampler_outputs)  # produced at every step...
    assert not hasattr(out, "hidden_states_prefill")  # ...and gone by the time the RequestOutput exists
    assert all(not hasattr(c, "hidden_states_decode") for c in out.outputs)
    assert len(out.outputs) == 2 and all(len(c.token_ids) == 4 for c in out.outputs)
