"""dashsel.checks: `check` finds what `run` would hit, and bad options are one-line errors
(issue 10, items 8 and 10)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dashsel.checks import (
    check_journal_path,
    check_output_dir,
    check_pool,
    check_seed,
    check_split,
)
from dashsel.cli import app
from dashsel.errors import DashselError, DataError
from dashsel.manifest import load_manifest
from dashsel.pool import ArraySplit
from dashsel.run import select
from dashsel.toy import make_toy_pool, write_toy_manifest

runner = CliRunner()
N_FEATURES = 10


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_toy_manifest(
        tmp_path / "pool", n_groups=2, datasets_per_group=2, n_per_dataset=20, seed=1
    )


def _replace(manifest: Path, name: str, X, y) -> Path:
    path = manifest.parent / "data" / name
    if isinstance(X, bytes):
        path.write_bytes(X)
    else:
        np.savez(path, X=X, y=y)
    return path


def _cli(*args: str):
    res = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res


def _refused(manifest: Path, *needles: str, shallow: bool = True) -> None:
    """`check_pool` (deep and, if ``shallow``, from headers) and `dashsel check` refuse it."""
    modes = (True, False) if shallow else (True,)
    for deep in modes:
        with pytest.raises(DataError) as info:
            check_pool(load_manifest(manifest).pool, deep=deep)
        msg = str(info.value)
        assert "\n" not in msg
        for needle in needles:
            assert needle in msg, (deep, msg)
    res = _cli("check", manifest)
    assert res.exit_code == 2
    for needle in needles:
        assert needle in " ".join(res.output.split())


def _rows(n: int = 20, width: int = N_FEATURES, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, width)), np.arange(n) % 3


# --- item 8: what `check` used to miss -----------------------------------------------------
def test_toy_manifest_passes(manifest):
    report = check_pool(load_manifest(manifest).pool)
    assert report.n_datasets == 4 and report.n_loaded == 4
    assert report.feature_shape == (N_FEATURES,)
    shallow = check_pool(load_manifest(manifest).pool, deep=False)
    assert shallow.n_loaded == 0 and shallow.n_from_headers == 4
    assert shallow.feature_shape == (N_FEATURES,)
    assert _cli("check", manifest).exit_code == 0


def test_feature_width_mismatch_is_found(manifest):
    path = _replace(manifest, "g1-0.npz", *_rows(width=N_FEATURES + 2))
    _refused(manifest, "dataset 'g1-0'", str(path), "(12,)", "(10,)")


def test_three_dimensional_dataset_is_found(manifest):
    X = np.zeros((20, 2, 5))
    path = _replace(manifest, "g0-1.npz", X, np.arange(20) % 3)
    _refused(manifest, "dataset 'g0-1'", str(path), "(2, 5)")


def test_validation_width_mismatch_is_found(manifest):
    _replace(manifest, "validation.npz", *_rows(n=30, width=3))
    _refused(manifest, "validation data", "(3,)")


def test_two_dimensional_labels_are_found(manifest):
    X, _ = _rows()
    path = _replace(manifest, "g0-0.npz", X, np.zeros((20, 2)))
    _refused(manifest, "dataset 'g0-0'", str(path), "1-D")


def test_nan_labels_are_found(manifest):
    X, y = _rows()
    y = y.astype(float)
    y[4] = np.nan
    _replace(manifest, "g1-1.npz", X, y)
    _refused(manifest, "dataset 'g1-1'", "NaN", shallow=False)


def test_non_finite_features_are_found(manifest):
    X, y = _rows()
    X[3, 2] = np.inf
    _replace(manifest, "g1-1.npz", X, y)
    _refused(manifest, "dataset 'g1-1'", "NaN or infinite", shallow=False)


def test_empty_npz_is_one_line_not_aborted(manifest):
    path = _replace(manifest, "g0-0.npz", b"", None)
    _refused(manifest, "dataset 'g0-0'", str(path), "empty file")
    assert "Aborted" not in _cli("check", manifest).output


def test_oversized_array_is_found_from_its_header(manifest, monkeypatch):
    _replace(manifest, "g1-0.npz", *_rows(n=2000))  # 160 kB of features
    monkeypatch.setenv("DASHSEL_MAX_ARRAY_BYTES", "100000")
    _refused(manifest, "dataset 'g1-0'", "over the limit")


def test_run_checks_before_the_first_trial(manifest, tmp_path):
    _replace(manifest, "g1-1.npz", *_rows(width=4))
    journal = tmp_path / "run.db"
    res = _cli("run", manifest, "--budget", "3", "--journal", journal, "--no-final")
    assert res.exit_code == 2 and "dataset 'g1-1'" in res.output
    assert not journal.exists()  # refused before anything was recorded


def test_csv_width_is_checked_from_its_header_line(manifest):
    import pandas as pd

    text = manifest.read_text().replace('"data/g0-1.npz"', '"data/g0-1.csv"')
    manifest.write_text(text)
    X, y = _rows(width=N_FEATURES + 1)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).assign(label=y)
    frame.to_csv(manifest.parent / "data" / "g0-1.csv", index=False)
    _refused(manifest, "dataset 'g0-1'", "g0-1.csv", "(11,)")
    pool = load_manifest(manifest).pool
    with pytest.raises(DataError):
        check_pool(pool, deep=False)
    assert pool.entries[1].data is None  # not read


def test_in_memory_pool_is_checked(tmp_path):
    pool = make_toy_pool(n_groups=2, datasets_per_group=2, n_per_dataset=10)
    assert check_pool(pool).n_datasets == 4
    bad = pool.entries[1]
    bad.data = ArraySplit(np.full((5, pool.local.X.shape[1]), np.nan), np.zeros(5, int))
    with pytest.raises(DataError, match=f"dataset '{bad.id}': features hold NaN"):
        check_pool(pool, deep=False)  # in-memory data is always checked in full


def test_check_split_messages():
    with pytest.raises(DataError, match="x: no rows"):
        check_split(ArraySplit(np.zeros((0, 2)), np.zeros(0)), "x")
    with pytest.raises(DataError, match="x: features are not numeric"):
        check_split(ArraySplit(np.array([["a"]]), np.zeros(1)), "x")
    with pytest.raises(DataError, match=r"x: labels hold NaN .*row 1"):
        check_split(ArraySplit(np.zeros((2, 2)), np.array([0.0, np.nan])), "x")


# --- item 10: options that used to give tracebacks -----------------------------------------
def test_negative_seed(manifest):
    res = _cli("run", manifest, "--seed", "-1", "--budget", "2", "--no-final")
    assert res.exit_code == 2 and "seed must be a non-negative integer" in res.output
    pool = make_toy_pool(n_groups=2, datasets_per_group=2, n_per_dataset=10)
    from dashsel.evaluators import LogisticEvaluator

    with pytest.raises(DashselError, match="seed must be a non-negative integer, got -1"):
        select(pool, "dash", LogisticEvaluator(pool), 2, seed=-1)
    for bad in (1.5, "3", True):
        with pytest.raises(DashselError):
            check_seed(bad)
    assert check_seed(np.int64(7)) == 7


def test_journal_under_a_file(manifest, tmp_path):
    (tmp_path / "FILE").write_text("x")
    res = _cli("run", manifest, "--journal", tmp_path / "FILE" / "x.db", "--budget", "2")
    assert res.exit_code == 2 and "is a file, not a folder" in res.output
    pool = make_toy_pool(n_groups=2, datasets_per_group=2, n_per_dataset=10)
    from dashsel.evaluators import LogisticEvaluator

    with pytest.raises(DashselError, match="is a file, not a folder"):
        select(pool, "dash", LogisticEvaluator(pool), 2, journal=tmp_path / "FILE" / "a" / "x.db")
    with pytest.raises(DashselError, match="is a folder"):
        check_journal_path(tmp_path)
    with pytest.raises(DashselError, match="NUL byte"):
        check_journal_path("run\x00.db")
    assert check_journal_path(tmp_path / "new" / "deeper" / "run.db").name == "run.db"


def test_data_example_into_a_file(tmp_path):
    (tmp_path / "FILE").write_text("x")
    for target in (tmp_path / "FILE", tmp_path / "FILE" / "sub"):
        res = _cli("data", "example", target)
        assert res.exit_code == 2 and "FILE" in res.output
    assert check_output_dir(tmp_path / "fresh") == tmp_path / "fresh"


def test_nul_byte_in_a_dataset_path(manifest):
    text = manifest.read_text().replace('"data/g0-0.npz"', '"data/g0\\u0000-0.npz"')
    assert "\\u0000" in text
    manifest.write_text(text)
    res = _cli("check", manifest)
    assert res.exit_code == 2 and "datasets[0].path" in res.output and "NUL byte" in res.output
    assert _cli("run", manifest, "--budget", "2").exit_code == 2
