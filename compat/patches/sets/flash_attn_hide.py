"""A flash-attn that is installed but does not load is hidden before transformers reaches for it.

transformers decides "flash-attn is available" from metadata and an import spec (is_flash_attn_2_available()); a
build for another torch, or one without its CUDA extension, passes that check and then fails on import:
transformers 4.53 cannot import Qwen2 at all on a CUDA machine, sdpa requested or not, because
transformers/modeling_flash_attention_utils.py imports flash_attn when the check says yes; 4.57 and 5.x fail a
flash_attention_2 request on flash_attn_2_cuda instead of their own message (tests/verl/test_broken_flash_attn.py,
flash-attn 2.7.4.post1 built without its extension, in each verl env's transformers).

The set acts right before transformers.modeling_flash_attention_utils starts executing (every model module and,
from 4.54, modeling_utils import it, after torch): compat/hf/flash_load.py imports flash_attn once and, where that
fails, puts None at sys.modules['flash_attn'], so transformers takes its no-flash-attn path and compat's
transformers_attn set serves flash_attention_2 requests with the profile's attention. Where flash-attn loads (or is
not installed) it is not-applicable; revert() removes the entry. verl 0.4-0.6's own import of
flash_attn.bert_padding is served by verl_padding.bert_padding, which also applies where flash-attn does not load.
"""

from __future__ import annotations

from ...hf import flash_load
from ..engine import MODULES, Patch, PatchSet

LEDGER = """\
patch                    what                                                     upstream fix
flash_attn_hide.broken   a flash-attn that is installed but does not load: None   none: transformers trusts
                         at sys.modules['flash_attn'] before transformers'        metadata + find_spec
                         modeling_flash_attention_utils runs
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
        ),
    ),
)
