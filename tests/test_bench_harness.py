"""The study harness: reward bank replay, study rows, sample-budget rule, JSON round trip.

A tiny stand-in suite (three Gaussian domains whose class means differ) replaces digits5/spam,
so a whole study with every study type runs in a few seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from dashsel.errors import DashselError
from dashsel.evaluators.sklearn import LogisticEvaluator
from dashsel.pool import ArraySplit, DatasetEntry, Pool
from dashsel.trial import TrialSpec
from dashsel_bench.common import regroup
from dashsel_bench.harness import (
    STUDIES,
    BankReplay,
    StudyConfig,
    StudyResult,
    build_bank,
    headline_markdown,
    run_study,
    write_report,
)

N_CLASSES, N_FEATURES = 3, 6


@dataclass
class GaussianSuite:
    """Three domains; each has its own class means, so only same-domain data helps."""

    name: str = "gauss3"
    targets: tuple[str, ...] = ("a", "b", "c")
    subset_size: int = 45
    local_size: int = 6

    def _draw(self, domain: str, n: int, rng: np.random.Generator) -> ArraySplit:
        means = np.random.default_rng(self.targets.index(domain) + 100).normal(
            0, 0.7, size=(N_CLASSES, N_FEATURES)
        )
        y = np.arange(n) % N_CLASSES
        return ArraySplit(means[y] + rng.normal(size=(n, N_FEATURES)), y)

    def make_pool(
        self,
        target: str,
        *,
        n_subsets: int = 3,
        grouping: str = "perfect",
        local_fraction: float = 1.0,
        seed: int = 0,
    ) -> Pool:
        rng = np.random.default_rng(seed)
        entries = []
        for dom in self.targets:
            for j in range(n_subsets):
                data = self._draw(dom, self.subset_size, rng)
                meta = {"domain": dom, "subset": j, "relevant": dom == target, "n": len(data)}
                entries.append(DatasetEntry(f"{dom}{j}", dom, data=data, meta=meta))
        n_local = max(N_CLASSES, round(local_fraction * self.local_size))
        return Pool(
            regroup(entries, grouping),  # type: ignore[arg-type]
            local=self._draw(target, n_local, rng),
            validation=self._draw(target, 90, rng),
            test=self._draw(target, 150, rng),
            name=f"{self.name}-{target}-{grouping}-{local_fraction:g}-{seed}",
        )


@pytest.fixture
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty evaluation cache, and single-threaded BLAS (tiny models: threads only slow)."""
    monkeypatch.setenv("DASHSEL_CACHE", str(tmp_path / "cache"))
    with threadpool_limits(limits=1):
        yield tmp_path


METHODS = ("dash", "flat", "random", "random-samples", "mabwiser-ucb")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> StudyResult:
    """One small study with every study type, shared by the tests below."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DASHSEL_CACHE", str(tmp_path_factory.mktemp("cache")))
        config = StudyConfig(
            suite=GaussianSuite(),
            targets=("a", "b"),
            methods=METHODS,
            runs=2,
            budgets=(6, 12),
            checkpoints=(3, 6, 20),  # 20 > main budget: dropped, and 12 added
            curve_methods=("flat", "dash"),
            local_fractions=(0.5,),
            n_seeds=2,
            command="pytest",
        )
        return run_study(config)


# --- reward bank -----------------------------------------------------------------------------
def test_bank_replay_equals_direct_evaluation(cache_env: Path) -> None:
    pool = GaussianSuite().make_pool("a", n_subsets=1)
    evaluator = LogisticEvaluator(pool, bootstrap=True)
    bank = build_bank(evaluator, pool.dataset_ids, 3)
    replay = BankReplay(bank)
    for d in ("a0", "b0"):
        for s in range(3):
            direct = evaluator.evaluate(TrialSpec(0, d, s, 0))
            # Trial number and pull do not matter; the seed picks the bank column.
            assert replay.evaluate(TrialSpec(9, d, s, 4)) == direct
            assert replay.evaluate(TrialSpec(1, d, s + 3 * 1000, 0)) == direct
    # Bootstrapped pulls differ between seeds (the bank is noisy, not constant).
    assert np.ptp(bank.rewards, axis=1).max() > 0
    # Deterministic: a second build (and a parallel one) gives the same bank.
    assert np.array_equal(build_bank(evaluator, pool.dataset_ids, 3).rewards, bank.rewards)
    fresh = LogisticEvaluator(pool, bootstrap=True)  # a new object: the workers evaluate anew
    parallel = build_bank(fresh, pool.dataset_ids, 2, workers=2)
    assert np.array_equal(parallel.rewards, bank.rewards[:, :2])


def test_bank_evaluator_describe_and_unknown_id(cache_env: Path) -> None:
    pool = GaussianSuite().make_pool("b", n_subsets=1)
    evaluator = LogisticEvaluator(pool)
    replay = BankReplay(build_bank(evaluator, pool.dataset_ids[:2], 2))
    desc = replay.describe()
    assert desc["n_seeds"] == 2 and desc["source"] == evaluator.describe()
    with pytest.raises(DashselError, match="not in the reward bank"):
        replay.evaluate(TrialSpec(0, pool.dataset_ids[-1], 0, 0))


# --- config ----------------------------------------------------------------------------------
def test_config_from_cli_options() -> None:
    cfg = StudyConfig.from_options(
        GaussianSuite(),
        methods="dash, flat,UCB",
        runs=4,
        budgets="45,15,150",
        studies="main,curve",
        targets="a,b",
    )
    assert cfg.methods == ("dash", "flat", "ucb")
    assert cfg.budgets == (15, 45, 150) and cfg.main_budget == 150
    assert cfg.studies == ("main_table", "curve")
    assert cfg.targets == ("a", "b") and cfg.runs == 4
    quick = StudyConfig.from_options(GaussianSuite(), quick=True)
    assert quick.targets == ("a", "b") and quick.runs == 5 and quick.budgets == (15, 30)
    assert quick.n_subsets == 20 and {"hits", "dash", "heuristic", "scores-only"} <= set(
        quick.methods
    )
    assert StudyConfig().studies == STUDIES


def test_config_rejects_bad_input() -> None:
    with pytest.raises(DashselError, match="unknown study"):
        StudyConfig(studies=("tabel",))
    with pytest.raises(DashselError, match="budgets"):
        StudyConfig(budgets=(0,))
    with pytest.raises(DashselError, match="unknown target"):
        run_study(StudyConfig(suite=GaussianSuite(), targets=("z",), methods=("dash",)))


# --- studies ---------------------------------------------------------------------------------
def test_every_study_ran(study: StudyResult) -> None:
    assert set(study.frames) == set(STUDIES)
    for name, df in study.frames.items():
        assert not df.empty, name
        assert df["accuracy"].between(0, 1).all(), name
    assert not study.notes, study.notes  # every method's dependency is installed here


def test_main_table_has_every_method_target_budget_run(study: StudyResult) -> None:
    df = study.frame("main_table")
    for target in ("a", "b"):
        for method in ("dash", "flat", "random"):
            for budget in (6, 12):
                cell = df[(df.target == target) & (df.method == method) & (df.budget == budget)]
                assert sorted(cell["run"]) == [0, 1]
                assert (cell["n_evaluations"] == budget).all()
        # References once per run, budget 0.
        refs = df[(df.target == target) & df.method.isin(["local", "global"])]
        assert len(refs) == 4 and (refs["budget"] == 0).all()
    # Policies keep k = number of same-domain candidates.
    assert (df[df.method == "dash"]["n_selected"] == 3).all()


def test_global_beats_local_on_stand_in(study: StudyResult) -> None:
    df = study.frame("main_table")
    acc = df.groupby(["target", "method"])["accuracy"].mean()
    for target in ("a", "b"):
        assert acc[(target, "global")] > acc[(target, "local")] + 0.05


def test_dash_finds_relevant_datasets(study: StudyResult) -> None:
    df = study.frame("main_table")
    dash = df[(df.method == "dash") & (df.budget == 12)]
    # The stand-in makes foreign domains useless, so a 12-step DaSH run picks mostly own-domain
    # datasets (random picks would average 1 of 3).
    assert dash["n_relevant"].mean() >= 2


def test_instance_sample_budget_is_dash_selection_size(study: StudyResult) -> None:
    df = study.frame("instance_baselines")
    pools = {t: GaussianSuite().make_pool(t) for t in ("a", "b")}
    for (target, _run), g in df.groupby(["target", "run"]):
        dash = g[g.method == "dash"].iloc[0]
        expected = sum(pools[target].entry(d).meta["n"] for d in dash["selected"].split(";"))
        assert dash["n_samples"] == expected
        for method in ("random-samples",):
            assert g[g.method == method]["n_samples"].item() == expected


def test_curve_checkpoints_monotone(study: StudyResult) -> None:
    df = study.frame("curve")
    curves = df[~df.method.isin(["local", "global"])]
    assert set(curves["method"]) == {"flat", "dash", "random"}
    for _, g in curves.groupby(["target", "method", "run"]):
        g = g.sort_values("budget")
        assert list(g["budget"]) == [3, 6, 12]
        assert list(g["n_evaluations"]) == [3, 6, 12]


def test_small_budget_is_one_pull_per_candidate(study: StudyResult) -> None:
    df = study.frame("small_budget")
    assert set(df["method"]) == {"local", "flat", "dash-mixed", "dash", "hits", "global"}
    assert set(df[~df.method.isin(["local", "global"])]["budget"]) == {9}


def test_weak_init_and_grouping(study: StudyResult) -> None:
    weak = study.frame("weak_init")
    assert set(weak["local_fraction"]) == {0.5} and set(weak["method"]) == {"local", "dash"}
    grouping = study.frame("grouping_ablation")
    assert {"flat", "dash", "dash-mixed", "dash-cross", "hits-mixed", "hits-cross"} <= set(
        grouping["method"]
    )
    assert grouping["budget"].max() == 12


def test_peers_study_and_cached_scores(study: StudyResult) -> None:
    peers = study.frame("peers")
    assert set(peers["method"]) == {"local", "global", "dash", "mabwiser-ucb"}
    # Shared cells are identical across studies (computed once).
    main = study.frame("main_table")
    key = ["target", "run", "accuracy", "selected"]
    a = peers[peers.method == "dash"][key].reset_index(drop=True)
    b = main[(main.method == "dash") & (main.budget == 12)][key].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_missing_dependency_is_skipped_with_note(
    cache_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashsel_bench import methods

    monkeypatch.setattr(
        methods.PyDVLMethod, "unavailable", lambda self: "pydvl-banzhaf: no module 'pydvl'"
    )
    result = run_study(
        StudyConfig(
            suite=GaussianSuite(),
            targets=("a",),
            methods=("dash", "pydvl-banzhaf"),
            runs=1,
            budgets=(4,),
            studies=("peers",),
            n_seeds=2,
        )
    )
    assert any("pydvl" in n for n in result.notes)
    assert "pydvl-banzhaf" not in set(result.frame("peers")["method"])
    assert "dash" in set(result.frame("peers")["method"])


def test_result_json_round_trip(study: StudyResult, tmp_path: Path) -> None:
    out = write_report(study, tmp_path / "out", plots=False)  # plots: tests/test_bench_report.py
    loaded = StudyResult.load(out / "results.json")
    assert loaded.config.to_dict() == study.config.to_dict()
    assert loaded.notes == study.notes and loaded.timings == study.timings
    for name, df in study.frames.items():
        pd.testing.assert_frame_equal(
            loaded.frames[name].reset_index(drop=True),
            df.reset_index(drop=True),
            check_dtype=False,
        )
    assert "DaSH" in headline_markdown(study)


def test_progress_is_reported(cache_env: Path) -> None:
    calls: list[tuple[str, int | None, int | None]] = []
    run_study(
        StudyConfig(
            suite=GaussianSuite(),
            targets=("c",),
            methods=("dash",),
            runs=1,
            budgets=(3,),
            studies=("main_table",),
            n_seeds=1,
            cache=False,
        ),
        progress=lambda msg, done=None, total=None: calls.append((msg, done, total)),
    )
    assert calls[-1] == ("done", 3, 3)
    assert os.environ["DASHSEL_CACHE"]  # the fixture isolated the cache


def test_engine_study_with_scores(cache_env: Path) -> None:
    """The engine, the heuristic and the scores alone through the runner: the scores are
    computed once per pool and cached on disk, and the scores-only curve is flat."""
    config = StudyConfig(
        suite=GaussianSuite(),
        targets=("a",),
        methods=("hits", "hits-noscores", "heuristic", "scores-only"),
        runs=2,
        budgets=(3, 6),
        checkpoints=(3, 6),
        curve_methods=(),
        n_seeds=2,
        studies=("main_table", "curve"),
    )
    result = run_study(config)
    df = result.frame("main_table")
    assert set(df["method"]) == {
        "local",
        "global",
        "hits",
        "hits-noscores",
        "heuristic",
        "scores-only",
    }
    only = df[df["method"] == "scores-only"]
    assert (only["n_evaluations"] == 0).all() and only["accuracy"].nunique() == 1
    hits = df[df["method"] == "hits"]
    assert (hits["n_evaluations"] == hits["budget"]).all()
    assert len(list((cache_env / "cache" / "scores").glob("*.csv"))) == 1
    assert "scores" in result.timings
