"""Hugging Face transformers on every profile: what the transformers patch sets do at model-loading time.

verdict.py decides, from this process's compat report, whether flash-attn can serve the machine and whether
bfloat16 is refused; attention.py and dtype.py hold the replacements the sets in compat/patches/sets/transformers_*.py
install; checks.py gives doctor its findings. Nothing here imports transformers or torch at module level.
"""
