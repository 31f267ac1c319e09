"""transformers 4.44 - 5.x: a flash_attention_2 request is served with the profile's HF attention where flash-attn
cannot serve the machine (not installed, GPU below sm80, wheel built for another torch).

Without it, verl 0.4.1 - 0.6.0 (which build the actor/critic config with attn_implementation="flash_attention_2"
hard-coded, verl/workers/fsdp_workers.py) and any script asking for flash_attention_2 fail on V100/T4 (and on any
machine without a fitting flash-attn wheel) with transformers' ImportError "FlashAttention2 has been toggled on, but
it cannot be used". The replacements (compat/hf/attention.py) rewrite the request before the release's own check:
- 4.44 - 4.53: PreTrainedModel._autoset_attn_implementation (transformers/modeling_utils.py), the classmethod that
  from_pretrained, _from_config and __init__ call with the config;
- 4.54 - 5.x: PreTrainedModel._check_and_adjust_attn_implementation, called by __init__ and set_attn_implementation.
Fingerprints were taken from every release wheel 4.44.0 - 5.24.0 (92 releases; line numbers below). Where
flash-attn serves (the profile's HF attention is flash_attention_2) the request passes through untouched.
"""

from __future__ import annotations

from ...hf.attention import make_autoset, make_check_and_adjust
from ..engine import Patch, PatchSet

LEDGER = """\
patch                                what                                              upstream fix
transformers_attn.autoset            4.44-4.53: a flash_attention_2 request becomes    none: transformers raises by
                                     sdpa (else eager) where flash-attn cannot serve   design
transformers_attn.check_and_adjust   4.54-5.x: the same, at the check that replaced    none (4.54+ only tries the
                                     _autoset_attn_implementation                      `kernels` hub package)
"""

PATCH_SET = PatchSet(
    name="transformers_attn",
    package="transformers",
    versions=">=4.44.0,<6",
    watch="transformers.modeling_utils",
    switch=None,
    ledger=LEDGER,
    patches=(
        Patch(
            id="transformers_attn.autoset",
            target="transformers.modeling_utils:PreTrainedModel._autoset_attn_implementation",
            why="flash_attention_2 requested (kwarg or config) where flash-attn cannot serve: ImportError at load",
            upstream_fix="none (by design transformers raises; compat serves the profile's attention instead)",
            versions=">=4.44.0,<4.54",
            fingerprint=(
                "sha256:6b18aeb8d455b86d",  # 4.44.0 - 4.45.2 (6 releases), line 1489/1511/1527
                "sha256:bc67b7143589a515",  # 4.46.1, 4.46.2, 4.46.3, line 1552
                "sha256:63f014a54c0c367e",  # 4.47.0, 4.47.1, line 1517
                "sha256:48e90da0f8747d30",  # 4.48.0, 4.48.1, 4.48.2, 4.48.3, line 1459
                "sha256:5761726499e48d5a",  # 4.49.0, line 1509
                "sha256:17e5e9b4ea7aa3ce",  # 4.50.0, 4.50.1, 4.50.2, 4.50.3, line 2044
                "sha256:d68e6fdaa6695c72",  # 4.51.0, 4.51.1, 4.51.2, 4.51.3, line 2040
                "sha256:af7ed5b16cf1529b",  # 4.52.1, 4.52.2, 4.52.3, 4.52.4, line 2083/2084/2085
                "sha256:536fbbae96d8f070",  # 4.53.0, 4.53.1, 4.53.2, 4.53.3, line 2216
            ),
            make=make_autoset,
        ),
        Patch(
            id="transformers_attn.check_and_adjust",
            target="transformers.modeling_utils:PreTrainedModel._check_and_adjust_attn_implementation",
            why="flash_attention_2 requested (kwarg or config) where flash-attn cannot serve: ImportError at load",
            upstream_fix="none (4.54+ falls back to the `kernels` package's hub kernel only; offline it still raises)",
            versions=">=4.54.0,<6",
            fingerprint=(
                "sha256:510bf1a72f700536",  # 4.54.0, 4.54.1, line 2662
                "sha256:2b5107087e618954",  # 4.55.0, line 2699
                "sha256:02f8607667b90851",  # 4.55.1, 4.55.2, 4.55.3, 4.55.4, line 2700/2705
                "sha256:82692de6127fdfb7",  # 4.56.0, 4.56.1, 4.56.2, line 2756
                "sha256:a9f6edf1679d7db6",  # 4.57.1 - 4.57.6 (6 releases), line 2631
                "sha256:b453c0855cfe2caf",  # 5.0.0, 5.1.0, 5.2.0, line 1767/1768/1802
                "sha256:defb7627c2a76c87",  # 5.3.0, line 1790
                "sha256:1f15060b2176d385",  # 5.4.0 - 5.6.2 (9 releases), line 1766/1810
                "sha256:6cc3b2c1d2adca9c",  # 5.7.0 - 5.11.0 (8 releases), line 1833/1878/1887
                "sha256:ef5c6adfba58f131",  # 5.12.0 - 5.17.0 (11 releases), line 1716/1798/1799/1889/1912/1933
                "sha256:a7d8ba16c3cdcfea",  # 5.18.0, line 1716
                "sha256:70d75ab096494982",  # 5.19.0 - 5.23.0 (10 releases), line 1709/1710/1714
                "sha256:9658947291734dac",  # 5.24.0, line 1710
            ),
            make=make_check_and_adjust,
        ),
    ),
)
