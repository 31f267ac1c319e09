"""Which tests of tests/hf/test_transformers_sets.py fail when each transformers set is switched off.

One list, read by that file's own fail-without test and by the per-patch harness (tests/vllm/test_fail_without_patch.py).
"""

ATTN_TESTS = (
    "test_verl_load_on_v100_and_t4_gives_sdpa_and_float16[v100-sxm2]",
    "test_verl_load_on_v100_and_t4_gives_sdpa_and_float16[t4-driver470]",
    "test_verl_load_without_a_fitting_flash_attn_gives_sdpa_and_keeps_bfloat16[a100-sxm4]",
    "test_verl_load_without_a_fitting_flash_attn_gives_sdpa_and_keeps_bfloat16[h100-sxm]",
    "test_verl_load_without_a_fitting_flash_attn_gives_sdpa_and_keeps_bfloat16[rtx4090-old-driver]",
    "test_flash_attention_2_kwarg_and_string_dtype_on_v100",
    "test_hf_dtype_switch_off_keeps_bfloat16_on_v100",
    "test_one_warning_line_per_process_and_sets_applied_by_the_hook",
)
DTYPE_TESTS = (
    "test_verl_load_on_v100_and_t4_gives_sdpa_and_float16[v100-sxm2]",
    "test_verl_load_on_v100_and_t4_gives_sdpa_and_float16[t4-driver470]",
    "test_flash_attention_2_kwarg_and_string_dtype_on_v100",
    "test_auto_dtype_on_a_bfloat16_checkpoint[v100-sxm2-float16]",
    "test_one_warning_line_per_process_and_sets_applied_by_the_hook",
)
