"""The run loop and the default engine: what `select` tells a policy (deterministic, targets,
covariates), the scores prior, early stopping, and the `dashsel run` options that drive them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dashsel import select
from dashsel.cli import app
from dashsel.errors import DashselError, ManifestError
from dashsel.evaluators import make_evaluator
from dashsel.evaluators.base import Evaluator
from dashsel.evaluators.sklearn import LogisticEvaluator, SklearnEvaluator
from dashsel.evaluators.table import TableEvaluator
from dashsel.hierarchy import Hierarchy
from dashsel.journal import SQLiteJournal
from dashsel.policies import DEFAULT_POLICY, DaSH, HiTS
from dashsel.pool import Pool
from dashsel.run import configure_policy, covariates_from_meta
from dashsel.toy import make_toy_pool, write_toy_manifest, write_toy_table
from dashsel.trial import TrialSpec


class Noisy(Evaluator):
    """Reward = known utility + seeded Gaussian noise (not deterministic)."""

    def __init__(self, ids: list[str], theta: np.ndarray, sd: float = 0.02) -> None:
        self.theta = dict(zip(ids, theta.tolist(), strict=True))
        self.sd = sd

    def evaluate(self, spec: TrialSpec) -> float:
        noise = float(np.random.default_rng(spec.seed).normal())
        return self.theta[spec.dataset_id] + self.sd * noise

    def describe(self) -> dict[str, object]:
        return {"kind": "noisy", "sd": self.sd}


def world(seed: int, n_groups: int = 12, size: int = 8) -> tuple[Pool, list[str], np.ndarray]:
    """A replay pool with known utilities: group effects plus within-group spread."""
    rng = np.random.default_rng(seed)
    n = n_groups * size
    theta = 0.7 + 0.05 * rng.standard_normal(n_groups).repeat(size)
    theta += 0.03 * rng.standard_normal(n)
    ids = [f"g{i // size}d{i % size}" for i in range(n)]
    pool = Pool.replay_only(Hierarchy(ids, [f"g{i // size}" for i in range(n)]), name="w")
    return pool, ids, theta


def utility(selected: tuple[str, ...], ids: list[str], theta: np.ndarray) -> float:
    """0 = an average dataset, 1 = the best k."""
    pos = {d: i for i, d in enumerate(ids)}
    k = len(selected)
    chosen = np.mean([theta[pos[d]] for d in selected])
    best = np.sort(theta)[::-1][:k].mean()
    return float((chosen - theta.mean()) / (best - theta.mean()))


def one_reward_table(ids: list[str], theta: np.ndarray) -> TableEvaluator:
    return TableEvaluator(pd.DataFrame({"dataset": ids, "reward": theta}))


# --- the default policy ---------------------------------------------------------------------
def test_default_policy_is_the_engine() -> None:
    pool, ids, theta = world(0, 4, 4)
    ev = Noisy(ids, theta)
    assert DEFAULT_POLICY == "hits"
    assert select(pool, evaluator=ev, budget=4).policy == "hits"
    assert select(pool, None, ev, 4).policy == "hits"
    # Positional use of before keeps working.
    assert select(pool, "dash", ev, 4).policy == "dash"
    with pytest.raises(TypeError, match="evaluator"):
        select(pool, budget=4)
    with pytest.raises(TypeError, match="budget"):
        select(pool, evaluator=ev)


# --- what the run tells the policy ----------------------------------------------------------
def test_evaluators_say_whether_they_are_deterministic() -> None:
    toy = make_toy_pool(seed=0)
    ids = list(toy.hierarchy.dataset_ids)
    assert LogisticEvaluator(toy).deterministic
    assert not LogisticEvaluator(toy, bootstrap=True).deterministic
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.naive_bayes import GaussianNB

    assert not SklearnEvaluator(toy, RandomForestClassifier()).deterministic  # seeded per trial
    assert SklearnEvaluator(toy, GaussianNB()).deterministic
    assert one_reward_table(ids, np.linspace(0, 1, len(ids))).deterministic
    two = pd.DataFrame({"dataset": ids * 2, "reward": np.linspace(0, 1, 2 * len(ids))})
    assert not TableEvaluator(two).deterministic


def test_manifest_deterministic_overrides_the_evaluator(tmp_path: Path) -> None:
    pool = make_toy_pool(seed=0)
    ev = make_evaluator({"kind": "logistic", "deterministic": False}, pool, tmp_path)
    assert ev.deterministic is False
    ev = make_evaluator({"kind": "logistic", "bootstrap": True, "deterministic": True}, pool, ".")
    assert ev.deterministic is True
    with pytest.raises(ManifestError, match="deterministic"):
        make_evaluator({"kind": "logistic", "deterministic": "yes"}, pool, tmp_path)


def test_configure_policy_sets_only_what_the_user_left_alone() -> None:
    p = HiTS()
    assert configure_policy(p, deterministic=True, k=3, percentile=None) == (3, None)
    assert p.deterministic is True and p.k == 3
    # Reused for another run: the values the first run set are derived again.
    assert configure_policy(p, deterministic=False, k=None, percentile=20.0) == (None, 20.0)
    assert p.deterministic is False and p.k is None and p.percentile == 20.0
    assert configure_policy(p, deterministic=False, k=None, percentile=None) == (None, None)
    assert p.percentile is None
    # The user's own choices stay, and the policy's target becomes the run's rule.
    q = HiTS(k=2, deterministic=True)
    assert configure_policy(q, deterministic=False, k=None, percentile=None) == (2, None)
    assert q.deterministic is True and q.k == 2
    # A policy without those parameters is left as it is.
    d = DaSH()
    before = d.get_params()
    assert configure_policy(d, deterministic=True, k=4, percentile=None) == (4, None)
    assert d.get_params() == before


def test_deterministic_evaluator_engine_never_repeats_and_stops_when_exhausted() -> None:
    pool, ids, theta = world(1, 4, 5)
    ev = one_reward_table(ids, theta)
    policy = HiTS()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no repeat warning for the engine
        r = select(pool, policy, ev, 30, k=3)
    assert policy.deterministic is True
    assert r.deterministic and r.n_repeated_deterministic == 0
    assert r.trials["dataset_id"].is_unique and r.n_evaluations == 20
    assert r.stop_reason.startswith("pool exhausted") and r.n_saved == 10
    assert "stopped early: pool exhausted" in r.summary()


def test_dash_keeps_repeating_but_the_run_says_so_once() -> None:
    pool, ids, theta = world(1, 4, 5)
    ev = one_reward_table(ids, theta)
    with pytest.warns(UserWarning, match="deterministic") as record:
        r = select(pool, "dash", ev, 30, k=3)
    assert len([w for w in record if "deterministic" in str(w.message)]) == 1
    pulls = r.trials["pull"].to_numpy()
    assert r.n_repeated_deterministic == int((pulls > 0).sum()) > 0
    assert r.stop_reason == "budget" and r.n_evaluations == 30 and r.n_saved == 0
    assert r.to_dict()["n_repeated_deterministic"] == r.n_repeated_deterministic


def test_run_deterministic_argument_overrides_the_evaluator() -> None:
    pool, ids, theta = world(1, 4, 5)
    ev = one_reward_table(ids, theta)
    policy = HiTS()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = select(pool, policy, ev, 24, k=3, deterministic=False)
    assert not policy.deterministic and not r.deterministic
    assert r.stop_reason == "budget" and r.n_evaluations == 24
    with pytest.raises(DashselError, match="deterministic"):
        select(pool, "hits", ev, 4, deterministic="yes")  # type: ignore[arg-type]


def test_run_rule_becomes_the_engine_target() -> None:
    pool, ids, theta = world(2, 4, 4)
    policy = HiTS()
    r = select(pool, policy, Noisy(ids, theta), 6, percentile=75.0)
    assert policy.percentile == 75.0 and r.policy_params["percentile"] == 75.0
    policy = HiTS(k=2)
    r = select(pool, policy, Noisy(ids, theta), 6)  # no rule given: the policy's own
    assert len(r.selected) == 2


# --- the scores prior ------------------------------------------------------------------------
def test_scores_prior_learns_its_weight_and_reversed_scores_do_no_harm() -> None:
    """Informative scores get a positive, trusted weight; shuffled ones a weight near 0;
    reversed ones a negative, distrusted weight, and the selection is no worse than with
    no scores at all."""
    k, budget = 5, 24
    beta: dict[str, list[float]] = {}
    util: dict[str, list[float]] = {}
    trusted: dict[str, list[bool]] = {}
    for seed in range(3):
        pool, ids, theta = world(seed)
        rng = np.random.default_rng(100 + seed)
        noise = 0.01 * rng.standard_normal(theta.size)
        cases = {
            "none": False,
            "informative": theta + noise,
            "shuffled": rng.permutation(theta),
            "reversed": -theta + noise,
        }
        for name, scores in cases.items():
            policy = HiTS()
            r = select(pool, policy, Noisy(ids, theta), budget, seed=seed, k=k, scores=scores)
            util.setdefault(name, []).append(utility(r.selected, ids, theta))
            trusted.setdefault(name, []).append(policy.covariates_trusted())
            if name != "none":
                assert r.scores is not None and r.scores_source == "user"
                beta.setdefault(name, []).append(float(policy.hyper_.beta[0]))
            else:
                assert r.scores is None and policy.covariates_ is None
    assert min(beta["informative"]) > 0 and all(trusted["informative"])
    assert np.mean(np.abs(beta["shuffled"])) < 0.5 * np.mean(beta["informative"])
    assert not any(trusted["shuffled"])
    assert max(beta["reversed"]) < 0 and not any(trusted["reversed"])
    assert np.mean(util["reversed"]) >= np.mean(util["none"]) - 0.02
    assert np.mean(util["informative"]) >= np.mean(util["none"]) - 0.02


def test_scores_are_computed_for_an_array_pool(tmp_path: Path) -> None:
    pool = make_toy_pool(seed=0)
    ev = LogisticEvaluator(pool)
    r = select(pool, evaluator=ev, budget=4, journal=tmp_path / "j.db", score_final=False)
    assert r.scores_source == "computed" and r.scores_seconds > 0
    assert list(r.scores.index) == list(pool.hierarchy.dataset_ids)
    assert all(c.startswith("score_") for c in r.scores.columns)
    # The journal keeps a digest and (small pools) the compressed matrix, which rebuilds the
    # run's prior exactly in another process (a study, a report).
    with SQLiteJournal(tmp_path / "j.db") as jr:
        meta = jr.meta()
    assert set(meta["scores"]) == {"source", "columns", "shape", "sha256", "seconds", "matrix"}
    assert meta["scores"]["shape"] == [pool.hierarchy.n_datasets, r.scores.shape[1]]
    x = covariates_from_meta(meta)
    assert x is not None and x.shape == tuple(meta["scores"]["shape"])
    tampered = {**meta, "scores": {**meta["scores"], "sha256": "0" * 64}}
    assert covariates_from_meta(tampered) is None  # a matrix that fails its digest is ignored
    d = r.to_dict()
    assert d["scores_source"] == "computed" and len(d["scores"]) == pool.hierarchy.n_datasets
    json.dumps(d, allow_nan=False)
    # Off, and not computed for a policy that takes no covariates.
    assert select(pool, evaluator=ev, budget=2, scores=False, score_final=False).scores is None
    assert select(pool, "dash", ev, 2, score_final=False).scores is None


def test_user_frame_and_pool_scores() -> None:
    pool, ids, theta = world(3, 3, 3)
    frame = pd.DataFrame({"score_a": theta}, index=ids)[::-1]  # any order, by id
    r = select(pool, evaluator=Noisy(ids, theta), budget=3, scores=frame)
    assert list(r.scores.index) == ids and r.scores_source == "user"
    np.testing.assert_allclose(r.scores["score_a"].to_numpy(), theta)
    # A pool with a table of scores (a replay pool's score_* columns) supplies them itself.
    pool.scores = pd.DataFrame({"score_default": theta, "other": 1.0}, index=ids)
    r = select(pool, evaluator=Noisy(ids, theta), budget=3)
    assert r.scores_source == "pool" and list(r.scores.columns) == ["score_default"]
    # ... or as a table of datasets' score_* columns: an array in pool order with names.
    pool.scores, pool.score_names = theta[:, None], ("sim",)
    r = select(pool, evaluator=Noisy(ids, theta), budget=3)
    assert r.scores_source == "pool" and list(r.scores.columns) == ["score_sim"]
    np.testing.assert_allclose(r.scores["score_sim"].to_numpy(), theta)
    with pytest.raises(DashselError, match="shape"):
        select(pool, evaluator=Noisy(ids, theta), budget=3, scores=np.zeros(4))
    with pytest.raises(DashselError, match="score_"):
        select(pool, evaluator=Noisy(ids, theta), budget=3, scores=pd.DataFrame({"x": theta}))
    with pytest.warns(UserWarning, match="no covariates"):
        select(pool, "dash", Noisy(ids, theta), 3, scores=theta)
    bare = Pool.replay_only(pool.hierarchy)
    with pytest.raises(DashselError, match="no arrays"):
        select(bare, evaluator=Noisy(ids, theta), budget=3, scores=True)


# --- stopping ---------------------------------------------------------------------------------
def test_stop_delta_stops_when_confident_and_counts_the_savings() -> None:
    # One group far ahead of the others, low noise: the top 2 settles quickly.
    theta = np.array([0.95, 0.94, 0.60, 0.61, 0.30, 0.31, 0.32, 0.29, 0.5, 0.51, 0.49, 0.52])
    ids = [f"g{i // 2}d{i % 2}" for i in range(12)]
    pool = Pool.replay_only(Hierarchy(ids, [d[:2] for d in ids]))
    r = select(pool, evaluator=Noisy(ids, theta, 0.005), budget=60, k=2, stop_delta=0.05)
    assert r.stop_reason.startswith("confident (P(recommended top-2 is correct) = ")
    assert r.n_saved == 60 - r.n_evaluations > 0
    assert set(r.selected) == {"g0d0", "g0d1"}
    full = select(pool, evaluator=Noisy(ids, theta, 0.005), budget=60, k=2)
    assert full.stop_reason == "budget" and full.n_saved == 0 and full.n_evaluations == 60
    assert r.to_dict()["stop_reason"] == r.stop_reason


def test_a_stopped_run_resumes_to_its_budget_without_stop_delta(tmp_path: Path) -> None:
    # stop_delta is a setting of the call, not of the run's identity: dropping it continues.
    pool, ids, theta = world(5, 4, 3)
    theta[:3] += 0.3  # one group far ahead
    ev = Noisy(ids, theta, 0.005)
    path = tmp_path / "run.db"
    first = select(pool, evaluator=ev, budget=40, k=3, stop_delta=0.1, journal=path)
    assert first.stop_reason.startswith("confident") and first.n_evaluations < 40
    again = select(pool, evaluator=ev, budget=40, k=3, journal=path)
    assert again.n_resumed == first.n_evaluations and again.n_evaluations == 40
    assert again.stop_reason == "budget"


def test_stop_delta_checks() -> None:
    pool, ids, theta = world(4, 3, 3)
    ev = Noisy(ids, theta)
    for bad in (0.0, 1.0, -0.1, "0.1", True):
        with pytest.raises(DashselError, match="stop_delta"):
            select(pool, evaluator=ev, budget=3, stop_delta=bad)  # type: ignore[arg-type]
    with pytest.warns(UserWarning, match="no stopping rule"):
        r = select(pool, "dash", ev, 5, stop_delta=0.1)
    assert r.stop_reason == "budget" and r.n_evaluations == 5


# --- the command line -------------------------------------------------------------------------
def test_cli_run_default_engine_and_options(tmp_path: Path) -> None:
    runner = CliRunner()
    manifest = write_toy_manifest(tmp_path / "arrays", seed=0)
    out = tmp_path / "r.json"
    res = runner.invoke(
        app,
        ["run", str(manifest), "--budget", "20", "--top-k", "3", "--no-final", "--json", str(out)],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert d["policy"] == "hits" and d["scores_source"] == "computed" and d["deterministic"]
    assert d["stop_reason"].startswith("pool exhausted") and d["n_saved"] == 8
    res = runner.invoke(
        app,
        ["run", str(manifest), "--budget", "5", "--no-scores", "--no-deterministic",
         "--no-final", "--json", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert (
        d["scores"] is None and not d["deterministic"] and not d["policy_params"]["deterministic"]
    )
    table = write_toy_table(tmp_path / "table", seed=0)
    res = runner.invoke(
        app, ["run", str(table), "--budget", "40", "--top-k", "3", "--stop-delta", "0.1",
              "--deterministic", "--json", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert d["stop_reason"] != "budget" and d["n_saved"] > 0 and "saved" in res.output
    # The user's own policy parameter is not overridden by the evaluator's claim.
    args = [
        "run",
        str(table),
        "--budget",
        "14",
        "--param",
        "deterministic=true",
        "--json",
        str(out),
    ]
    assert runner.invoke(app, args).exit_code == 0
    d = json.loads(out.read_text())
    assert d["deterministic"] and d["policy_params"]["deterministic"]
    assert d["stop_reason"].startswith("pool exhausted") and d["n_evaluations"] == 12
    res = runner.invoke(app, ["run", str(manifest), "--policy", "dash", "--budget", "13",
                              "--no-final"])  # fmt: skip
    assert res.exit_code == 0 and "repeated" in res.output


def test_cli_policies_lists_the_default_first() -> None:
    assert f"default: {DEFAULT_POLICY}" in " ".join(
        CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output.split()
    )
    res = CliRunner().invoke(app, ["policies"], terminal_width=200)
    assert res.exit_code == 0
    rows = [line for line in res.output.splitlines() if line.startswith("│")]
    assert rows[0].split("│")[1].strip() == f"{DEFAULT_POLICY} (default)"
    assert any("group-mean" in r for r in rows)


def test_a_study_and_a_report_rebuild_the_runs_prior(tmp_path: Path) -> None:
    # The engine with scores on an array pool: a study driven from outside makes the same
    # trials, posterior and selection as the run, and the report shows the run's posterior.
    from dashsel.report import read_journal, replay_posterior
    from dashsel.study import Study

    pool = make_toy_pool(seed=0)
    ev = LogisticEvaluator(pool)
    res = select(pool, evaluator=ev, budget=8, k=3, seed=2, journal=tmp_path / "run.db",
                 score_final=False)  # fmt: skip
    assert res.scores_source == "computed"
    path = tmp_path / "study.db"
    Study.create(path, pool, seed=2, k=3, budget=8, deterministic=ev.deterministic).close()
    for _ in range(8):
        with Study.open(path) as study:
            [(trial, dataset)] = study.ask(1)
            seed = int(study.trials().set_index("number").loc[trial, "seed"])
            study.tell(trial, ev.evaluate(TrialSpec(trial, dataset, seed, 0)))

    # Equal up to rounding: the engine refits its hyperparameters warm-started, so a policy
    # rebuilt by replay can differ from the live one in the last bit.
    def close(a, b) -> None:
        for name in ("mean", "std", "group_mean", "group_std"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(a.pulls, b.pulls)

    with Study.open(path) as study:
        assert study.recommend().datasets == res.selected
        close(study.posterior(), res.posterior)
    posterior, rec = replay_posterior(*read_journal(tmp_path / "run.db"), k=3)
    assert rec.datasets == res.selected
    close(posterior, res.posterior)
    # Without the stored matrix (as for pools past MAX_STORED_COVARIATES) the report's engine
    # has no prior: a different posterior, which is why the matrix is kept.
    meta, frame = read_journal(tmp_path / "run.db")
    bare = {**meta, "scores": {k: v for k, v in meta["scores"].items() if k != "matrix"}}
    assert not np.allclose(replay_posterior(bare, frame, k=3)[0].mean, res.posterior.mean)
