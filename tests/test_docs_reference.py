"""docs/reference.md stays true to the code.

* every TOML block of docs/reference.md and README.md loads with ``load_manifest`` (fragments
  are merged into a small base manifest first; the data files they name are written here);
* every manifest key the code accepts, every evaluator kind and its keys, and every
  ``DASHSEL_*`` environment variable appear in docs/reference.md, in the right section. The
  keys are collected from the code itself (the "unknown key; use one of ..." message of the
  table's ``known_keys`` check), so a key added later fails here until it is documented;
* every command and option of the ``dashsel`` CLI has its section and a line in it.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dashsel.arrays import save_npz
from dashsel.errors import ManifestError, MissingExtraError
from dashsel.evaluators import evaluator_kinds, make_evaluator, validate_evaluator_config
from dashsel.manifest import SPLITS, load_manifest, write_manifest
from dashsel.pool import ArraySplit

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference.md"
README = ROOT / "README.md"
#: A key no table takes and that is close to none (so the error lists every allowed key).
PROBE = "zzqx_probe_key"

BASE: dict[str, Any] = {
    "pool": {"name": "docs-test"},
    "evaluator": {"kind": "logistic"},
    "local": {"path": "data/local.npz"},
    "validation": {"path": "data/validation.npz"},
    "test": {"path": "data/test.npz"},
    "datasets": [
        {"id": "a", "group": "g1", "path": "data/a.npz"},
        {"id": "b", "group": "g2", "path": "data/b.npz"},
    ],
}


# --- helpers ---------------------------------------------------------------------------------
def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", _text(path), flags=re.M | re.S)


def _section(text: str, heading: str) -> str:
    """The text under the first heading line containing ``heading``, up to the next heading
    of the same or a higher level."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#+) ", line)
        if m and heading in line:
            level = len(m.group(1))
            body = []
            for rest in lines[i + 1 :]:
                n = re.match(r"^(#+) ", rest)
                if n and len(n.group(1)) <= level:
                    break
                body.append(rest)
            return "\n".join(body)
    raise AssertionError(f"docs/reference.md has no heading containing {heading!r}")


def _row_keys(section: str) -> set[str]:
    """Keys that start a row of a markdown table: ``| `key` | ...``."""
    return set(re.findall(r"^\|\s*`([^`]+)`", section, flags=re.M))


def _allowed(exc: BaseException) -> list[str]:
    m = re.search(r"unknown key; use one of (.+)$", str(exc))
    assert m, f"not an unknown-key error: {exc}"
    return [k.strip() for k in m.group(1).split(",")]


def _write_split(path: Path, label: str, x_key: str, y_key: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.arange(20) % 2
    X = rng.normal(size=(20, 4)) + y[:, None]
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npz":
        if (x_key, y_key) == ("X", "y"):
            save_npz(path, ArraySplit(X, y))
        else:
            np.savez(path, **{x_key: X, y_key: y})
        return
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(4)])
    frame[label] = y
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        pytest.importorskip("pyarrow")
        frame.to_parquet(path, index=False)


def _materialise(doc: dict[str, Any], folder: Path) -> Path:
    """Write every data file ``doc`` names into ``folder`` and the manifest itself."""
    default_label = doc.get("pool", {}).get("label_column", "label")
    tables = [doc[s] for s in SPLITS if isinstance(doc.get(s), dict)]
    tables += [d for d in doc.get("datasets", []) if isinstance(d, dict)]
    for seed, table in enumerate(tables):
        if "path" in table:
            _write_split(
                folder / table["path"],
                table.get("label_column", default_label),
                table.get("x_key", "X"),
                table.get("y_key", "y"),
                seed,
            )
    evaluator = doc.get("evaluator", {})
    if evaluator.get("kind") == "table":
        ids = [d["id"] for d in doc["datasets"]]
        column = evaluator.get("dataset_column", "dataset")
        reward = evaluator.get("reward_column", "reward")
        rows = pd.DataFrame({column: ids * 2, reward: np.linspace(0.5, 0.9, 2 * len(ids))})
        (folder / evaluator["path"]).parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(folder / evaluator["path"], index=False)
    return write_manifest(folder / "manifest.toml", doc)


def _load(doc: dict[str, Any], folder: Path) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    return load_manifest(_materialise(doc, folder))


# --- (a) every TOML example loads ------------------------------------------------------------
TOML_BLOCKS = [
    pytest.param(path, i, block, id=f"{path.name}-{i}")
    for path in (REFERENCE, README)
    for i, block in enumerate(_blocks(path, "toml"))
]


def test_there_are_examples() -> None:
    assert len(_blocks(REFERENCE, "toml")) >= 8
    assert _blocks(README, "toml")


@pytest.mark.parametrize(("path", "index", "block"), TOML_BLOCKS)
def test_toml_example_loads(path: Path, index: int, block: str, tmp_path: Path) -> None:
    fragment = tomllib.loads(block)
    # A fragment replaces the base manifest's tables; a full manifest stands alone.
    doc = fragment if "pool" in fragment and "datasets" in fragment else {**BASE, **fragment}
    if doc.get("evaluator", {}).get("kind") == "table":
        for split in SPLITS:  # replay pools need no data
            if split not in fragment:
                doc.pop(split, None)
    m = _load(copy.deepcopy(doc), tmp_path)
    assert m.pool.name == doc["pool"]["name"]
    assert len(m.pool.dataset_ids) == len(doc["datasets"])
    try:  # building checks what loading leaves to it (estimator params, torch keys)
        m.make_evaluator()
    except MissingExtraError:  # torch not installed: its keys were checked before the import
        assert doc["evaluator"]["kind"] == "torch"
    if m.pool.has_split("local"):
        m.check()


def test_a_wrong_example_would_fail(tmp_path: Path) -> None:
    """The loader the examples go through does refuse a wrong key (the test can fail)."""
    doc = copy.deepcopy(BASE)
    doc["evaluator"] = {"kind": "logistic", "max_iters": 10}
    with pytest.raises(ManifestError, match="did you mean 'max_iter'"):
        _load(doc, tmp_path)


# --- (b) every manifest key is documented ----------------------------------------------------
def _probe(table: str | None, tmp_path: Path) -> list[str]:
    """The keys the code accepts in ``table`` (None: the top level), from its error."""
    doc = copy.deepcopy(BASE)
    if table is None:
        doc[PROBE] = 1
    elif table == "datasets":
        doc["datasets"][0][PROBE] = 1
    else:
        doc.setdefault(table, {})[PROBE] = 1
    with pytest.raises(ManifestError) as info:
        _load(doc, tmp_path / (table or "top"))
    return _allowed(info.value)


def _kind_keys(kind: str, tmp_path: Path) -> list[str]:
    """The keys evaluator ``kind`` accepts: checked when parsing, or else when building."""
    config = {"kind": kind, PROBE: 1}
    try:
        validate_evaluator_config(config)
    except ManifestError as exc:
        return _allowed(exc)
    m = _load(copy.deepcopy(BASE), tmp_path / f"kind-{kind}")
    with pytest.raises(ManifestError) as info:
        make_evaluator(config, m.pool, tmp_path)
    return _allowed(info.value)


def test_top_level_keys_are_documented(tmp_path: Path) -> None:
    top = _probe(None, tmp_path)
    assert {"pool", "datasets", "evaluator"} <= set(top)
    documented = _row_keys(_section(_text(REFERENCE), "### Top level"))
    assert set(top) <= documented, f"undocumented top-level keys: {set(top) - documented}"


def test_table_keys_are_documented(tmp_path: Path) -> None:
    text = _text(REFERENCE)
    top = _probe(None, tmp_path)
    for table in top:
        if table == "evaluator":
            continue  # per kind, below
        heading = f"`[[{table}]]`" if table == "datasets" else f"`[{table}]`"
        keys = _probe(table, tmp_path)
        documented = _row_keys(_section(text, heading))
        missing = set(keys) - documented
        assert not missing, f"[{table}] keys missing from docs/reference.md: {sorted(missing)}"


def test_every_evaluator_kind_and_key_is_documented(tmp_path: Path) -> None:
    text = _text(REFERENCE)
    kinds = evaluator_kinds()
    assert {"logistic", "sklearn", "table", "torch"} <= set(kinds)
    assert "kind" in _row_keys(_section(text, "### `[evaluator]`"))
    for kind in kinds:
        keys = _kind_keys(kind, tmp_path)
        assert keys, kind
        documented = _row_keys(_section(text, f'`kind = "{kind}"`'))
        missing = set(keys) - documented
        assert not missing, f"evaluator kind {kind!r} keys undocumented: {sorted(missing)}"


def test_every_environment_variable_is_documented() -> None:
    names = set()
    for file in (ROOT / "src").rglob("*.py"):
        names |= set(re.findall(r"\bDASHSEL_[A-Z_]+\b", _text(file)))
    assert "DASHSEL_MAX_ARRAY_BYTES" in names
    documented = _row_keys(_section(_text(REFERENCE), "## 2. Environment variables"))
    assert names <= documented, f"undocumented environment variables: {names - documented}"


# --- (c) every CLI command and option is documented ------------------------------------------
def _commands() -> dict[str, Any]:
    """Every command of the ``dashsel`` app by its path (``"run"``, ``"data example"``).

    Duck-typed (``commands``, ``param_type_name``): recent typer vendors its own click.
    """
    import typer

    from dashsel.cli import app

    out: dict[str, Any] = {}

    def walk(cmd: Any, path: str) -> None:
        out[path] = cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return out


def test_every_command_and_option_is_documented() -> None:
    text = _text(REFERENCE)
    commands = _commands()
    assert {"run", "check", "report", "data example"} <= set(commands)
    for path, cmd in commands.items():
        if getattr(cmd, "commands", None) and path:  # a group: its commands have sections
            assert f"`dashsel {path} " in text, f"command group `dashsel {path}` undocumented"
            continue
        section = _section(text, f"### `dashsel {path}`" if path else "### `dashsel`")
        for param in cmd.params:
            if param.param_type_name == "argument":
                name = (param.name or "").upper()
                assert f"`{name}`" in section, f"`dashsel {path}`: argument {name} undocumented"
                continue
            for opt in [*param.opts, *param.secondary_opts]:
                if opt == "--help":
                    continue
                assert f"`{opt}`" in section, f"`dashsel {path}`: option {opt} undocumented"
        assert "```bash\ndashsel " in section, f"`dashsel {path}` has no example"


def test_the_cli_check_can_fail() -> None:
    """A made-up option is not in any section (the check above is not vacuous)."""
    section = _section(_text(REFERENCE), "### `dashsel run`")
    assert "`--top-k`" in section
    assert "`--no-such-option`" not in section


def _example_commands() -> list[list[str]]:
    """The ``dashsel ...`` command lines of the bash examples, as argument lists."""
    import shlex

    out = []
    for block in _blocks(REFERENCE, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
                words = words[1:]
            if words and words[0] == "dashsel":
                out.append(words[1:])
    return out


def test_cli_examples_parse_against_the_real_cli() -> None:
    """Every example names a real command and only options it takes, with valid values."""
    commands = _commands()
    examples = _example_commands()
    assert len(examples) >= len([p for p in commands if p and p != "data"])
    seen = set()
    for args in examples:
        path, rest = "", list(args)
        while rest and f"{path} {rest[0]}".strip() in commands:
            path = f"{path} {rest[0]}".strip()
            rest = rest[1:]
        seen.add(path)
        if not path:
            assert rest == ["--version"], args
            continue
        cmd = commands[path]
        cmd.make_context(f"dashsel {path}", rest)  # raises on a bad option or value
    leaves = {p for p, c in commands.items() if p and not getattr(c, "commands", None)}
    assert leaves <= seen, f"commands without an example: {sorted(leaves - seen)}"
