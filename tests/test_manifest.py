"""Tests of dashsel.manifest: loading, validation messages, writing, lazy loading."""

from __future__ import annotations

import functools
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashsel.arrays import save_npz
from dashsel.errors import DataError, LabelWarning, ManifestError
from dashsel.manifest import Manifest, load_manifest, save_pool, write_manifest
from dashsel.pool import ArraySplit, Pool
from dashsel.toy import make_toy_pool

SMALL = dict(n_groups=2, datasets_per_group=2, n_per_dataset=12, n_validation=9, n_test=9)

VALID = """\
[pool]
name = "example"

[[datasets]]
id = "a0"
group = "a"
path = "data/a0.npz"

[[datasets]]
id = "b0"
group = "b"
path = "data/b0.npz"

[local]
path = "data/local.npz"

[validation]
path = "data/val.npz"

[evaluator]
kind = "logistic"
"""


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a0", "b0", "local", "val"):
        save_npz(
            tmp_path / "data" / f"{name}.npz", ArraySplit(rng.normal(size=(6, 3)), np.arange(6) % 2)
        )
    return tmp_path


def _write(folder: Path, text: str) -> Path:
    path = folder / "manifest.toml"
    path.write_text(text)
    return path


def _manifest_error(folder: Path, text: str) -> str:
    path = _write(folder, text)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{path.resolve()}: "), msg
    return msg


# --- loading -----------------------------------------------------------------------------------
def test_valid_manifest_loads_lazily(folder):
    m = load_manifest(_write(folder, VALID))
    assert isinstance(m, Manifest)
    assert m.pool.name == "example"
    assert m.pool.dataset_ids == ("a0", "b0")
    assert m.pool.hierarchy.groups == ("a", "b")
    assert m.evaluator == {"kind": "logistic"}
    assert m.raw["pool"]["name"] == "example"
    # nothing read yet; loaders are partials (picklable), sources are resolved files
    assert all(e.data is None for e in m.pool.entries)
    assert all(isinstance(e.loader, functools.partial) for e in m.pool.entries)
    assert m.pool.entry("a0").source == str((folder / "data" / "a0.npz").resolve())
    assert m.pool.dataset("a0").X.shape == (6, 3)
    assert m.pool.local.X.shape == (6, 3)
    assert not m.pool.has_split("test")


def test_pool_with_lazy_loaders_pickles(folder):
    m = load_manifest(_write(folder, VALID))
    pool = pickle.loads(pickle.dumps(m.pool))
    np.testing.assert_array_equal(pool.dataset("b0").X, m.pool.dataset("b0").X)


def test_evaluator_defaults_to_logistic(folder):
    m = load_manifest(_write(folder, VALID.replace('[evaluator]\nkind = "logistic"\n', "")))
    assert m.evaluator == {"kind": "logistic"}


def test_csv_datasets_with_label_columns(folder):
    (folder / "data" / "c.csv").write_text("f1,f2,f3,cls\n1,2,3,0\n4,5,6,1\n")
    text = VALID.replace('name = "example"', 'name = "example"\nlabel_column = "cls"')
    text = text.replace('path = "data/b0.npz"', 'path = "data/c.csv"')
    m = load_manifest(_write(folder, text))
    assert m.pool.dataset("b0").y.tolist() == [0, 1]


def test_per_file_label_column(folder):
    (folder / "data" / "c.csv").write_text("f1,f2,f3,target\n1,2,3,0\n")
    text = VALID.replace('path = "data/b0.npz"', 'path = "data/c.csv"\nlabel_column = "target"')
    assert load_manifest(_write(folder, text)).pool.dataset("b0").X.shape == (1, 3)


def test_meta_is_kept(folder):
    text = VALID.replace('group = "a"', 'group = "a"\nmeta = { relevant = true, note = "x" }')
    m = load_manifest(_write(folder, text))
    assert m.pool.entry("a0").meta == {"relevant": True, "note": "x"}
    assert m.pool.entry("b0").meta == {}


def test_table_kind_allows_datasets_without_files(tmp_path):
    text = (
        '[pool]\nname = "replay"\n[evaluator]\nkind = "table"\npath = "r.csv"\n'
        '[[datasets]]\nid = "a"\ngroup = "g"\n[[datasets]]\nid = "b"\ngroup = "g"\n'
    )
    m = load_manifest(_write(tmp_path, text))
    assert not any(e.has_data for e in m.pool.entries)
    assert not m.pool.has_arrays


def test_many_datasets_do_not_read_arrays(folder):
    rows = "".join(
        f'[[datasets]]\nid = "d{k}"\ngroup = "g{k % 10}"\npath = "data/a0.npz"\n'
        for k in range(2000)
    )
    text = '[pool]\nname = "big"\n[local]\npath = "data/local.npz"\n'
    text += '[validation]\npath = "data/val.npz"\n' + rows
    m = load_manifest(_write(folder, text))
    assert len(m.pool) == 2000 and m.pool.hierarchy.n_groups == 10
    assert all(e.data is None for e in m.pool.entries)


# --- bad manifests -----------------------------------------------------------------------------
BAD = [
    ("syntax", VALID.replace('name = "example"', "name = "), "TOML syntax error", "line 2"),
    ("no pool", VALID.replace('[pool]\nname = "example"\n', ""), "pool:", "missing [pool]"),
    ("no name", VALID.replace('name = "example"', ""), "pool.name:", "missing"),
    (
        "no datasets",
        VALID.split("[[datasets]]")[0] + '[local]\npath = "data/local.npz"\n'
        '[validation]\npath = "data/val.npz"\n',
        "datasets:",
        "missing",
    ),
    ("missing id", VALID.replace('id = "a0"\n', ""), "datasets[0].id:", "missing"),
    ("missing group", VALID.replace('group = "b"\n', ""), "datasets[1].group:", "missing"),
    (
        "duplicate id",
        VALID.replace('id = "b0"', 'id = "a0"'),
        "datasets[1].id:",
        "duplicate dataset id 'a0'",
    ),
    ("id type", VALID.replace('id = "a0"', "id = 7"), "datasets[0].id:", "must be a string"),
    ("empty id", VALID.replace('id = "a0"', 'id = ""'), "datasets[0].id:", "must not be empty"),
    (
        "top typo",
        VALID.replace("[evaluator]", "[evaluater]"),
        "evaluater:",
        "did you mean 'evaluator'",
    ),
    (
        "dataset typo",
        VALID.replace('group = "a"', 'group = "a"\ngrup = "x"'),
        "datasets[0].grup:",
        "did you mean 'group'",
    ),
    (
        "split typo",
        VALID.replace('path = "data/val.npz"', 'path = "data/val.npz"\nlabel_col = "y"'),
        "validation.label_col:",
        "did you mean 'label_column'",
    ),
    (
        "unknown kind",
        VALID.replace('kind = "logistic"', 'kind = "xgboost"'),
        "evaluator.kind:",
        "unknown kind 'xgboost'",
    ),
    (
        "evaluator key",
        VALID.replace('kind = "logistic"', 'kind = "logistic"\nlr = 0.1'),
        "evaluator.lr:",
        "unknown key",
    ),
    (
        "evaluator type",
        VALID.replace('kind = "logistic"', 'kind = "logistic"\nC = "big"'),
        "evaluator.C:",
        "positive number",
    ),
    (
        "missing file",
        VALID.replace("data/b0.npz", "data/zz.npz"),
        "datasets[1].path:",
        "dataset 'b0': no such file",
    ),
    (
        "extension",
        VALID.replace("data/b0.npz", "data/b0.txt"),
        "datasets[1].path:",
        "unknown file extension",
    ),
    (
        "no path",
        VALID.replace('path = "data/b0.npz"\n', ""),
        "datasets[1].path:",
        "'logistic' trains models",
    ),
    (
        "no local",
        VALID.replace('[local]\npath = "data/local.npz"\n', ""),
        "local:",
        "missing [local]",
    ),
    (
        "no validation",
        VALID.replace('[validation]\npath = "data/val.npz"\n', ""),
        "validation:",
        "missing [validation]",
    ),
    (
        "datasets table",
        VALID.replace("[[datasets]]", "[datasets]", 1).split("[[datasets]]")[0],
        "datasets:",
        "array of tables",
    ),
    (
        "meta type",
        VALID.replace('group = "a"', 'group = "a"\nmeta = 3'),
        "datasets[0].meta:",
        "must be a table",
    ),
    (
        "pool type",
        'pool = "x"\n' + VALID.split('[pool]\nname = "example"\n')[1],
        "pool:",
        "must be a table",
    ),
]


@pytest.mark.parametrize(("case", "text", "key", "problem"), BAD, ids=[b[0] for b in BAD])
def test_bad_manifest_names_file_and_key(folder, case, text, key, problem):
    msg = _manifest_error(folder, text)
    assert key in msg, msg
    assert problem in msg, msg


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest file"):
        load_manifest(tmp_path / "nope.toml")


def test_missing_file_message_names_resolved_file(folder):
    msg = _manifest_error(folder, VALID.replace("data/b0.npz", "data/zz.npz"))
    assert str((folder / "data" / "zz.npz").resolve()) in msg


# --- data problems found when arrays are read ---------------------------------------------------
def test_rows_outside_the_task_are_dropped_with_a_warning_naming_the_dataset(folder):
    save_npz(folder / "data" / "b0.npz", ArraySplit(np.ones((2, 3)), np.array([0, 7])))
    m = load_manifest(_write(folder, VALID))
    with pytest.warns(LabelWarning, match=r"dataset 'b0'.*dropped 1 of 2 rows.*\[7\]"):
        m.check()
    assert m.pool.dataset("b0").y.tolist() == [0]


def test_dataset_with_no_task_rows_names_the_dataset(folder):
    save_npz(folder / "data" / "b0.npz", ArraySplit(np.ones((2, 3)), np.array([7, 8])))
    m = load_manifest(_write(folder, VALID))
    with pytest.raises(DataError) as info:
        m.check()
    assert "dataset 'b0'" in str(info.value) and "[7, 8]" in str(info.value)


def test_bad_array_file_names_dataset_and_file(folder):
    np.savez(folder / "data" / "b0.npz", X=np.ones((2, 3)))  # no y
    m = load_manifest(_write(folder, VALID))
    with pytest.raises(DataError) as info:
        m.pool.dataset("b0")
    msg = str(info.value)
    assert msg.startswith("dataset 'b0': ") and "b0.npz" in msg and "missing array 'y'" in msg


def test_check_passes_on_good_data(folder):
    load_manifest(_write(folder, VALID)).check()


# --- writing -----------------------------------------------------------------------------------
def test_save_pool_round_trip(tmp_path):
    pool = make_toy_pool(**SMALL)
    path = save_pool(pool, tmp_path, evaluator={"kind": "logistic", "C": 0.5})
    m = load_manifest(path)
    assert m.pool.name == pool.name
    assert m.pool.dataset_ids == pool.dataset_ids
    assert m.pool.hierarchy == pool.hierarchy
    assert m.evaluator == {"kind": "logistic", "C": 0.5}
    for e in pool.entries:
        got = m.pool.entry(e.id)
        assert got.meta == e.meta
        np.testing.assert_array_equal(got.load().X, e.load().X)
        np.testing.assert_array_equal(got.load().y, e.load().y)
    for name in ("local", "validation", "test"):
        np.testing.assert_array_equal(m.pool.split(name).X, pool.split(name).X)


def test_save_pool_with_awkward_ids(tmp_path):
    pool = Pool.from_arrays(
        {"a/b": (np.ones((2, 2)), [0, 1]), "A_b": (np.zeros((2, 2)), [0, 1])},
        {"a/b": "g", "A_b": "g"},
        local=(np.ones((2, 2)), [0, 1]),
        validation=(np.ones((2, 2)), [0, 1]),
    )
    m = load_manifest(save_pool(pool, tmp_path))
    assert m.pool.dataset("a/b").X.sum() == 4 and m.pool.dataset("A_b").X.sum() == 0


text_st = st.text(
    max_size=8,
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
)


@settings(max_examples=30, deadline=None)
@given(ids=st.lists(text_st, min_size=1, max_size=4, unique=True), group=text_st, name=text_st)
def test_write_manifest_round_trips_any_text(ids, group, name):
    doc = {
        "pool": {"name": name},
        "evaluator": {"kind": "table", "path": "r.csv"},
        "datasets": [{"id": d, "group": group, "meta": {"k": d, "x": 1.5}} for d in ids],
    }
    with tempfile.TemporaryDirectory() as tmp:
        m = load_manifest(write_manifest(Path(tmp) / "m.toml", doc))
    assert m.pool.name == name
    assert m.pool.dataset_ids == tuple(ids)
    assert m.pool.entries[0].meta == {"k": ids[0], "x": 1.5}


def test_path_under_an_unknown_users_home_is_one_line(folder):
    """Found by tests/test_fuzz_manifest.py: ``~nosuchuser/...`` raised a raw RuntimeError."""
    bad = VALID.replace('path = "', 'path = "~dashsel-no-such-user/', 1)
    msg = _manifest_error(folder, bad)
    assert "dashsel-no-such-user" in msg


def test_a_key_with_a_newline_is_named_on_one_line(folder) -> None:
    # Found by the fuzz suite: TOML allows any quoted key, "\n" included.
    msg = _manifest_error(folder, '[pool]\nname = "p"\n"\\n" = 1\n')
    assert "pool.'\\n': unknown key" in msg


def test_a_file_name_too_long_is_no_such_file(folder) -> None:
    # Found by the fuzz suite: Path.is_file() raises OSError (ENAMETOOLONG) instead of False.
    text = (
        '[pool]\nname = "p"\n[[datasets]]\nid = "a"\ngroup = "g"\n'
        f'path = "{"A" * 300}.npz"\n'
        '[local]\npath = "data/local.npz"\n[validation]\npath = "data/val.npz"\n'
    )
    assert "no such file" in _manifest_error(folder, text)
