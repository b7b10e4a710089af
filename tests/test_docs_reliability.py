"""docs/reliability.md names tests that exist.

Each guarantee on that page names the tests that would fail if it were broken; a test renamed
or removed later fails here until the page is updated. Checked: every ``tests/FILE.py::name``
reference, including the short ``::name`` ones that follow it in the same table cell or
paragraph and refer to the same file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RELIABILITY = ROOT / "docs" / "reliability.md"


def references(text: str) -> list[tuple[str, str]]:
    """``(file, test name)`` pairs; a bare ``::name`` refers to the last file named before it
    in the same block (table cell or paragraph)."""
    pairs: list[tuple[str, str]] = []
    for block in re.split(r"\n\s*\n|\|", text):
        current: str | None = None
        for m in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", block):
            file, name = m.group(1), m.group(2)
            if file:
                current = file
            if name and current:
                pairs.append((current, name))
    return pairs


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_references_are_found() -> None:
    assert len(references(RELIABILITY.read_text(encoding="utf-8"))) > 20


def test_every_named_test_exists() -> None:
    missing = []
    for file, name in references(RELIABILITY.read_text(encoding="utf-8")):
        path = ROOT / file
        if not path.is_file() or name not in defined_tests(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"


def test_the_check_can_fail() -> None:
    text = "`tests/test_run.py::test_bookkeeping`, `::test_no_such_test_here`"
    pairs = references(text)
    assert ("tests/test_run.py", "test_no_such_test_here") in pairs
    assert "test_no_such_test_here" not in defined_tests(ROOT / "tests" / "test_run.py")
