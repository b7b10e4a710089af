"""Training-free scores: known truths on synthetic pools, edge cases, the CLI command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dashsel.cli import app
from dashsel.errors import MissingExtraError
from dashsel.pool import Pool
from dashsel.scores import (
    DEFAULT_COVARIATES,
    ScoreError,
    _label_codes,
    _pot,
    _small_ot,
    covariates_from_scores,
    pool_covariates,
    score_pool,
)
from dashsel.toy import write_toy_manifest, write_toy_table

K, D = 4, 20


def _means(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(K, D))
    return 4.0 * m / np.linalg.norm(m, axis=1, keepdims=True)


def _draw(rng, n, *, shift=0.0, wrong=0.0, classes=K, means=None):
    means = _means() if means is None else means
    y = np.arange(n) % classes
    X = means[y] + rng.normal(size=(n, D))
    X[:, 0] += shift
    flip = rng.random(n) < wrong
    y = np.where(flip, (y + 1 + rng.integers(0, K - 1, size=n)) % K, y)  # always a wrong label
    return X, y


def _pool(seed: int = 0, **extra) -> Pool:
    rng = np.random.default_rng(seed)
    datasets = {
        "same": _draw(rng, 200),
        "shifted": _draw(rng, 200, shift=3.0),
        "mislabelled": _draw(rng, 200, wrong=0.8),
        **{k: v(rng) for k, v in extra.items()},
    }
    groups = {k: k for k in datasets}
    return Pool.from_arrays(
        datasets, groups, local=_draw(rng, 40), validation=_draw(rng, 300), name="synthetic"
    )


@pytest.fixture(scope="module")
def frame():
    return score_pool(_pool())


def test_same_distribution_ranks_above_shifted(frame) -> None:
    for col in ("score_mean", "score_mmd", "score_otdd", "score_label_quality", "score_default"):
        assert frame.loc["same", col] > frame.loc["shifted", col], col


def test_mislabelled_lookalike_fools_label_free_only(frame) -> None:
    # Label-free scores see target-looking data: above the shifted candidate...
    for col in ("score_mean", "score_mmd"):
        assert frame.loc["mislabelled", col] > frame.loc["shifted", col], col
    # ...label-aware ones see the wrong labels: below both honest candidates.
    for col in ("score_otdd", "score_label_quality", "score_default"):
        assert frame.loc["mislabelled", col] < frame.loc["same", col], col
        assert frame.loc["mislabelled", col] < frame.loc["shifted", col], col
    assert frame.loc["mislabelled", "score_label_quality"] < 0.4
    assert frame.loc["same", "score_label_quality"] > 0.9


def test_frame_layout_and_costs(frame) -> None:
    assert list(frame.index) == ["same", "shifted", "mislabelled"]
    assert (frame["group"] == frame.index).all()
    assert (frame["score_default"] == frame["score_otdd"]).all()
    assert np.allclose(frame["score_mean"], -frame["dist_mean"])
    assert (frame[["dist_mean", "dist_mmd", "dist_otdd"]] >= 0).all().all()
    cost = frame.attrs["cost_seconds"]
    assert {"load", "setup", "mean", "mmd", "otdd", "label_quality", "total"} <= set(cost)
    assert all(v >= 0 for v in cost.values())
    assert (frame["cost_seconds"] > 0).all()


def test_invariant_to_candidate_row_order() -> None:
    rng = np.random.default_rng(5)
    X, y = _draw(rng, 150, wrong=0.3)
    perm = np.random.default_rng(6).permutation(150)
    val, loc = _draw(rng, 200), _draw(rng, 30)
    a = score_pool(Pool.from_arrays({"a": (X, y)}, {"a": "g"}, local=loc, validation=val))
    b = score_pool(
        Pool.from_arrays({"a": (X[perm], y[perm])}, {"a": "g"}, local=loc, validation=val)
    )
    cols = [c for c in a.columns if c.startswith(("score_", "dist_"))]
    np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), rtol=1e-9, atol=1e-12)


def test_deterministic_given_random_state() -> None:
    cols = ["score_mmd", "score_otdd", "score_label_quality"]
    a = score_pool(_pool(), random_state=3)[cols]
    b = score_pool(_pool(), random_state=3)[cols]
    assert a.equals(b)
    c = score_pool(_pool(), random_state=4)[cols]
    assert not np.allclose(a["score_mmd"], c["score_mmd"])  # the kernel features are random


def test_edge_candidates_are_handled() -> None:
    means = _means()
    pool = _pool(
        one_row=lambda rng: (means[:1] + rng.normal(size=(1, D)), np.array([0])),
        one_class=lambda rng: _draw(rng, 100, classes=1),
        two_classes=lambda rng: _draw(rng, 100, classes=2),
        unseen_label=lambda rng: (_draw(rng, 50)[0], np.full(50, 99)),
        empty=lambda rng: (np.zeros((0, D)), np.zeros(0, dtype=int)),
    )
    f = score_pool(pool)
    scores = [c for c in f.columns if c.startswith("score_")]
    assert np.isfinite(f.drop(index="empty")[scores].to_numpy()).all()
    assert f.loc["empty", scores].isna().all() and f.loc["empty", "n_rows"] == 0
    # A class missing from the candidate is paid for: fewer classes, lower label-aware score.
    assert f.loc["same", "score_otdd"] > f.loc["two_classes", "score_otdd"]
    assert f.loc["two_classes", "score_otdd"] > f.loc["one_class", "score_otdd"]
    # Labels the target never uses agree with nothing.
    assert f.loc["unseen_label", "score_label_quality"] == 0.0
    assert f.loc["unseen_label", "score_otdd"] < f.loc["same", "score_otdd"]


def test_validation_class_missing_and_string_labels() -> None:
    rng = np.random.default_rng(1)
    Xv, yv = _draw(rng, 120, classes=3)  # the validation data lacks class 3
    names = np.array(["a", "b", "c", "d"])
    X, y = _draw(rng, 80)
    pool = Pool.from_arrays(
        {"c": (X, names[y])},
        {"c": "g"},
        validation=(Xv, names[yv]),
        local=(Xv[:10], names[yv[:10]]),
    )
    f = score_pool(pool)
    assert np.isfinite(f.filter(like="score_").to_numpy()).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_val=st.integers(1, 30),
    n_cand=st.integers(1, 30),
    d=st.integers(1, 6),
    n_classes=st.integers(1, 4),
    scale=st.sampled_from([0.0, 1e-6, 1.0, 1e4]),
)
def test_scores_are_finite_for_random_valid_inputs(seed, n_val, n_cand, d, n_classes, scale):
    rng = np.random.default_rng(seed)
    val = (scale * rng.normal(size=(n_val, d)), rng.integers(0, n_classes, n_val))
    cand = {
        "a": (scale * rng.normal(size=(n_cand, d)) + 1.0, rng.integers(0, n_classes, n_cand)),
        "b": (np.zeros((n_cand, d)), np.zeros(n_cand, dtype=int)),
    }
    f = score_pool(Pool.from_arrays(cand, {"a": "g", "b": "h"}, validation=val), random_state=seed)
    assert np.isfinite(f.filter(like="score_").to_numpy()).all()
    assert ((f["score_label_quality"] >= 0) & (f["score_label_quality"] <= 1)).all()


def test_errors_are_one_line() -> None:
    from dashsel.hierarchy import Hierarchy

    replay = Pool.replay_only(Hierarchy(["a"], ["g"]), name="logged")
    with pytest.raises(ScoreError, match="'logged' has no arrays"):
        score_pool(replay)
    rng = np.random.default_rng(0)
    wide = Pool.from_arrays(
        {"w": (rng.normal(size=(5, 3)), np.zeros(5))}, {"w": "g"}, validation=_draw(rng, 10)
    )
    with pytest.raises(ScoreError, match="dataset 'w': has 3 features"):
        score_pool(wide)
    with pytest.raises(ScoreError, match="unknown score 'kl'"):
        score_pool(_pool(), which=["kl"])


# Scores of the pool below by the implementation before it was optimised (commit a9cb533,
# one candidate at a time, BLAS threads unlimited): dist_mean, dist_mmd, dist_otdd,
# score_label_quality, dist_otdd_exact. The faster code must give the same values.
_REFERENCE_VALUES = {
    "same": (
        0.46733127577690675,
        0.057611118492595946,
        0.2904080337778233,
        0.99,
        4.1298816426376845,
    ),
    "shifted": (
        2.4391647115595605,
        0.3061959234145731,
        2.3962014232423834,
        0.97,
        5.3364156305619925,
    ),
    "mislabelled": (
        0.43704789475987915,
        0.0604347441312395,
        3.4010580893399243,
        0.195,
        6.480420683089952,
    ),
    "one_row": (
        4.209934546741113,
        0.5698614928924243,
        8.417341435881793,
        1.0,
        10.47093089646317,
    ),
    "two_classes": (
        1.798822197459654,
        0.2356392862094123,
        5.800413588663439,
        0.98,
        7.459746228533727,
    ),
    "unseen_label": (
        0.6077529648149019,
        0.08719543049936115,
        4.231370858133057,
        0.66,
        5.981809992851831,
    ),
    "noisy": (
        0.9867926663135321,
        0.12990823879380523,
        1.6752230706403919,
        0.7166666666666667,
        5.148658755242964,
    ),
    "float_labels": (
        0.4614250064352465,
        0.07324883868564518,
        0.44499939005415423,
        1.0,
        4.288875066345923,
    ),
}


def _reference_pool() -> Pool:
    means = _means()
    return _pool(
        seed=7,
        one_row=lambda rng: (means[:1] + rng.normal(size=(1, D)), np.array([0])),
        two_classes=lambda rng: _draw(rng, 100, classes=2),
        unseen_label=lambda rng: (
            _draw(rng, 50)[0],
            np.where(np.arange(50) % 3 == 0, 99, np.arange(50) % 4),
        ),
        noisy=lambda rng: _draw(rng, 120, wrong=0.3, shift=1.0),
        float_labels=lambda rng: (lambda X, y: (X, y.astype(float)))(*_draw(rng, 60)),
    )


def test_scores_match_the_implementation_before_optimisation() -> None:
    which = ["mean", "mmd", "otdd", "label_quality"]
    cols = ["dist_mean", "dist_mmd", "dist_otdd", "score_label_quality"]
    if _pot() is not None:
        which, cols = [*which, "otdd_exact"], [*cols, "dist_otdd_exact"]
    f = score_pool(_reference_pool(), which=which, random_state=11, n_jobs=1)
    want = np.array([_REFERENCE_VALUES[d][: len(cols)] for d in f.index])
    np.testing.assert_allclose(f[cols].to_numpy(), want, rtol=1e-9, atol=1e-12)


def _labels_loop(code: dict, labels: list) -> list[int]:
    """The per-row look-up _label_codes replaces (unseen labels: -1, -2, ... by appearance)."""
    local: dict = {}
    return [code[v] if v in code else local.setdefault(v, -1 - len(local)) for v in labels]


@pytest.mark.parametrize(
    "labels",
    [
        np.array([3, 1, 7, 1, 9, 3, 8, 7]),
        np.array(["b", "z", "a", "y", "z", "b"]),
        np.array([1.0, 2.0, 5.0, 1.0, 4.0]),
        np.array([1, "a", 2.5, "a", None], dtype=object),  # does not sort: the row loop
        np.array([], dtype=int),
    ],
)
def test_label_codes_match_a_per_row_lookup(labels) -> None:
    from types import SimpleNamespace

    code = {1: 0, 3: 1, "a": 2, "b": 3, 2.0: 4}
    got = _label_codes(SimpleNamespace(code=code), labels)  # type: ignore[arg-type]
    assert got.dtype == np.int64
    assert got.tolist() == _labels_loop(code, labels.tolist())


def _big_pool(n: int = 12) -> Pool:
    rng = np.random.default_rng(3)
    datasets = {
        f"d{i}": _draw(rng, 60 + 10 * i, shift=0.3 * i, wrong=0.1 * (i % 3)) for i in range(n)
    }
    groups = {d: f"g{i % 3}" for i, d in enumerate(datasets)}
    return Pool.from_arrays(datasets, groups, local=_draw(rng, 40), validation=_draw(rng, 300))


def test_parallel_scores_are_identical_to_serial(monkeypatch, manifests) -> None:
    from dashsel import scores
    from dashsel.manifest import load_manifest

    monkeypatch.setattr(scores, "_MIN_PER_WORKER", 1)  # start workers even for a small pool
    for make in (_big_pool, lambda: load_manifest(manifests["arrays"]).pool):
        serial = score_pool(make(), n_jobs=1)
        parallel = score_pool(make(), n_jobs=2)
        assert serial.attrs["n_jobs"] == 1 and parallel.attrs["n_jobs"] == 2
        cols = [c for c in serial.columns if c != "cost_seconds"]
        assert parallel[cols].equals(serial[cols])  # bit for bit, in pool order
        assert parallel.attrs["cpu_seconds"] > 0 and parallel.attrs["wall_seconds"] > 0
        assert set(parallel.attrs["cost_seconds"]) == set(serial.attrs["cost_seconds"])


def test_parallel_errors_are_one_line_score_errors(monkeypatch) -> None:
    from dashsel import scores

    monkeypatch.setattr(scores, "_MIN_PER_WORKER", 1)
    rng = np.random.default_rng(0)
    datasets = {f"d{i}": _draw(rng, 20) for i in range(3)}
    datasets["bad"] = (rng.normal(size=(5, 3)), np.zeros(5))
    pool = Pool.from_arrays(datasets, {d: "g" for d in datasets}, validation=_draw(rng, 50))
    with pytest.raises(ScoreError, match="dataset 'bad': has 3 features"):
        score_pool(pool, n_jobs=2)


def test_loaders_that_cannot_travel_are_run_in_this_process(monkeypatch) -> None:
    import threading

    from dashsel import scores
    from dashsel.pool import ArraySplit, DatasetEntry

    monkeypatch.setattr(scores, "_MIN_PER_WORKER", 1)
    rng = np.random.default_rng(0)
    lock = threading.Lock()  # a closure over a lock cannot be pickled

    def loader(seed: int):
        def load() -> ArraySplit:
            with lock:
                return ArraySplit(*_draw(np.random.default_rng(seed), 30))

        return load

    entries = [DatasetEntry(f"d{i}", "g", loader=loader(i)) for i in range(4)]
    pool = Pool(entries, validation=ArraySplit(*_draw(rng, 60)))
    with pytest.warns(UserWarning, match="scoring in one process: .*cannot be sent"):
        f = score_pool(pool, n_jobs=2)
    assert f.attrs["n_jobs"] == 1 and np.isfinite(f["score_default"]).all()


def test_jobs_default_and_checks(monkeypatch) -> None:
    from dashsel import scores

    f = score_pool(_pool())  # default: the CPUs, but not more workers than the pool is worth
    assert f.attrs["n_jobs"] == 1
    monkeypatch.setattr(scores, "_MIN_PER_WORKER", 1)
    monkeypatch.setattr("dashsel.executors.available_cpus", lambda: 64)
    assert scores._check_jobs(None) == 64
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ScoreError, match="n_jobs must be a positive integer"):
            score_pool(_pool(), n_jobs=bad)  # type: ignore[arg-type]


def test_small_ot_matches_brute_force() -> None:
    # Uniform marginals of equal size: the optimum is a permutation (Birkhoff).
    import itertools

    rng = np.random.default_rng(2)
    C = rng.random((4, 4))
    best = min(sum(C[i, p[i]] for i in range(4)) for p in itertools.permutations(range(4)))
    assert _small_ot(np.full(4, 0.25), np.full(4, 0.25), C) == pytest.approx(best / 4)
    assert _small_ot(np.array([1.0]), np.array([0.5, 0.5]), C[:1, :2]) == pytest.approx(
        C[0, :2].mean()
    )


def test_covariates_for_an_engine() -> None:
    pool = _pool()
    Z = pool_covariates(pool)
    assert Z.shape == (len(pool), len(DEFAULT_COVARIATES))
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1.0)
    # Columns follow DEFAULT_COVARIATES: otdd, label_quality (same is best), mmd (same and the
    # mislabelled look-alike both beat the shifted candidate).
    assert DEFAULT_COVARIATES == ("otdd", "label_quality", "mmd")
    assert (Z[0, :2] == Z[:, :2].max(axis=0)).all()
    assert Z[1, 2] == Z[:, 2].min()
    import pandas as pd

    table = pd.DataFrame({"score_x": [1.0, 1.0, np.nan], "score_y": [0.0, 1.0, 2.0]})
    cov = covariates_from_scores(table)
    assert np.array_equal(cov[:, 0], [0.0, 0.0, 0.0])  # constant or missing: no information
    with pytest.raises(ScoreError, match="no score column 'score_z'"):
        covariates_from_scores(table, ["score_z"])


def test_otdd_exact_with_pot() -> None:
    pytest.importorskip("ot")
    f = score_pool(_pool(), which=["otdd_exact"], max_ot_rows=150)
    assert f.loc["same", "score_otdd_exact"] > f.loc["mislabelled", "score_otdd_exact"]
    assert f.loc["same", "score_otdd_exact"] > f.loc["shifted", "score_otdd_exact"]
    # Not corrected for sampling noise (docs/scores.md): far from 0 for a same-distribution set.
    assert f.loc["same", "dist_otdd_exact"] > 5 * f.loc["same", "dist_otdd"]


def test_otdd_exact_without_pot_says_how_to_install() -> None:
    try:
        import ot  # noqa: F401
    except ImportError:
        with pytest.raises(MissingExtraError, match=r"dashsel\[ot\]"):
            score_pool(_pool(), which=["otdd_exact"])
    else:
        pytest.skip("POT is installed")


# --- the CLI ---------------------------------------------------------------------------------
runner = CliRunner()


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scorepools")
    return {
        "arrays": write_toy_manifest(root / "arrays", seed=0),
        "table": write_toy_table(root / "table", seed=0),
    }


def test_cli_score_ranks_and_writes_json(manifests, tmp_path: Path) -> None:
    out = tmp_path / "s" / "scores.json"
    res = runner.invoke(app, ["score", str(manifests["arrays"]), "--top", "3", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "ranked by otdd" in res.output and "9 more" in res.output
    doc = json.loads(out.read_text())
    assert len(doc["datasets"]) == 12 and doc["default_score"] == "otdd"
    assert doc["cost_seconds"]["total"] > 0
    ranks = [d["score_default"] for d in doc["datasets"]]
    assert ranks == sorted(ranks, reverse=True)
    # The toy pool's relevant group (target distribution, clean labels) comes out on top.
    from dashsel.manifest import load_manifest

    relevant = {e.id for e in load_manifest(manifests["arrays"]).pool.entries if e.meta["relevant"]}
    assert {d["dataset"] for d in doc["datasets"][:3]} == relevant
    assert doc["datasets"][0]["dataset"] in res.output


def test_cli_score_jobs(manifests, tmp_path: Path, monkeypatch) -> None:
    from dashsel import scores

    monkeypatch.setattr(scores, "_MIN_PER_WORKER", 1)
    docs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"scores{jobs}.json"
        args = ["score", str(manifests["arrays"]), "--jobs", jobs, "--json", str(out)]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        assert f"over {jobs} worker" in res.output
        doc = json.loads(out.read_text())
        docs.append([{k: v for k, v in d.items() if k != "cost_seconds"} for d in doc["datasets"]])
    assert docs[0] == docs[1]
    res = runner.invoke(app, ["score", str(manifests["arrays"]), "--jobs", "0"])
    assert res.exit_code == 2 and "--jobs" in res.output


def test_cli_score_replay_pool_is_a_one_line_error(manifests) -> None:
    res = runner.invoke(app, ["score", str(manifests["table"])])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "has no arrays" in lines[0]
    assert "manifest.toml" in res.output


def test_cli_score_unknown_score(manifests) -> None:
    res = runner.invoke(app, ["score", str(manifests["arrays"]), "--which", "mean,bogus"])
    assert res.exit_code == 2 and "unknown score 'bogus'" in res.output


# --- the example in docs/scores.md ---------------------------------------------------------------
def test_docs_example_claims() -> None:
    text = (Path(__file__).parents[1] / "docs" / "scores.md").read_text()
    block = text.split("<!-- example:", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(block, "docs/scores.md", "exec"), scope)
    frame = scope["frame"]
    cols = ["score_mean", "score_mmd", "score_otdd", "score_label_quality"]
    rank = frame[cols].rank(ascending=False, method="min").astype(int)
    # The table in the docs: the look-alike fools the label-free scores only...
    assert rank.loc["lookalike", "score_mean"] == 1 and rank.loc["lookalike", "score_mmd"] == 1
    assert rank.loc["lookalike", "score_otdd"] == 13
    assert rank.loc["lookalike", "score_label_quality"] == 15
    # ...the two-class set fools label_quality only, and a copy scores as its original.
    assert rank.loc["two-class", "score_label_quality"] == 1
    assert rank.loc["two-class", "score_otdd"] == 15
    assert frame.loc["g0-0-copy", cols].equals(frame.loc["g0-0", cols])
    assert set(rank["score_otdd"].nsmallest(4).index) == {"g0-0", "g0-1", "g0-2", "g0-0-copy"}
