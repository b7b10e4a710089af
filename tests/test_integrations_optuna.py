"""DaSHSampler: Optuna's own sampler suite, and the datasets it chooses on a pool of known truth."""

from __future__ import annotations

import importlib
import math
import sys
import time

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("optuna.testing.pytest_samplers")

from optuna.testing.pytest_samplers import BasicSamplerTestCase  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from dashsel.errors import DashselError, MissingExtraError  # noqa: E402
from dashsel.integrations.optuna import DaSHSampler  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

# --- a replay pool with known truth: 60 datasets in 6 groups, group "g4" clearly best -------
GROUP_MEANS = (0.55, 0.60, 0.62, 0.58, 0.80, 0.65)
GROUPS = {f"g{g}_d{d:02d}": f"g{g}" for g in range(6) for d in range(10)}
IDS = list(GROUPS)
_truth_rng = np.random.default_rng(2024)
TRUTH = {d: GROUP_MEANS[int(d[1])] + float(_truth_rng.normal(0, 0.04)) for d in IDS}
NOISE = 0.05
K = 5


def noisy(dataset: str, number: int, seed: int) -> float:
    """A reward that depends only on (dataset, trial number, seed): replays are exact."""
    rng = np.random.default_rng([seed, number, IDS.index(dataset)])
    return TRUTH[dataset] + float(rng.normal(0, NOISE))


def normalized_utility(chosen: list[str]) -> float:
    """(mean truth of chosen - pool mean) / (mean truth of the true top-k - pool mean):
    1 for the best k, 0 on average for a random pick."""
    values = np.array(sorted(TRUTH.values(), reverse=True))
    base, best = values.mean(), values[: len(chosen)].mean()
    return float((np.mean([TRUTH[d] for d in chosen]) - base) / (best - base))


# --- Optuna's own suite: every other parameter goes to the base sampler ----------------------
class TestOptunaSamplerSuite(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self):
        return lambda: DaSHSampler(GROUPS, seed=0)


class TestOptunaSamplerSuiteWithTPE(BasicSamplerTestCase):
    # A multivariate base sampler builds a relative search space; the dataset parameter must
    # never enter it.
    @pytest.fixture
    def sampler(self):
        return lambda: DaSHSampler(
            GROUPS,
            seed=0,
            base_sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=2),
        )


# --- dataset choices -------------------------------------------------------------------------
def run_study(seed: int, n_trials: int = 30, direction: str = "maximize", **kw) -> tuple:
    sampler = DaSHSampler(GROUPS, seed=seed, k=K, **kw)
    study = optuna.create_study(direction=direction, sampler=sampler)
    sign = 1.0 if direction == "maximize" else -1.0

    def objective(trial):
        dataset = trial.suggest_categorical("dataset", IDS)
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)  # goes to the base sampler
        # Minimising: the objective is an error rate, 1 - accuracy.
        acc = noisy(dataset, trial.number, seed)
        return acc if sign > 0 else 1.0 - acc

    study.optimize(objective, n_trials=n_trials)
    return sampler, study


SEEDS = range(5)
THRESHOLD = 0.75


def test_random_selection_fails_the_threshold() -> None:
    # The threshold is not one any choice passes: five random datasets score about 0, and
    # choosing the trials' datasets at random (same budget, same final rule) scores below it.
    picks = [
        normalized_utility(list(np.random.default_rng(s).choice(IDS, K, replace=False)))
        for s in SEEDS
    ]
    assert np.mean(picks) < THRESHOLD / 2
    scores = []
    for seed in SEEDS:
        sampler, study = run_study(seed, policy="random")
        scores.append(normalized_utility(sampler.recommend(study)))
    assert np.mean(scores) < THRESHOLD, scores


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_study_selects_near_best_datasets(direction: str) -> None:
    scores = []
    for seed in SEEDS:
        sampler, study = run_study(seed, direction=direction)
        chosen = sampler.recommend(study)
        assert len(chosen) == K and len(set(chosen)) == K
        assert sampler.recommend() == chosen  # bound to the last study seen
        scores.append(normalized_utility(chosen))
    assert np.mean(scores) >= THRESHOLD, scores


def test_minimize_negates_values() -> None:
    sampler, study = run_study(0, n_trials=8, direction="minimize")
    told = sampler.history(study)
    assert [d for d, _ in told] == [t.params["dataset"] for t in study.trials]
    assert [r for _, r in told] == pytest.approx([-t.value for t in study.trials])


def test_best_group_gets_most_trials() -> None:
    _, study = run_study(0, n_trials=40)
    datasets = [t.params["dataset"] for t in study.trials]
    best_group = sum(d.startswith("g4") for d in datasets[10:])
    assert best_group > len(datasets[10:]) / 2


def test_other_params_go_to_the_base_sampler() -> None:
    base = optuna.samplers.TPESampler(seed=0, n_startup_trials=3, multivariate=True)
    sampler = DaSHSampler(GROUPS, seed=0, base_sampler=base, deterministic=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        d = trial.suggest_categorical("dataset", IDS)
        x = trial.suggest_float("x", -1.0, 1.0)
        return TRUTH[d] - x**2

    study.optimize(objective, n_trials=15)
    xs = [t.params["x"] for t in study.trials]
    assert all(-1.0 <= x <= 1.0 for x in xs)
    assert len(set(xs)) == len(xs)  # drawn, not fixed
    # The datasets are dashsel's (deterministic: no repeat), not TPE's.
    assert len({t.params["dataset"] for t in study.trials}) == 15


def test_failed_and_nan_trials_are_set_aside() -> None:
    broken = {"g4_d00", "g4_d01"}
    sampler = DaSHSampler(GROUPS, seed=3)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        d = trial.suggest_categorical("dataset", IDS)
        if d == "g4_d00":
            raise ValueError("training crashed")
        if d == "g4_d01":
            return float("nan")
        return noisy(d, trial.number, 3)

    study.optimize(objective, n_trials=40, catch=(ValueError,))
    datasets = [t.params["dataset"] for t in study.trials]
    for d in broken:
        assert datasets.count(d) <= 1
    assert all(d not in broken for d, _ in sampler.history(study))
    assert not set(sampler.recommend(study, k=10)) & broken


def test_subset_of_choices_is_respected() -> None:
    subset = [d for d in IDS if not d.startswith("g4")]
    sampler = DaSHSampler(GROUPS, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: TRUTH[t.suggest_categorical("dataset", subset)], n_trials=20)
    assert all(t.params["dataset"] in subset for t in study.trials)


def test_rdb_study_resumes_without_repeating_a_deterministic_dataset(tmp_path) -> None:
    def objective(trial):
        d = trial.suggest_categorical("dataset", IDS)
        return TRUTH[d]

    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = optuna.create_study(
        study_name="s",
        storage=url,
        direction="maximize",
        sampler=DaSHSampler(GROUPS, seed=7, deterministic=True),
    )
    first.optimize(objective, n_trials=12)
    # A new process would build a new sampler and load the study from the storage.
    sampler = DaSHSampler(GROUPS, seed=7, deterministic=True)
    resumed = optuna.load_study(study_name="s", storage=url, sampler=sampler)
    resumed.optimize(objective, n_trials=12)
    datasets = [t.params["dataset"] for t in resumed.trials]
    assert len(datasets) == 24 and len(set(datasets)) == 24

    # The same as an uninterrupted study: the sampler's choices live in the storage only.
    whole = optuna.create_study(
        direction="maximize", sampler=DaSHSampler(GROUPS, seed=7, deterministic=True)
    )
    whole.optimize(objective, n_trials=24)
    assert [t.params["dataset"] for t in whole.trials] == datasets
    assert sampler.recommend(resumed, k=3) == whole.sampler.recommend(whole, k=3)


def test_parallel_jobs_choose_distinct_datasets() -> None:
    sampler = DaSHSampler(GROUPS, seed=1, deterministic=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        d = trial.suggest_categorical("dataset", IDS)
        time.sleep(0.01)  # so that the two threads' trials overlap
        return TRUTH[d]

    study.optimize(objective, n_trials=20, n_jobs=2)
    assert len(study.trials) == 20
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    datasets = [t.params["dataset"] for t in study.trials]
    assert len(set(datasets)) == 20
    assert normalized_utility(sampler.recommend(study, k=K)) > 0


def test_pending_trials_are_not_chosen_again() -> None:
    sampler = DaSHSampler(GROUPS, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    running = [study.ask() for _ in range(6)]
    chosen = [t.suggest_categorical("dataset", IDS) for t in running]
    assert len(set(chosen)) == 6


def test_budget_stops_the_study() -> None:
    sampler = DaSHSampler(GROUPS, seed=0, budget=7)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: TRUTH[t.suggest_categorical("dataset", IDS)], n_trials=50)
    assert len(study.trials) == 7


def test_user_errors_are_one_line() -> None:
    with pytest.raises(DashselError, match="unknown policy"):
        DaSHSampler(GROUPS, policy="nope")
    with pytest.raises(DashselError, match="percentile"):
        DaSHSampler(GROUPS, k=2, percentile=90)
    with pytest.raises(DashselError, match="groups must be"):
        DaSHSampler(["a", "b"])
    sampler = DaSHSampler(GROUPS)
    with pytest.raises(DashselError, match="pass the study"):
        sampler.recommend()
    study = optuna.create_study(sampler=sampler)
    with pytest.raises(DashselError, match="suggest_categorical"):
        study.optimize(lambda t: t.suggest_float("dataset", 0, 1), n_trials=1)
    with pytest.raises(DashselError, match="not in the pool"):
        study.optimize(
            lambda t: float(t.suggest_categorical("dataset", ["zz", "yy"]) == "zz"), n_trials=1
        )
    with pytest.raises(DashselError, match="nothing to recommend"):
        sampler.recommend(study)
    multi = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    with pytest.raises(DashselError, match="single-objective"):
        multi.optimize(lambda t: (TRUTH[t.suggest_categorical("dataset", IDS)], 0.0), n_trials=1)


def test_missing_optuna_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    monkeypatch.delitem(sys.modules, "dashsel.integrations.optuna")
    with pytest.raises(MissingExtraError, match=r"pip install 'dashsel\[optuna\]'"):
        importlib.import_module("dashsel.integrations.optuna")


def test_values_and_rewards_helpers() -> None:
    from dashsel.integrations._engine import reward_of

    assert reward_of(0.3, True) == 0.3
    assert reward_of(0.3, False) == -0.3
    assert reward_of(math.inf, True) is None
    assert reward_of(float("nan"), False) is None
    assert reward_of("x", True) is None


@pytest.mark.slow
def test_docs_example_runs_as_written(tmp_path, monkeypatch, capsys) -> None:
    import ast
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
    block = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)[0]
    assert "DaSHSampler" in block
    monkeypatch.chdir(tmp_path)  # the example writes dash-study.db in the working directory
    for _ in range(2):  # the second run resumes the study from its SQLite file
        exec(compile(block, str(doc), "exec"), {"__name__": "__docs__"})
    lines = capsys.readouterr().out.splitlines()
    relevant = lines[-1].split(": ")[1]
    selected = ast.literal_eval(lines[-2].split(": ", 1)[1])
    assert len(selected) == 3 and all(d.startswith(relevant + "-") for d in selected)
    assert len(optuna.load_study(study_name="toy", storage="sqlite:///dash-study.db").trials) == 60


def test_groups_as_pool_or_hierarchy_and_policy_objects() -> None:
    from dashsel.hierarchy import Hierarchy
    from dashsel.integrations._engine import Engine
    from dashsel.policies import DaSH
    from dashsel.pool import Pool

    hierarchy = Hierarchy(IDS, [GROUPS[d] for d in IDS])
    history = [(d, TRUTH[d]) for d in IDS[::7]]
    picks = {
        Engine(groups, seed=2).choose(history, n_asked=9)
        for groups in (GROUPS, hierarchy, Pool.replay_only(hierarchy))
    }
    assert len(picks) == 1
    # A Policy object is copied by its parameters; the copy is what a name would build.
    by_object = Engine(GROUPS, seed=2, policy=DaSH(sigma_r=0.1))
    by_name = Engine(GROUPS, seed=2, policy="dash", policy_params={"sigma_r": 0.1})
    assert by_object.choose(history, 9) == by_name.choose(history, 9)
    assert by_object.recommend(history, k=4) == by_name.recommend(history, k=4)
    with pytest.raises(DashselError, match="policy_params"):
        Engine(GROUPS, policy=DaSH(), policy_params={"sigma_r": 0.1})
    with pytest.raises(DashselError, match="budget"):
        Engine(GROUPS, budget=0)
    with pytest.raises(DashselError, match="unknown dataset"):
        Engine(GROUPS).choose([("nope", 0.5)], 1)


def test_engine_cache_gives_what_a_fresh_rebuild_gives() -> None:
    from dashsel.integrations._engine import Engine

    rng = np.random.default_rng(5)
    cached = Engine(GROUPS, seed=3)
    history: list[tuple[str, float]] = []
    for step in range(25):
        if step % 7 == 6:  # a trial finishing out of order: history is not an extension
            history.insert(int(rng.integers(len(history))), (IDS[step], TRUTH[IDS[step]]))
        d = cached.choose(history, n_asked=step, pending=[d for d, _ in history[-2:]])
        assert d == Engine(GROUPS, seed=3).choose(
            history, n_asked=step, pending=[d for d, _ in history[-2:]]
        )
        history.append((d, noisy(d, step, 0)))
    assert cached.recommend(history, k=5) == Engine(GROUPS, seed=3).recommend(history, k=5)
