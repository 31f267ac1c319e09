"""vLLM 0.7.0 - 0.7.2: colocated (verl-style) rollout fixes, all three fixed upstream in 0.7.3.

Each patch is a source edit of the release's own function (compat.patches.source): the exact statement is found
in the release source and removed or replaced; nothing else in the function is retyped. Fingerprints were taken
from the wheels of 0.7.0, 0.7.1 and 0.7.2 (`textwrap.dedent(inspect.getsource(target))`, sha256, 16 hex); 0.7.0
spells the world-size condition differently, so that patch carries two fingerprints and two snippet spellings.
"""

from __future__ import annotations

from ..engine import Patch, PatchSet
from ..source import Edit, source_edit

LEDGER = """\
patch                                  what                                          upstream fix
vllm07.parallel_state_world_size       drop RuntimeError world_size != TP x PP        removed in vLLM 0.7.3
vllm07.external_launcher_local_rank    local_rank = LOCAL_RANK, not RANK              vLLM 0.7.3 reads LOCAL_RANK
vllm07.pt_weights_no_empty_cache       no torch.cuda.empty_cache() per .pt shard      vLLM PR #13001, in 0.7.3
"""

# vllm/distributed/parallel_state.py, initialize_model_parallel (check at line 1017 in 0.7.0 and 0.7.1, 1027 in 0.7.2).
# The group construction right below already builds world_size // tp groups, so a vLLM TP group smaller than the
# trainer's torch.distributed world works once the check is gone (0.7.3 removed exactly this statement).
_WORLD_SIZE_CHECK_070 = """\
if (world_size !=
        tensor_model_parallel_size * pipeline_model_parallel_size):
    raise RuntimeError(
        f"world_size ({world_size}) is not equal to "
        f"tensor_model_parallel_size ({tensor_model_parallel_size}) x "
        f"pipeline_model_parallel_size ({pipeline_model_parallel_size})")
"""
_WORLD_SIZE_CHECK_071 = """\
if (world_size
        != tensor_model_parallel_size * pipeline_model_parallel_size):
    raise RuntimeError(
        f"world_size ({world_size}) is not equal to "
        f"tensor_model_parallel_size ({tensor_model_parallel_size}) x "
        f"pipeline_model_parallel_size ({pipeline_model_parallel_size})")
"""

PATCH_SET = PatchSet(
    name="vllm07",
    package="vllm",
    versions=">=0.7.0,<0.7.3",
    switch=None,
    ledger=LEDGER,
    patches=(
        Patch(
            id="vllm07.parallel_state_world_size",
            target="vllm.distributed.parallel_state:initialize_model_parallel",
            why="colocated rollout runs a vLLM TP group smaller than the trainer's world; 0.7.0-0.7.2 refuse it",
            upstream_fix="check removed in vLLM 0.7.3 (vllm/distributed/parallel_state.py)",
            fingerprint=(
                "sha256:e6c09e8c149dbe58",  # 0.7.0
                "sha256:e9f59c034cdbe75a",  # 0.7.1, 0.7.2
            ),
            make=source_edit(Edit((_WORLD_SIZE_CHECK_070, _WORLD_SIZE_CHECK_071), "")),
        ),
        Patch(
            # vllm/executor/uniproc_executor.py, ExecutorWithExternalLauncher._init_executor (0.7.2 line 104):
            # `local_rank = rank` picks cuda:<global rank> on every node but the first of a torchrun launch.
            id="vllm07.external_launcher_local_rank",
            target="vllm.executor.uniproc_executor:ExecutorWithExternalLauncher._init_executor",
            why="multi-node torchrun launch: the worker's device must come from LOCAL_RANK, not the global RANK",
            upstream_fix="vLLM 0.7.3 sets local_rank = int(os.environ['LOCAL_RANK'])",
            fingerprint="sha256:8b625d920f631129",  # 0.7.0, 0.7.1, 0.7.2
            make=source_edit(Edit("local_rank = rank", 'local_rank = int(os.environ["LOCAL_RANK"])')),
        ),
        Patch(
            # vllm/model_executor/model_loader/weight_utils.py, pt_weights_iterator (0.7.2 line 456): an
            # empty_cache() after every shard is slow and breaks sleep mode (cumem allocator) during weight sync.
            id="vllm07.pt_weights_no_empty_cache",
            target="vllm.model_executor.model_loader.weight_utils:pt_weights_iterator",
            why="torch.cuda.empty_cache() after every .pt shard slows loading and breaks sleep-mode weight sync",
            upstream_fix="vLLM PR #13001 (fix sleep mode and pytorch checkpoint compatibility), released in 0.7.3",
            fingerprint="sha256:c29e055a28d0680d",  # 0.7.0, 0.7.1, 0.7.2
            make=source_edit(Edit("del state\ntorch.cuda.empty_cache()", "del state")),
        ),
    ),
)
