"""verl on a CUDA machine without flash-attn: its worker modules import flash_attn.bert_padding at module import
(0.4.0 - 0.6.1, compat/data/verl.toml `bert_padding_*`); compat's verl_padding set provides it (compat/hf/
bert_padding.py). Found by the first real GPU run (docs/validation/2026-12-01-h200-verl/); the CPU matrix could not
see it because verl only takes that import where torch.cuda.is_available().

Stand-in (the hardware edge): in tests/verl/padding_driver.py's fresh process torch.cuda.is_available is `lambda:
True` before verl is imported; everything else is the release's own code. The functions themselves are checked
against flash-attn 2.x's semantics here and, through verl's own log_probs_from_logits_response_rmpad, in the driver;
unpad_input itself refuses (packed sequences mix under sdpa/eager: measured below in transformers).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

from vhelp import HERE, ROOT, clean_env, table_row, worker_modules

from compat.hf import bert_padding as bp

torch = pytest.importorskip("torch")  # every verl env has it (COMPAT_PROMISES torch); the quick env does not

NO_FLASH = "No module named 'flash_attn'"


def drive(mode: str, **env: str) -> dict:
    out = Path(tempfile.mkdtemp(prefix="vpad")) / "out.json"
    proc = subprocess.run([sys.executable, str(HERE / "padding_driver.py"), str(out), mode, *worker_modules()],
                          cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and out.exists(), proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def bare() -> dict:
    return drive("bare")


@pytest.fixture(scope="module")
def with_compat() -> dict:
    return drive("compat")


def test_without_compat_the_workers_die_on_a_cuda_machine(bare):
    """The failure the GPU run hit, reproduced in the release: fails without the patch (0.4.0 - 0.6.1)."""
    assert bare["is_cuda_available"] is True
    if table_row()["bert_padding_at_import"]:
        assert bare["error"] and NO_FLASH in bare["error"], bare
    else:
        assert bare["error"] is None, bare  # 0.7.0+: nothing to provide, and the set stays out
    assert bare["entry"] is None


def test_the_kill_switch_brings_the_failure_back():
    res = drive("compat", COMPAT_DISABLE_PATCHES="verl_padding.bert_padding")
    if table_row()["bert_padding_at_import"]:
        assert res["error"] and NO_FLASH in res["error"], res
        assert res["status"] == {"verl_padding.bert_padding": "disabled"}
    assert res["entry"] is None


def test_with_compat_the_workers_import_and_flash_attn_stays_absent(with_compat):
    res = with_compat
    assert res["error"] is None, res.get("trace")
    assert res["imported"] == worker_modules()
    if table_row()["bert_padding_at_import"]:
        assert res["entry"] == "compat.hf.bert_padding"
        assert res["status"] == {"verl_padding.bert_padding": "applied"}
    else:
        assert res["entry"] is None and res["status"] == {"verl_padding.bert_padding": "not-applicable"}
    # the provided submodule does not make flash-attn look installed to anyone
    assert res["find_spec_flash_attn"] is False
    assert NO_FLASH in res["import_flash_attn"]
    assert res["fa2_available"] is False
    assert res["entry_after_revert"] is False


def test_verls_remove_padding_path_is_refused_and_the_math_matches(with_compat):
    """verl's utils/torch_functional.log_probs_from_logits_response_rmpad imports pad_input/unpad_input from
    flash_attn.bert_padding when called: compat's unpad_input refuses (packed sequences, see the next test) with
    what to do; with compat's `unpad` in its place the result equals verl's padded logprobs_from_logits (the
    math is flash-attn's). On 0.7.0+ (outside the set) that call still fails loudly: compat provides nothing."""
    if not table_row()["bert_padding_at_import"]:
        assert NO_FLASH in with_compat["rmpad_error"], with_compat
        return
    assert "use_remove_padding=False" in (with_compat.get("rmpad_error") or ""), with_compat
    assert "rmpad_max_err" in with_compat, with_compat
    assert with_compat["rmpad_max_err"] < 1e-5


def test_packed_sequences_mix_under_sdpa_and_eager_hence_the_refusal():
    """Why unpad_input refuses: the installed transformers' Qwen2 (random tiny, CPU) run on two sequences packed in
    one row with per-sequence position_ids, as verl's remove-padding path calls it, gives the second sequence other
    logits than run alone, for sdpa and eager. If a transformers release starts masking per sequence from
    position_ids, this fails: then the refusal can become a pass-through for that release."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    a, b = torch.randint(0, 64, (1, 7)), torch.randint(0, 64, (1, 5))
    for impl in ("sdpa", "eager"):
        model = Qwen2ForCausalLM._from_config(cfg, attn_implementation=impl).eval()
        with torch.no_grad():
            alone = model(input_ids=b).logits[0]
            pos = torch.cat([torch.arange(7), torch.arange(5)])[None]
            packed = model(input_ids=torch.cat([a, b], 1), position_ids=pos).logits[0, 7:]
        assert (packed - alone).abs().max() > 1e-2, f"{impl}: packed sequences no longer mix"


def test_unpad_input_refuses_with_what_to_do():
    from compat.errors import CompatError

    with pytest.raises(CompatError, match="use_remove_padding=False"):
        bp.unpad_input(torch.zeros(2, 3, 1), torch.ones(2, 3))


# ---------------------------------------------------------------------------------------------------------------
# the functions, against flash-attn 2.x flash_attn/bert_padding.py semantics

MASK = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1], [1, 1, 1, 1]])


def test_unpad_input_known_mask():
    x = torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(3, 4, 2)
    packed, indices, cu, maxlen, used = bp.unpad(x, MASK)
    assert indices.tolist() == [0, 1, 5, 6, 7, 8, 9, 10, 11]
    assert cu.tolist() == [0, 2, 5, 9] and cu.dtype == torch.int32
    assert maxlen == 4 and isinstance(maxlen, int)
    assert used.tolist() == [2, 3, 4] and used.dtype == torch.int32
    assert torch.equal(packed, x.reshape(12, 2)[indices])


def test_unpad_input_unused_mask_counts_in_the_pack_not_in_seqused():
    unused = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    _, indices, cu, maxlen, used = bp.unpad(torch.zeros(3, 4, 1), MASK, unused)
    assert indices.tolist() == [0, 1, 2, 5, 6, 7, 8, 9, 10, 11]
    assert cu.tolist() == [0, 3, 6, 10] and used.tolist() == [2, 3, 4] and maxlen == 4


def test_pad_of_unpad_is_the_input_with_zeros_at_padding():
    x = torch.randn(3, 4, 5, 2)
    packed, indices, *_ = bp.unpad(x, MASK)  # how every verl release unpacks it
    back = bp.pad_input(packed, indices, 3, 4)
    assert back.shape == x.shape
    assert torch.equal(back, x * MASK[:, :, None, None])


def test_gradients_flow_through_index_first_axis_and_pad_input():
    x = torch.randn(3, 4, 2, requires_grad=True)
    w = torch.randn(3, 4, 2)
    packed, indices, *_ = bp.unpad(x, MASK)
    (bp.pad_input(packed * 2, indices, 3, 4) * w).sum().backward()
    assert torch.allclose(x.grad, 2 * w * MASK[:, :, None])
    y = torch.randn(6, 3, requires_grad=True)
    bp.index_first_axis(y, torch.tensor([4, 1])).sum().backward()  # distinct indices, as unpad_input makes them
    assert y.grad[:, 0].tolist() == [0, 1, 0, 0, 1, 0]


@pytest.mark.parametrize("use_einops", [False] + ([True] if bp._einops is not None else []))
def test_rearrange_patterns_verl_uses(monkeypatch, use_einops):
    """The einops-free patterns; where einops is installed (no verl env has it) the same checks hold for einops' own
    rearrange, so the fallback agrees with it."""
    if not use_einops:
        monkeypatch.setattr(bp, "_einops", None)
    x = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert torch.equal(bp.rearrange(x, "b s ... -> (b s) ..."), x.reshape(6, 4))
    # (c b s) -> ((b s) c): row b*s_len+s, column c holds x[c, b, s] (verl's mrope position_ids, qwen2-vl)
    y = bp.rearrange(x, "c b s ... -> (b s) c ...")
    assert y.shape == (12, 2) and all(y[b * 4 + s, c] == x[c, b, s] for c in range(2) for b in range(3)
                                      for s in range(4))


def test_rearrange_fallback_refuses_other_patterns(monkeypatch):
    monkeypatch.setattr(bp, "_einops", None)
    with pytest.raises(ValueError, match="install einops"):
        bp.rearrange(torch.zeros(2, 3), "a b -> b a")


def _release_source_scan() -> tuple:
    """From the installed release's own files (ast, megatron/mcore/npu files left out: not provided): the names
    imported from flash_attn.bert_padding at module level (also under a top-level if/try), the files doing so, and
    the rearrange patterns of the files that take rearrange from flash_attn.bert_padding or verl.utils.attention_utils."""
    import ast
    import importlib.util

    root = Path(importlib.util.find_spec("verl").origin).parent
    names: set = set()
    files: list = []
    patterns: set = set()

    def module_level(nodes):
        for n in nodes:
            if isinstance(n, ast.ImportFrom) and n.module == "flash_attn.bert_padding":
                yield n
            elif isinstance(n, (ast.If, ast.Try)):
                yield from module_level(n.body + n.orelse + [x for h in getattr(n, "handlers", []) for x in h.body])

    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        if any(part in rel for part in ("megatron", "mcore", "npu_utils")):
            continue
        with warnings.catch_warnings():  # old escape sequences in verl's own files
            warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
            tree = ast.parse(f.read_text(encoding="utf-8"))
        for n in module_level(tree.body):
            names |= {a.name for a in n.names}
            files.append(rel)
        if any(isinstance(n, ast.ImportFrom) and n.module in ("flash_attn.bert_padding", "verl.utils.attention_utils")
               and any(a.name == "rearrange" for a in n.names) for n in ast.walk(tree)):
            patterns |= {" ".join(n.args[1].value.split()) for n in ast.walk(tree)
                         if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "rearrange"
                         and len(n.args) > 1 and isinstance(n.args[1], ast.Constant)}
    return names, files, patterns


def test_the_table_matches_the_installed_releases_source():
    """bert_padding_at_import / _names / _rearrange / _source are read from the installed release, not only from the
    table: the module-level importers, the names they take, the rearrange patterns their callers pass."""
    row = table_row()
    names, files, patterns = _release_source_scan()
    assert bool(files) == row["bert_padding_at_import"], files
    assert names == set(row["bert_padding_names"])
    assert all(f in row["bert_padding_source"] for f in files), (files, row["bert_padding_source"])
    if row["bert_padding_at_import"]:
        assert patterns == set(row["bert_padding_rearrange"]) and patterns <= set(bp.PATTERNS), patterns


def test_every_name_the_release_takes_is_provided():
    for name in table_row()["bert_padding_names"] + ["index_first_axis", "pad_input", "rearrange", "unpad_input"]:
        assert callable(getattr(bp, name)), name
