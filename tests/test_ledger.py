"""docs/patches.md carries the ledger generated from the declared Patch fields (issue 14): regenerate with
`python -m compat patches --ledger --write docs/patches.md` after adding or changing a patch."""

from __future__ import annotations

from pathlib import Path

from compat.cli import main
from compat.patches import ledger
from compat.patches.engine import registry

DOC = Path(__file__).resolve().parent.parent / "docs" / "patches.md"


def test_docs_patches_md_ledger_is_current():
    text = DOC.read_text(encoding="utf-8")
    assert ledger.START in text, "docs/patches.md has no ledger block: run python -m compat patches --ledger --write"
    assert ledger.update(text, registry()) == text, (
        "docs/patches.md's ledger is stale: run `python -m compat patches --ledger --write docs/patches.md`")


def test_every_declared_patch_has_a_row_with_its_fields():
    table = ledger.render(registry())
    for ps in registry():
        for p in ps.patches:
            row = next(line for line in table.splitlines() if line.startswith(f"| `{p.id}` "))
            assert p.target in row and ps.name in row


def test_cli_prints_and_writes_the_ledger(capsys, tmp_path):
    assert main(["patches", "--ledger"]) == 0
    assert capsys.readouterr().out == ledger.render(registry())
    doc = tmp_path / "p.md"
    doc.write_text("# x\n")
    assert main(["patches", "--ledger", "--write", str(doc)]) == 0
    assert ledger.START in doc.read_text() and ledger.update(doc.read_text(), registry()) == doc.read_text()
    assert main(["patches", "--write", str(doc)]) == 2
