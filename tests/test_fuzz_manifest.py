"""Fuzz pool manifests (issue 10): random TOML documents built from the manifest schema, then
mutated (wrong types, unknown keys, missing tables, odd ids, duplicate ids, missing or damaged
files, random ``[evaluator]`` tables), through ``load_manifest``, ``make_evaluator``,
``Manifest.check`` and ``dashsel check``.

Every failure must be a :class:`~dashsel.errors.DashselError` with a one-line message, the CLI
must exit 0 or 2 without a traceback, and a module named by a manifest outside the estimator
allow-list is never imported.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dashsel.cli import app
from dashsel.errors import DashselError
from dashsel.manifest import load_manifest


def fuzz_examples(full: int, small: int) -> int:
    """``full`` cases under the ``fuzz`` profile (``make fuzz``), ``small`` otherwise."""
    return full if settings.get_current_profile_name() == "fuzz" else small


runner = CliRunner()
SENTINEL = "dashsel_fuzz_sentinel"

# --- the files a manifest may name ----------------------------------------------------------


def _write_files(root: Path) -> None:
    rng = np.random.default_rng(0)
    data = root / "data"
    data.mkdir(parents=True)

    def npz(name: str, X, y, **extra) -> None:
        np.savez(data / name, X=X, y=y, **extra)

    y = np.arange(20) % 2
    npz("ok0.npz", rng.normal(size=(20, 3)), y)
    npz("ok1.npz", rng.normal(size=(20, 3)), y)
    npz("ok2.npz", rng.normal(size=(20, 3)), y)
    npz("wide.npz", rng.normal(size=(20, 5)), y)  # width differs from the others
    npz("cube.npz", rng.normal(size=(20, 3, 2)), y)  # 3-D features
    npz("nan.npz", np.full((20, 3), np.nan), y)
    npz("short_y.npz", rng.normal(size=(20, 3)), y[:5])
    npz("one_class.npz", rng.normal(size=(20, 3)), np.zeros(20, dtype=int))
    npz("strlabels.npz", rng.normal(size=(20, 3)), np.array(["a", "b"] * 10))
    np.savez(data / "no_y.npz", X=rng.normal(size=(20, 3)))
    np.savez(data / "empty.npz")
    np.savez(data / "object.npz", X=np.array([{"a": 1}] * 20, dtype=object), y=y)  # needs pickle
    npz("zero_rows.npz", np.zeros((0, 3)), np.zeros(0, dtype=int))
    good = (data / "ok0.npz").read_bytes()
    (data / "truncated.npz").write_bytes(good[: len(good) // 2])
    (data / "garbage.npz").write_bytes(rng.bytes(300))
    flipped = bytearray(good)
    flipped[len(flipped) // 2 : len(flipped) // 2 + 16] = rng.bytes(16)
    (data / "flipped.npz").write_bytes(bytes(flipped))
    (data / "empty_file.npz").write_bytes(b"")
    np.save(data / "plain.npy", rng.normal(size=(20, 3)))
    (data / "ok.csv").write_text(
        "a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20))
    )
    (data / "nolabel.csv").write_text("a,b\n1,2\n3,4\n")
    (data / "text.csv").write_text("a,label\nx,0\ny,1\n")
    (data / "empty.csv").write_text("")
    (data / "bad.csv").write_bytes(b'a,"b\n\xff\xfe,1\x00\n')
    (data / "garbage.parquet").write_bytes(rng.bytes(200))
    (data / "dir.npz").mkdir()
    (data / "notes.txt").write_text("not data")
    (root / "rewards.csv").write_text(
        "dataset,reward\n" + "".join(f"d{i},{0.1 * i}\n" for i in range(4))
    )
    (root / "rewards_bad.csv").write_text("dataset,reward\nd0,abc\nd1,inf\nd2,\n")
    (root / "rewards_cols.csv").write_text("x,y\n1,2\n")


FILES = [
    "data/ok0.npz", "data/ok1.npz", "data/ok2.npz", "data/wide.npz", "data/cube.npz",
    "data/nan.npz", "data/short_y.npz", "data/one_class.npz", "data/strlabels.npz",
    "data/no_y.npz", "data/empty.npz", "data/object.npz", "data/zero_rows.npz",
    "data/truncated.npz", "data/garbage.npz", "data/flipped.npz", "data/empty_file.npz",
    "data/plain.npy", "data/ok.csv", "data/nolabel.csv", "data/text.csv", "data/empty.csv",
    "data/bad.csv", "data/garbage.parquet", "data/dir.npz", "data/notes.txt",
    "data/missing.npz", "data/missing.csv", "missing/", "", ".", "..", "/", "/dev/null",
    "/dev/null.npz", "data/ok0.npz\x00x", "data/../data/ok1.npz", "~/nope.npz", "data/ok0.NPZ",
    "data\\ok0.npz", "rewards.csv",
]  # fmt: skip
GOOD = ["data/ok0.npz", "data/ok1.npz", "data/ok2.npz"]

# --- TOML writing (by hand: any value, key or string must be expressible) --------------------


def _str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch) & 0xFFFF:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_str(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(doc: dict) -> str:
    lines = []
    for key, value in doc.items():  # scalars and inline values first (TOML requires it)
        if not isinstance(value, dict) and not (
            isinstance(value, list) and value and all(isinstance(x, dict) for x in value)
        ):
            lines.append(f"{_str(key)} = {_value(value)}")
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{_str(key)}]")
            lines += [f"{_str(k)} = {_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            for item in value:
                lines.append(f"[[{_str(key)}]]")
                lines += [f"{_str(k)} = {_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


# --- strategies --------------------------------------------------------------------------------
odd_text = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", " ", "\t", "a\x00b", "\x00", "ä", "😀", "a b", "\u200b", "A" * 300]),
)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(odd_text, inner, max_size=3)
    ),
    max_leaves=6,
)
ESTIMATORS = [
    "LogisticRegression",
    "sklearn.linear_model.LogisticRegression",
    "RandomForestClassifier",
    "sklearn.svm.SVC",
    "sklearn.dummy.DummyClassifier",
    "sklearn.linear_model.LinearRegression",  # a regressor
    "sklearn.base.BaseEstimator",
    "subprocess.Popen",
    "os.system",
    "builtins.eval",
    f"{SENTINEL}.Thing",
    f"{SENTINEL}:Thing",
    SENTINEL,
    "sklearn",
    "sklearn.",
    ".Thing",
    "sklearn.svm.SVC.fit",
]
evaluator_tables = st.one_of(
    st.just({"kind": "logistic"}),
    st.fixed_dictionaries(
        {"kind": st.just("logistic")},
        optional={"C": scalars, "max_iter": scalars, "bootstrap": scalars, "standardize": scalars},
    ),
    st.fixed_dictionaries(
        {"kind": st.just("sklearn"), "estimator": st.one_of(st.sampled_from(ESTIMATORS), odd_text)},
        optional={
            "params": st.one_of(
                st.dictionaries(
                    st.sampled_from(["C", "max_depth", "args", "n_estimators"]), values, max_size=2
                ),
                values,
            ),
            "bootstrap": scalars,
        },
    ),
    st.fixed_dictionaries(
        {"kind": st.just("table")},
        optional={
            "path": st.one_of(
                st.sampled_from(["rewards.csv", "rewards_bad.csv", "rewards_cols.csv"]),
                st.sampled_from(FILES),
                scalars,
            ),
            "dataset_column": st.one_of(st.just("dataset"), odd_text),
            "reward_column": st.one_of(st.just("reward"), scalars),
        },
    ),
    st.fixed_dictionaries({"kind": st.one_of(st.sampled_from(["torch", "Logistic", ""]), scalars)}),
    st.dictionaries(odd_text, values, max_size=3),
    values,
)


@st.composite
def documents(draw) -> dict:
    """A manifest built from the schema, then mutated."""
    n = draw(st.integers(1, 4))
    ids = [f"d{i}" for i in range(n)]
    doc: dict = {
        "pool": {"name": "fuzz"},
        # Deep copies: strategies such as st.just hand out the same object every time, and
        # the mutations below must not leak into later cases.
        "evaluator": copy.deepcopy(draw(evaluator_tables)),
        "local": {"path": "data/ok0.npz"},
        "validation": {"path": "data/ok1.npz"},
        "datasets": [
            {"id": ids[i], "group": f"g{i % 2}", "path": GOOD[i % len(GOOD)]} for i in range(n)
        ],
    }
    if draw(st.booleans()):
        doc["test"] = {"path": "data/ok2.npz"}
    for _ in range(draw(st.integers(0, 6))):
        _mutate(draw, doc)
    return doc


def _mutate(draw, doc: dict) -> None:
    tables = [k for k, v in doc.items() if isinstance(v, dict)]
    rows = doc["datasets"] if isinstance(doc.get("datasets"), list) else []
    rows = [r for r in rows if isinstance(r, dict)]
    what = draw(
        st.sampled_from(
            ["drop_top", "top_value", "unknown_top", "drop_key", "key_value", "unknown_key",
             "id", "dup_id", "path", "row_value", "split_path", "label_column", "meta",
             "no_datasets", "many_datasets"]
        )
    )  # fmt: skip
    if what == "drop_top" and doc:
        doc.pop(draw(st.sampled_from(sorted(doc))))
    elif what == "top_value" and doc:
        doc[draw(st.sampled_from(sorted(doc)))] = draw(values)
    elif what == "unknown_top":
        doc[draw(odd_text)] = draw(values)
    elif what == "drop_key" and tables:
        table = doc[draw(st.sampled_from(tables))]
        if table:
            table.pop(draw(st.sampled_from(sorted(table))))
    elif what == "key_value" and tables:
        table = doc[draw(st.sampled_from(tables))]
        table[draw(st.sampled_from([*sorted(table), "name", "path", "kind"]))] = draw(values)
    elif what == "unknown_key" and tables:
        doc[draw(st.sampled_from(tables))][draw(odd_text)] = draw(values)
    elif what == "id" and rows:
        draw(st.sampled_from(rows))["id"] = draw(odd_text)
    elif what == "dup_id" and len(rows) > 1:
        rows[1]["id"] = rows[0].get("id", "x")
    elif what == "path" and rows:
        draw(st.sampled_from(rows))["path"] = draw(st.one_of(st.sampled_from(FILES), scalars))
    elif what == "row_value" and rows:
        row = draw(st.sampled_from(rows))
        key = draw(st.sampled_from(["id", "group", "path", "x_key", "y_key", "meta", "extra"]))
        row[key] = draw(values)
    elif what == "split_path":
        split = draw(st.sampled_from(["local", "validation", "test"]))
        doc[split] = {"path": draw(st.one_of(st.sampled_from(FILES), scalars))}
    elif what == "label_column" and rows:
        draw(st.sampled_from(rows))["label_column"] = draw(st.one_of(st.just("b"), odd_text))
    elif what == "meta" and rows:
        draw(st.sampled_from(rows))["meta"] = draw(values)
    elif what == "no_datasets":
        doc["datasets"] = copy.deepcopy(draw(st.sampled_from([[], [1], "x", [[]]])))
    elif what == "many_datasets" and rows:
        doc["datasets"] = rows * draw(st.integers(2, 5))  # duplicate ids, more rows


raw_edits = st.one_of(
    st.none(),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-manifests")
    _write_files(root)
    # A module that must never be imported: on sys.path, so naming it would succeed.
    mods = tmp_path_factory.mktemp("sentinel")
    (mods / f"{SENTINEL}.py").write_text("class Thing:\n    pass\n")
    sys.path.insert(0, str(mods))
    yield root
    sys.path.remove(str(mods))


def _one_line(exc: BaseException) -> None:
    msg = str(exc)
    assert msg.strip(), f"{type(exc).__name__} with an empty message"
    assert "\n" not in msg and "\r" not in msg, f"multi-line message: {msg!r}"


@settings(
    max_examples=fuzz_examples(3200, 60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(doc=documents(), edit=raw_edits, via_cli=st.booleans())
def test_manifest_fuzz(root: Path, doc: dict, edit, via_cli: bool) -> None:
    text = to_toml(doc).encode("utf-8", "surrogatepass")
    if edit is not None and edit[0] == "truncate":
        text = text[: int(len(text) * edit[1])]
    elif edit is not None:
        at = int(len(text) * edit[1])
        text = text[:at] + edit[2] + text[at:]
    path = root / "manifest.toml"
    path.write_bytes(text)
    assert SENTINEL not in sys.modules

    api_error: DashselError | None = None
    try:
        m = load_manifest(path)
        m.make_evaluator()
        m.check()
    except DashselError as exc:
        _one_line(exc)
        api_error = exc
    assert SENTINEL not in sys.modules, "a module named by the manifest was imported"

    if via_cli:  # half the cases: the CLI costs more than the API
        res = runner.invoke(app, ["check", str(path)])
        out = res.output
        assert "Traceback" not in out, out
        assert res.exit_code in (0, 2), (res.exit_code, out, repr(res.exception))
        assert (res.exit_code == 2) == (api_error is not None), (out, api_error)
        if api_error is not None:
            assert len([ln for ln in out.splitlines() if ln.strip()]) == 1, out
        assert SENTINEL not in sys.modules


def test_toml_writer_round_trips(tmp_path: Path) -> None:
    """The fuzzer's TOML writer: what it writes parses back to the same document."""
    import tomllib

    doc = {
        "pool": {"name": 'a"b\\c\x00\n'},
        "x": [1, 2.5, True, "s"],
        "datasets": [{"id": "d", "meta": {"k": [1, {"z": "w"}]}}],
    }
    assert tomllib.loads(to_toml(doc)) == json.loads(json.dumps(doc))
