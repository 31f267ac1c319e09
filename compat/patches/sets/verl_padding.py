"""verl 0.4.0 - 0.6.1 on a CUDA machine without flash-attn: `flash_attn.bert_padding` from compat (pure torch).

These releases import `index_first_axis, pad_input, rearrange, unpad_input` from flash_attn.bert_padding at module
import whenever torch.cuda.is_available() (verl/utils/device.py is_cuda_available): 0.4.x-0.5.0 in
verl/workers/actor/dp_actor.py, workers/critic/dp_critic.py and trainer/fsdp_sft_trainer.py (0.5.0 also
workers/engine/fsdp/engine_impl.py; 0.4.0's dp_critic.py also unconditionally), 0.6.x in workers/roles/utils/padding.py
(the engine workers). So on every V100/T4 and every machine without a fitting flash-attn wheel,
`ActorRolloutRefWorker.init_model()` dies with "No module named 'flash_attn'", whatever use_remove_padding says.
Files, lines and names per release: compat/data/verl.toml `bert_padding_*` (the set's range is exactly the releases
with bert_padding_at_import; tests/test_data_tables.py). 0.7.0+ import it only inside functions on the
remove-padding path (verl/utils/attention_utils.py), and 0.9.1 falls back to its own torch code there.

The set watches `verl` (its __init__ imports verl.utils.device and no worker), so the entry is in sys.modules
before any worker module runs; `flash_attn` itself stays unimportable (find_spec None, transformers'
is_flash_attn_2_available() False). Where flash-attn is installed and loads the set is not-applicable; where it is
installed but does not load (built for another torch: compat/hf/flash_load.py), the entry serves too: verl imports
the submodule by its full name, which Python takes from sys.modules without running the broken flash_attn/__init__.
"""

from __future__ import annotations

from typing import Any

from ...hf import flash_load
from ..engine import MODULES, Patch, PatchSet

LEDGER = """\
patch                      what                                               upstream fix
verl_padding.bert_padding  verl 0.4.0-0.6.1: flash_attn.bert_padding (pure    verl 0.7.0 imports it only on
                           torch, compat/hf/bert_padding.py) in sys.modules   the remove-padding path; 0.9.1
                           where flash-attn is not installed or does not      falls back to torch code
                           load
"""


def _module(original: Any) -> Any:
    """The module to install (imports torch: called after verl, which imported it)."""
    from ...hf import bert_padding

    return bert_padding


PATCH_SET = PatchSet(
    name="verl_padding",
    package="verl",
    versions=">=0.4.0,<0.7",
    switch=None,
    ledger=LEDGER,
    patches=(
        Patch(
            id="verl_padding.bert_padding",
            target=f"{MODULES}:flash_attn.bert_padding",
            why="verl imports flash_attn.bert_padding at module import on CUDA: ModuleNotFoundError without flash-attn",
            upstream_fix="verl 0.7.0 imports it only on the remove-padding path (verl/utils/attention_utils.py); 0.9.1 "
                         "falls back to its own torch code there",
            fingerprint=(),
            make=_module,
            needless_check=flash_load.why_stand_in_is_needless,
        ),
    ),
)
