"""DaSHSearcher: the Searcher protocol driven by hand, and one real Ray Tune run."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import zlib

import numpy as np
import pytest

# Ray >= 2.5x turns token authentication on for a new local cluster. Tests run private local
# clusters, so it is off; and it must be off before the first ray.init of the test process:
# switching it between two sessions of one process makes every Tune actor die unstarted.
# (Set at import, i.e. at collection, before any test of any module starts Ray.)
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

pytest.importorskip("ray.tune")

from ray import tune
from ray.tune.search import Searcher

from dashsel.errors import DashselError, MissingExtraError
from dashsel.integrations.ray_tune import DaSHSearcher

# --- a replay pool with known truth: 60 datasets in 6 groups, group "g4" clearly best -------
GROUP_MEANS = (0.55, 0.60, 0.62, 0.58, 0.80, 0.65)
IDS = [f"g{g}_d{d:02d}" for g in range(6) for d in range(10)]
GROUPS = {d: d[:2] for d in IDS}
K = 5
THRESHOLD = 0.75


def measured(dataset: str) -> float:
    """The replay table: one recorded accuracy per dataset (group mean + its own offset)."""
    rng = np.random.default_rng(zlib.crc32(dataset.encode()))
    return GROUP_MEANS[int(dataset[1])] + float(rng.normal(0, 0.04))


TABLE = {d: measured(d) for d in IDS}


def noisy(dataset: str, step: int) -> float:
    rng = np.random.default_rng([step, IDS.index(dataset)])
    return TABLE[dataset] + float(rng.normal(0, 0.05))


def normalized_utility(chosen: list[str]) -> float:
    """1 for the true top-k, 0 on average for a random pick."""
    values = np.array(sorted(TABLE.values(), reverse=True))
    base, best = values.mean(), values[: len(chosen)].mean()
    return float((np.mean([TABLE[d] for d in chosen]) - base) / (best - base))


def drive(searcher: DaSHSearcher, n: int, concurrent: int = 2, start: int = 0) -> list[str]:
    """Suggest and complete n trials by hand, ``concurrent`` in flight, oldest finishing first."""
    running: list[tuple[str, str]] = []
    order = []
    for i in range(start, start + n):
        trial_id = f"t{i}"
        config = searcher.suggest(trial_id)
        if config == Searcher.FINISHED:
            break
        running.append((trial_id, config["dataset"]))
        order.append(config["dataset"])
        if len(running) == concurrent:
            tid, d = running.pop(0)
            searcher.on_trial_complete(tid, {"acc": noisy(d, int(tid[1:]))})
    for tid, d in running:
        searcher.on_trial_complete(tid, {"acc": noisy(d, int(tid[1:]))})
    return order


# --- the protocol, without a Ray cluster -----------------------------------------------------
def test_selects_near_best_and_random_does_not() -> None:
    ours, rand = [], []
    for seed in range(5):
        s = DaSHSearcher(GROUPS, metric="acc", seed=seed, k=K)
        drive(s, 30)
        ours.append(normalized_utility(s.recommend()))
        r = DaSHSearcher(GROUPS, metric="acc", seed=seed, k=K, policy="random")
        drive(r, 30)
        rand.append(normalized_utility(r.recommend()))
    assert np.mean(ours) >= THRESHOLD, ours
    assert np.mean(rand) < THRESHOLD, rand


def test_pending_trials_get_other_datasets() -> None:
    s = DaSHSearcher(GROUPS, metric="acc", seed=0)
    chosen = [s.suggest(f"t{i}")["dataset"] for i in range(8)]
    assert len(set(chosen)) == 8


def test_min_mode_negates_and_failures_are_set_aside() -> None:
    s = DaSHSearcher(GROUPS, metric="loss", mode="min", seed=0)
    a, b, c = (s.suggest(t)["dataset"] for t in ("a", "b", "c"))
    s.on_trial_complete("a", {"loss": 0.25})
    s.on_trial_complete("b", {"loss": float("nan")})
    s.on_trial_complete("c", None, error=True)
    s.on_trial_complete("zzz", {"loss": 0.1})  # not one of ours: ignored
    assert s.history == [(a, -0.25)]
    later = [s.suggest(f"t{i}")["dataset"] for i in range(30)]
    assert b not in later and c not in later
    assert b not in s.recommend(k=10) and c not in s.recommend(k=10)


def test_budget_finishes() -> None:
    s = DaSHSearcher(GROUPS, metric="acc", budget=3)
    assert [s.suggest(f"t{i}") != Searcher.FINISHED for i in range(4)] == [True] * 3 + [False]


def test_save_restore_continues_like_an_uninterrupted_searcher(tmp_path) -> None:
    whole = DaSHSearcher(GROUPS, metric="acc", seed=4, deterministic=True)
    expected = drive(whole, 20, concurrent=1)

    first = DaSHSearcher(GROUPS, metric="acc", seed=4, deterministic=True)
    got = drive(first, 10, concurrent=1)
    path = tmp_path / "searcher-state.pkl"  # the name Tune uses; the content is JSON
    first.save(str(path))
    json.loads(path.read_text())  # plain JSON, never a pickle
    resumed = DaSHSearcher(GROUPS, metric="acc", seed=4, deterministic=True)
    resumed.restore(str(path))
    got += drive(resumed, 10, concurrent=1, start=10)
    assert got == expected
    assert len(set(got)) == 20
    assert resumed.recommend(k=3) == whole.recommend(k=3)

    other = DaSHSearcher({"x": "A", "y": "B"}, metric="acc", seed=4)
    with pytest.raises(DashselError, match="another pool"):
        other.restore(str(path))
    path.write_text("not json")
    with pytest.raises(DashselError, match="cannot read"):
        resumed.restore(str(path))


def test_param_space_choice_and_other_domains() -> None:
    s = DaSHSearcher(GROUPS, seed=0)
    subset = [d for d in IDS if d.startswith("g1")]
    space = {
        "dataset": tune.choice(subset),
        "lr": tune.loguniform(1e-4, 1e-1),
        "model": {"width": tune.randint(8, 64), "depth": 3},
        "epochs": 2,
    }
    assert s.set_search_properties("acc", "max", space)
    configs = [s.suggest(f"t{i}") for i in range(12)]
    assert all(c["dataset"] in subset for c in configs)
    assert all(1e-4 <= c["lr"] <= 1e-1 and 8 <= c["model"]["width"] < 64 for c in configs)
    assert isinstance(configs[0]["lr"], float)
    again = DaSHSearcher(GROUPS, seed=0)
    again.set_search_properties("acc", "max", space)
    assert [again.suggest(f"t{i}") for i in range(12)] == configs  # seeded

    assert not DaSHSearcher(GROUPS).set_search_properties(
        "acc", "max", {"lr": tune.grid_search([0.1, 0.01])}
    )


def test_user_errors_are_one_line() -> None:
    with pytest.raises(DashselError, match="mode must be"):
        DaSHSearcher(GROUPS, metric="acc", mode="maximize")
    with pytest.raises(DashselError, match="unknown policy"):
        DaSHSearcher(GROUPS, metric="acc", policy="nope")
    with pytest.raises(DashselError, match="no metric"):
        DaSHSearcher(GROUPS).suggest("t0")
    with pytest.raises(DashselError, match="nothing to recommend"):
        DaSHSearcher(GROUPS, metric="acc").recommend()
    with pytest.raises(DashselError, match=r"tune\.choice"):
        DaSHSearcher(GROUPS).set_search_properties("acc", "max", {"dataset": tune.uniform(0, 1)})


def test_missing_ray_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    monkeypatch.delitem(sys.modules, "dashsel.integrations.ray_tune")
    with pytest.raises(MissingExtraError, match=r"pip install 'dashsel\[tune\]'"):
        importlib.import_module("dashsel.integrations.ray_tune")


# --- one real Tune run (a local Ray instance, auth disabled, a small object store) ----------
@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    # Ray workers unpickle this module's functions by value: they cannot import a test file.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024 * 1024,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


def trainable(config: dict) -> None:
    import os

    start = time.time()
    # Rendezvous of the first two trials, so that two trials surely run at once when Tune
    # allows two (actor start-up on a busy machine can exceed a whole trial).
    sync = config["sync_dir"]
    try:
        os.close(os.open(os.path.join(sync, "first"), os.O_CREAT | os.O_EXCL))
        deadline = time.time() + 30
        while not os.path.exists(os.path.join(sync, "second")) and time.time() < deadline:
            time.sleep(0.05)
    except FileExistsError:
        with open(os.path.join(sync, "second"), "a"):
            pass
    time.sleep(0.1)
    tune.report(
        {
            "acc": TABLE[config["dataset"]],
            "dataset": config["dataset"],
            "epochs": config["epochs"],
            "start": start,
            "end": time.time(),
        }
    )


class RecordingSearcher(DaSHSearcher):
    """Keeps the final results Tune gives the searcher (read back from memory, not from Tune's
    result files, which a loaded machine may not have flushed when ``fit`` returns)."""

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.results = [*getattr(self, "results", []), result]
        super().on_trial_complete(trial_id, result, error)


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_tuner_selects_near_best_datasets(ray_session, tmp_path) -> None:
    searcher = RecordingSearcher(GROUPS, metric="acc", mode="max", seed=0, k=K)
    tuner = tune.Tuner(
        trainable,
        param_space={"lr": tune.loguniform(1e-4, 1e-1), "epochs": 3, "sync_dir": str(tmp_path)},
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=24, max_concurrent_trials=2, reuse_actors=True
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="dash", verbose=0),
    )
    tuner.fit()
    results = searcher.results
    assert len(results) == 24 and all(r is not None for r in results)
    assert all(r["epochs"] == 3 for r in results)  # constants of param_space pass through
    assert len(searcher.history) == 24  # the searcher was told every trial

    # At least two trials ran at once, and trials that overlapped trained different datasets.
    rows = sorted((r["start"], r["end"], r["dataset"]) for r in results)
    overlapping = [(a[2], b[2]) for i, a in enumerate(rows) for b in rows[i + 1 :] if b[0] < a[1]]
    assert overlapping
    assert all(x != y for x, y in overlapping)

    chosen = searcher.recommend()
    assert len(chosen) == K
    assert normalized_utility(chosen) >= THRESHOLD
    # Tune saved the searcher's state in the experiment directory, as JSON.
    saved = list((tmp_path / "dash").glob("searcher-state-*.pkl"))
    assert saved and json.loads(saved[0].read_text())["steps"] == 24
