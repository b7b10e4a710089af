"""Tests of dashsel.evaluators.table: the replay rule and the error messages."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashsel.errors import DataError, ManifestError, UnknownDatasetError
from dashsel.evaluators import TableEvaluator, make_evaluator
from dashsel.hierarchy import Hierarchy
from dashsel.manifest import load_manifest
from dashsel.pool import Pool
from dashsel.testing import EvaluatorConformance
from dashsel.toy import write_toy_table
from dashsel.trial import TrialSpec


def spec(dataset_id: str, pull: int, seed: int = 0) -> TrialSpec:
    return TrialSpec(number=pull, dataset_id=dataset_id, seed=seed, pull=pull)


@pytest.fixture()
def table(tmp_path):
    path = tmp_path / "rewards.csv"
    path.write_text("dataset,reward,seed\na,0.1,0\nb,0.5,0\na,0.2,1\na,0.3,2\nb,0.6,1\n")
    return path


def _error(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        TableEvaluator(path, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_kth_pull_gets_kth_row_cycling(table):
    ev = TableEvaluator(table)
    assert [ev.evaluate(spec("a", k)) for k in range(7)] == [0.1, 0.2, 0.3, 0.1, 0.2, 0.3, 0.1]
    assert [ev.evaluate(spec("b", k)) for k in range(3)] == [0.5, 0.6, 0.5]
    # the seed plays no part
    assert ev.evaluate(spec("a", 1, seed=99)) == 0.2
    assert not ev.can_train


@settings(max_examples=50, deadline=None)
@given(
    rewards=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=6),
    pull=st.integers(0, 100),
)
def test_cycling_rule(rewards, pull):
    frame = pd.DataFrame({"dataset": ["x"] * len(rewards), "reward": rewards})
    ev = TableEvaluator(frame)
    assert ev.evaluate(spec("x", pull)) == rewards[pull % len(rewards)]


def test_extras(table):
    ev = TableEvaluator(table)
    assert ev.dataset_ids == ("a", "b")
    assert ev.rewards("a").tolist() == [0.1, 0.2, 0.3]
    assert ev.mean_rewards() == pytest.approx({"a": 0.2, "b": 0.55})


def test_ids_stay_text(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("dataset,reward\n007,1.0\n7,2.0\n")
    ev = TableEvaluator(path)
    assert ev.evaluate(spec("007", 0)) == 1.0 and ev.evaluate(spec("7", 0)) == 2.0


def test_custom_columns(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("name,acc\na,0.7\n")
    assert (
        TableEvaluator(path, dataset_column="name", reward_column="acc").evaluate(spec("a", 0))
        == 0.7
    )


def test_nan_rewards_load_and_come_back_as_nan(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("dataset,reward\na,\na,0.5\nb,nan\n")
    ev = TableEvaluator(path)
    assert math.isnan(ev.evaluate(spec("a", 0)))
    assert ev.evaluate(spec("a", 1)) == 0.5
    assert math.isnan(ev.evaluate(spec("b", 0)))
    assert math.isnan(ev.mean_rewards()["b"])


@pytest.mark.parametrize("column", ["dataset", "reward"])
def test_missing_column(tmp_path, column):
    path = tmp_path / "r.csv"
    frame = pd.DataFrame({"dataset": ["a"], "reward": [1.0]}).drop(columns=column)
    frame.to_csv(path, index=False)
    assert f"missing column {column!r}" in _error(path)


def test_non_numeric_reward_names_the_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("dataset,reward\na,0.5\nb,high\n")
    msg = _error(path)
    assert "column 'reward' is not a number on line 3" in msg and "'high'" in msg


def test_non_numeric_reward_in_frame_names_the_row():
    frame = pd.DataFrame({"dataset": ["a", "b"], "reward": [0.5, "oops"]})
    with pytest.raises(DataError, match="not a number on row 1"):
        TableEvaluator(frame)


def test_empty_dataset_id(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("dataset,reward\n,0.5\n")
    assert "column 'dataset' is empty on line 2" in _error(path)


def test_missing_and_empty_files(tmp_path):
    assert "no such reward table" in _error(tmp_path / "nope.csv")
    (tmp_path / "e.csv").write_text("")
    assert "empty reward table" in _error(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("dataset,reward\n")
    assert "has no rows" in _error(tmp_path / "h.csv")


def test_check_pool_names_the_missing_dataset(table):
    ev = TableEvaluator(table)
    ev.check_pool(Pool.replay_only(Hierarchy(["a", "b"], ["g", "g"])))
    pool = Pool.replay_only(Hierarchy(["a", "b", "c", "d"], ["g", "g", "h", "h"]))
    with pytest.raises(DataError, match=r"no rewards for dataset 'c' and 1 more"):
        ev.check_pool(pool)


def test_unknown_dataset_at_evaluate(table):
    with pytest.raises(UnknownDatasetError, match="no rewards for dataset 'zz'"):
        TableEvaluator(table).evaluate(spec("zz", 0))


def test_describe_hashes_the_file(table):
    d = TableEvaluator(table).describe()
    assert d["kind"] == "table" and d["path"] == str(table)
    assert d["sha256"] == hashlib.sha256(table.read_bytes()).hexdigest()
    frame = pd.DataFrame({"dataset": ["a"], "reward": [1.0]})
    assert TableEvaluator(frame).describe()["path"] is None
    other = pd.DataFrame({"dataset": ["a"], "reward": [2.0]})
    assert TableEvaluator(frame).describe() != TableEvaluator(other).describe()


def test_toy_table_manifest(tmp_path):
    m = load_manifest(
        write_toy_table(tmp_path, n_seeds=2, n_groups=2, datasets_per_group=2, n_per_dataset=20)
    )
    assert m.evaluator["kind"] == "table"
    ev = m.make_evaluator()
    assert isinstance(ev, TableEvaluator)
    rel = [e.id for e in m.pool.entries if e.meta["relevant"]]
    other = [e.id for e in m.pool.entries if not e.meta["relevant"]]
    means = ev.mean_rewards()
    assert np.mean([means[d] for d in rel]) > np.mean([means[d] for d in other])
    assert ev.evaluate(spec(rel[0], 2)) == ev.evaluate(spec(rel[0], 0))


def test_make_evaluator_checks_the_pool(table, tmp_path):
    pool = Pool.replay_only(Hierarchy(["a", "zz"], ["g", "g"]))
    with pytest.raises(DataError, match="'zz'"):
        make_evaluator({"kind": "table", "path": str(table)}, pool, tmp_path)
    with pytest.raises(ManifestError, match=r"m\.toml: evaluator\.path: no such file"):
        make_evaluator({"kind": "table", "path": "nope.csv"}, pool, tmp_path, source="m.toml")


# --- the conformance suite ---------------------------------------------------------------------
class TestTableConformance(EvaluatorConformance):
    dataset_ids = ("a", "b")

    @pytest.fixture
    def evaluator(self, table):
        return TableEvaluator(table)


@pytest.mark.parametrize("kind", ["column", "string", "object"])
def test_check_pool_matches_rows_in_pool_order_by_column(tmp_path, kind):
    """One row per dataset in pool order: matched column against column (the hierarchy's id
    column) or chunk by chunk against its tuple (no column kept; a string or an object
    column of ids); rows in another order, or other ids, are matched by look-up and give
    the same rewards."""
    ids = [f"d{i}" for i in range(300)]
    rewards = np.round(np.linspace(0.0, 1.0, 300), 6)
    dtype = object if kind == "object" else "string"
    frame = pd.DataFrame({"dataset": pd.array(ids, dtype=dtype), "reward": rewards})
    col = pd.array(ids, dtype="string") if kind == "column" else None
    h = Hierarchy.from_codes(tuple(ids), np.arange(300) % 7, [f"g{j}" for j in range(7)],
                             id_column=col)  # fmt: skip
    assert (h.id_column() is not None) == (kind == "column")
    ev = TableEvaluator(frame)
    ev.check_pool(Pool.replay_only(h))
    assert ev._row_ids is None  # matched in order: the table's id column is not kept
    assert ev.evaluate(spec("d17", 0)) == rewards[17]
    assert ev.evaluate(spec("d17", 3)) == rewards[17]

    shuffled = frame.iloc[::-1].reset_index(drop=True)
    ev2 = TableEvaluator(shuffled)
    ev2.check_pool(Pool.replay_only(h))
    assert ev2._row_ids is not None  # matched by look-up
    assert all(ev2.evaluate(spec(d, 0)) == rewards[i] for i, d in enumerate(ids))

    other = frame.copy()
    other["dataset"] = pd.array([*ids[:-1], "zz"], dtype=dtype)
    with pytest.raises(DataError, match="no rewards for dataset 'd299'"):
        TableEvaluator(other).check_pool(Pool.replay_only(h))
