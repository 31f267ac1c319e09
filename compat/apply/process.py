"""Apply a report to this process: export its env (never replacing the user's values) and activate its patch sets."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Mapping, MutableMapping, cast

from . import env as envmod

if TYPE_CHECKING:
    from ..report.model import Report


def apply(rep: Report, environ: Mapping[str, str], *, export: bool = True, patches: bool = True) -> Report:
    """The report as this process now has it: `env_set`/`env_kept` from the export; patch sets activated when
    vLLM or transformers is installed (the engine is not even imported otherwise)."""
    if export:
        res = envmod.export(rep.resolved.env, cast(MutableMapping[str, str], environ))
        rep = replace(rep, env_set=res.set, env_kept=res.kept)
    if patches and rep.patched:
        from .. import patches as patchmod

        patchmod.activate(dict(rep.switches))
    return rep
