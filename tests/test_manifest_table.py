"""Manifests whose datasets come from a table file (``[pool] datasets = "datasets.csv"``)."""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashsel.arrays import save_npz
from dashsel.errors import ManifestError
from dashsel.manifest import load_manifest
from dashsel.pool import ArraySplit
from dashsel.run import select

N = 10_000


def write(tmp: Path, table: pd.DataFrame | str, *, name: str = "datasets.csv", **extra) -> Path:
    """A replay manifest naming ``table`` (a frame, written as ``name``, or raw CSV text)."""
    file = tmp / name
    if isinstance(table, str):
        file.write_text(table)
    elif name.endswith(".parquet"):
        table.to_parquet(file, index=False)
    else:
        table.to_csv(file, index=False)
    ids = table["id"] if isinstance(table, pd.DataFrame) else []
    rewards = pd.DataFrame({"dataset": list(ids), "reward": np.linspace(0, 1, len(ids))})
    rewards.to_csv(tmp / "rewards.csv", index=False)
    lines = [
        "[pool]",
        'name = "big"',
        f'datasets = "{name}"',
        *(f"{k} = {v}" for k, v in extra.items()),
        "",
        "[evaluator]",
        'kind = "table"',
        'path = "rewards.csv"',
    ]
    path = tmp / "manifest.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def big_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": [f"d{i:05d}" for i in range(N)],
            "group": [f"g{i % 100}" for i in range(N)],
            "score_size": rng.integers(10, 1000, N),
            "score_sim": rng.random(N),
        }
    )


@pytest.mark.parametrize("name", ["datasets.csv", "datasets.parquet"])
def test_a_table_of_ten_thousand_datasets_loads_and_runs(tmp_path, name) -> None:
    table = big_table()
    m = load_manifest(write(tmp_path, table, name=name))
    pool = m.pool
    assert len(pool) == N and pool.hierarchy.n_groups == 100
    assert pool.dataset_ids[:2] == ("d00000", "d00001") and pool.hierarchy.groups[101] == "g1"
    assert pool.score_names == ("size", "sim")
    np.testing.assert_array_equal(pool.scores, table[["score_size", "score_sim"]].to_numpy(float))
    assert pool._entries is None  # nothing per dataset built while loading
    assert pool.entry("d00042").group == "g42" and not pool.entry("d00042").has_data
    assert not pool.has_arrays
    result = select(pool, "dash", m.make_evaluator(), 30, seed=1, score_final=False)
    assert result.n_evaluations == 30 and result.posterior.n_datasets == N
    # Replayed rewards are the table's: reward of d_i is linspace(0, 1)[i].
    t = result.trials
    idx = t["dataset_id"].str[1:].astype(int)
    np.testing.assert_allclose(t["reward"], idx / (N - 1))
    again = pickle.loads(pickle.dumps(pool))  # pools travel to worker processes
    assert again.dataset_ids == pool.dataset_ids and again.entry("d00001").group == "g1"


def test_ids_that_look_like_numbers_stay_text(tmp_path) -> None:
    m = load_manifest(write(tmp_path, "id,group\n007,1\n8,1\n"))
    assert m.pool.dataset_ids == ("007", "8") and m.pool.hierarchy.groups == ("1", "1")
    assert m.pool.scores is None and m.pool.score_names == ()


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("id,group\na,g\nb c,g\n", r"row 2 \(line 3\): id 'b c' contains whitespace"),
        ("id,group\na,g\nb\tc,g\n", r"row 2 \(line 3\): id 'b\\tc' contains whitespace"),
        ("id,group\né,g\nb\u00a0c,g\n", r"row 2 \(line 3\): id 'b\\xa0c' contains whitespace"),
        ("id,group\na,g\nb\x1cc,g\n", r"row 2 \(line 3\): id 'b\\x1cc' contains whitespace"),
        ("id,group\na,g\nb,g\na,h\n", r"row 3 \(line 4\): duplicate dataset id 'a' \(also row 1"),
        ("id,group\na,g\n,g\n", r"row 2 \(line 3\): empty id"),
        ("id,group\na,g\nb,\n", r"row 2 \(line 3\): empty group"),
        ("id,grp\na,g\n", "missing column 'group'"),
        ("id,group,colour\na,g,red\n", "unknown column 'colour'"),
        ("id,group,score_x\na,g,1.5\nb,g,big\n", r"row 2 \(line 3\): column 'score_x' is not a"),
        ("id,group\n", "has no rows"),
        ("", "empty table of datasets"),
        ("id,group,path\na,g,nothere.npz\n", r"row 1 \(line 2\): no such file"),
        ("id,group,path\na,g,a.txt\n", "unknown file extension in 'a.txt'"),
    ],
)
def test_bad_tables_are_one_line_errors_naming_file_and_row(tmp_path, csv, message) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        load_manifest(write(tmp_path, csv))
    text = str(info.value)
    assert "\n" not in text and "datasets.csv" in text


def test_table_and_dataset_entries_together_are_refused(tmp_path) -> None:
    path = write(tmp_path, "id,group\na,g\n")
    path.write_text(path.read_text() + '\n[[datasets]]\nid = "b"\ngroup = "g"\n')
    with pytest.raises(ManifestError, match="not both"):
        load_manifest(path)


def test_missing_table_file_and_bad_extension(tmp_path) -> None:
    path = write(tmp_path, "id,group\na,g\n")
    path.write_text(path.read_text().replace("datasets.csv", "other.csv"))
    with pytest.raises(ManifestError, match="no such table of datasets"):
        load_manifest(path)
    path.write_text(path.read_text().replace("other.csv", "other.json"))
    with pytest.raises(ManifestError, match=r"use \.csv or \.parquet"):
        load_manifest(path)


def test_parquet_without_pyarrow_gives_an_install_hint(tmp_path, monkeypatch) -> None:
    path = write(tmp_path, big_table().head(3), name="datasets.parquet")
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ManifestError, match="pip install pyarrow"):
        load_manifest(path)


def test_paths_load_lazily_relative_to_the_manifest(tmp_path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    for name in ("a", "b", "local", "val"):
        save_npz(
            tmp_path / "data" / f"{name}.npz", ArraySplit(rng.random((6, 2)), np.arange(6) % 2)
        )
    (tmp_path / "datasets.csv").write_text("id,group,path\na,g,data/a.npz\nb,h,data/b.npz\n")
    (tmp_path / "manifest.toml").write_text(
        '[pool]\nname = "p"\ndatasets = "datasets.csv"\n\n'
        '[local]\npath = "data/local.npz"\n\n[validation]\npath = "data/val.npz"\n'
    )
    m = load_manifest(tmp_path / "manifest.toml")
    assert m.pool.has_arrays
    assert m.pool.entry("b").source == str(tmp_path / "data" / "b.npz")
    assert m.pool.dataset("a").X.shape == (6, 2)
    m.check()
    assert [e.id for e in m.pool.entries] == ["a", "b"]


def test_a_training_evaluator_needs_a_path_column(tmp_path) -> None:
    (tmp_path / "datasets.csv").write_text("id,group\na,g\n")
    (tmp_path / "manifest.toml").write_text('[pool]\nname = "p"\ndatasets = "datasets.csv"\n')
    with pytest.raises(ManifestError, match="missing column 'path'"):
        load_manifest(tmp_path / "manifest.toml")


def test_reward_rows_in_pool_order_and_shuffled_replay_the_same(tmp_path) -> None:
    """The table evaluator matches rows to the pool by comparing ids when they are the pool's
    ids in order, and through the pool's index otherwise: both give the same rewards."""
    from dashsel.evaluators import TableEvaluator
    from dashsel.trial import TrialSpec

    m = load_manifest(write(tmp_path, big_table().head(500)))
    ordered = m.make_evaluator()
    frame = pd.read_csv(tmp_path / "rewards.csv")
    shuffled = TableEvaluator(frame.sample(frac=1.0, random_state=0))
    shuffled.check_pool(m.pool)
    for d in ("d00000", "d00123", "d00499"):
        spec = TrialSpec(number=0, dataset_id=d, seed=0, pull=0)
        assert ordered.evaluate(spec) == shuffled.evaluate(spec)
        assert ordered.evaluate(spec) == pytest.approx(int(d[1:]) / 499)
        np.testing.assert_array_equal(ordered.rewards(d), shuffled.rewards(d))
    assert ordered.dataset_ids == m.pool.dataset_ids
    assert ordered.mean_rewards() == pytest.approx(shuffled.mean_rewards())
    ordered.check_pool(m.pool)  # binding again works
    again = ordered.evaluate(TrialSpec(number=0, dataset_id="d00001", seed=0, pull=3))
    assert again == pytest.approx(1 / 499)
