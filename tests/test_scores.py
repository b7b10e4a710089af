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
