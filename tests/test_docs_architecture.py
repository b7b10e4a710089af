"""docs/architecture.md's "Where each concept lives" table matches the modules of src/dashsel.

Every module (and package) under ``src/dashsel`` must be named in the table, and every
``dashsel...`` name the table gives must be a module or package that exists, so a module added,
renamed or removed later fails here until the page is updated.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
SRC = ROOT / "src"
HEADING = "## Where each concept lives"


def table_modules(text: str) -> list[str]:
    """The module names in the last column of the table under ``HEADING``."""
    assert HEADING in text, f"docs/architecture.md has no {HEADING!r} section"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    names: list[str] = []
    for row in rows[2:]:  # skip the header and the |---| line
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        names += re.findall(r"`(dashsel(?:_bench)?(?:\.\w+)*)`", cells[-1])
    return names


def source_modules() -> set[str]:
    """Every module and package of the dashsel package, as dotted names."""
    out: set[str] = set()
    for path in (SRC / "dashsel").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.add(".".join(parts))
    return out


def exists(name: str) -> bool:
    base = SRC.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def test_table_parses_and_has_rows() -> None:
    names = table_modules(ARCHITECTURE.read_text(encoding="utf-8"))
    assert len(names) > 20
    assert "dashsel.run" in names


def test_every_module_is_in_the_table() -> None:
    listed = set(table_modules(ARCHITECTURE.read_text(encoding="utf-8")))
    missing = sorted(source_modules() - listed)
    assert not missing, f"modules missing from docs/architecture.md's table: {missing}"


def test_every_module_in_the_table_exists() -> None:
    names = table_modules(ARCHITECTURE.read_text(encoding="utf-8"))
    ghosts = sorted(n for n in names if not exists(n))
    assert not ghosts, f"docs/architecture.md's table names modules that do not exist: {ghosts}"


def test_no_module_is_listed_twice() -> None:
    names = table_modules(ARCHITECTURE.read_text(encoding="utf-8"))
    twice = sorted({n for n in names if names.count(n) > 1})
    assert not twice, f"listed more than once (one home per concept): {twice}"


def test_the_checks_can_fail() -> None:
    # The helpers see a missing and an invented module (so the tests above can fail).
    text = ARCHITECTURE.read_text(encoding="utf-8").replace("`dashsel.journal`", "`dashsel.nope`")
    names = set(table_modules(text))
    assert "dashsel.journal" in source_modules() - names
    assert not exists("dashsel.nope")
