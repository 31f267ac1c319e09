"""A flash-attn that is installed but does not load is hidden before transformers reaches for it.

transformers decides "flash-attn is available" from metadata and an import spec (is_flash_attn_2_available()); a
build for another torch, or one without its CUDA extension, passes that check and then fails on import:
transformers 4.53 cannot import Qwen2 at all on a CUDA machine, sdpa requested or not (its
modeling_flash_attention_utils.py imports flash_attn in its body when the check says yes); 4.55 fails the first
forward of a flash_attention_2 model, 4.57 and 5.x the request at load, on flash_attn_2_cuda instead of their own
message (tests/verl/test_broken_flash_attn.py, flash-attn 2.7.4.post1 built without its extension, in each verl
env's transformers).

The set acts right before transformers.modeling_flash_attention_utils starts executing (engine option before=True)
where transformers is below 4.54 (compat/data/flash_attn.toml [transformers_import]); from 4.54 on, transformers
imports flash_attn only to use it, and compat's flash_attention_2 redirect (compat/hf/attention.py, set
transformers_attn) applies the set at the request instead, through engine.apply_named. compat/hf/flash_load.py
imports flash_attn once and, where that fails, the set puts None at sys.modules['flash_attn'], so transformers takes
its no-flash-attn path and the redirect serves the request with the profile's attention. Where flash-attn loads (or
is not installed) it is not-applicable; revert() removes the entry and clears transformers' cached answers. verl
0.4-0.6's own import of flash_attn.bert_padding is served by verl_padding.bert_padding, which also applies where
flash-attn does not load.
"""

from __future__ import annotations

from ...hf import flash_load
from ..engine import MODULES, Patch, PatchSet

LEDGER = """\
patch                    what                                                     upstream fix
flash_attn_hide.broken   a flash-attn that is installed but does not load: None   none: transformers trusts
                         at sys.modules['flash_attn'] before transformers'        metadata + find_spec
                         modeling_flash_attention_utils runs (< 4.54), or at a
                         flash_attention_2 request (4.54+)
"""

PATCH_SET = PatchSet(
    name="flash_attn_hide",
    package="flash-attn",
    versions=">=0",
    watch="transformers.modeling_flash_attention_utils",
    before=True,
    switch=None,
    ledger=LEDGER,
    patches=(
        Patch(
            id="flash_attn_hide.broken",
            target=f"{MODULES}:flash_attn",
            why="a flash-attn that is installed but does not load (built for another torch, or without its CUDA "
                "extension): transformers counts it available, then fails importing it",
            upstream_fix="none: transformers' is_flash_attn_2_available() reads metadata and find_spec only",
            fingerprint=(),
            make=flash_load.hide,
            needless_check=flash_load.why_hide_is_needless,
            undone=flash_load.unhidden,
        ),
    ),
)
