"""Trial failures in a run: retries, timeouts, bad rewards, datasets set aside, resuming."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dashsel import select
from dashsel.errors import DashselError
from dashsel.evaluators.base import Evaluator
from dashsel.executors import ProcessExecutor
from dashsel.hierarchy import Hierarchy
from dashsel.pool import Pool
from dashsel.report import read_journal
from dashsel.trial import TrialSpec

GROUPS = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"], "c": ["c0", "c1"]}
BASE = {"a0": 0.8, "a1": 0.7, "a2": 0.75, "b0": 0.3, "b1": 0.4, "b2": 0.2, "c0": 0.5, "c1": 0.55}
KEY = ["number", "dataset_id", "seed", "pull", "reward"]


def make_pool() -> Pool:
    return Pool.replay_only(Hierarchy.from_mapping(GROUPS), name="toy")


class Failing(Evaluator):
    """Accuracy-like rewards in [0, 1]. ``bad`` maps a dataset to what goes wrong with it:
    ``"raise"``, ``"hang"`` (sleeps a minute), ``"flaky"`` (fails on the first attempt of
    each trial, recorded in ``control``), or a value returned as the reward."""

    reward_range = (0.0, 1.0)

    def __init__(self, bad: dict[str, Any] | None = None, control: str | None = None) -> None:
        self.bad = dict(bad or {})
        self.control = control

    def evaluate(self, spec: TrialSpec) -> Any:
        what = self.bad.get(spec.dataset_id)
        if what == "raise":
            raise OSError(f"cannot read {spec.dataset_id}.npz")
        if what == "hang":
            time.sleep(60)
        if what == "flaky":
            mark = Path(str(self.control), f"tried-{spec.number}")
            if not mark.exists():
                mark.touch()
                raise RuntimeError("transient")
        elif what is not None:
            return what
        return BASE[spec.dataset_id] + 0.05 * float(np.random.default_rng(spec.seed).normal()) / 4

    def describe(self) -> dict[str, Any]:
        return {"kind": "failing", "bad": {k: repr(v) for k, v in self.bad.items()}}


def test_a_failing_dataset_is_set_aside_and_the_run_goes_on() -> None:
    res = select(make_pool(), "dash", Failing({"a0": "raise"}), 20, seed=1)
    assert set(res.failed_datasets) == {"a0"}
    assert res.failed_datasets["a0"].startswith("OSError: evaluating dataset 'a0' (trial ")
    assert "a0" not in set(res.trials["dataset_id"])  # finished trials only
    assert res.n_evaluations == 19  # one trial failed; the budget counts it
    assert "a0" not in res.selected
    assert res.to_dict()["failed_datasets"] == res.failed_datasets


def test_set_aside_datasets_are_never_asked_again(tmp_path) -> None:
    path = tmp_path / "run.db"
    res = select(make_pool(), "dash", Failing({"a0": "raise", "a1": "raise"}), 24, seed=2,
                 journal=path, batch_size=2)  # fmt: skip
    _, frame = read_journal(path)
    failed = frame[frame["state"] == "failed"]
    # Each bad dataset failed once: after its batch it was excluded from every ask.
    assert failed["dataset_id"].value_counts().to_dict() == {d: 1 for d in res.failed_datasets}
    assert len(frame) == 24


@pytest.mark.parametrize("value", [5.0, -3.0, "0.5", float("nan"), True])
def test_bad_rewards_are_failed_trials_never_told(value) -> None:
    res = select(make_pool(), "dash", Failing({"a0": value}), 16, seed=3)
    assert set(res.failed_datasets) == {"a0"}
    assert "RewardError" in res.failed_datasets["a0"]
    a0 = next(b for b in res.posterior.datasets if b.id == "a0")
    assert a0.pulls == 0  # the policy never heard of it


def test_every_dataset_failing_stops_the_run() -> None:
    bad = {d: "raise" for d in BASE}
    with pytest.raises(DashselError, match="every dataset of pool 'toy' failed; the last: "):
        select(make_pool(), "dash", Failing(bad), 40, seed=0, batch_size=3)


def test_retries_run_the_same_trial_again(tmp_path) -> None:
    ev = Failing({d: "flaky" for d in BASE}, control=str(tmp_path))
    clean = select(make_pool(), "dash", Failing(), 10, seed=4)
    res = select(make_pool(), "dash", ev, 10, seed=4, retries=1)
    assert res.failed_datasets == {}
    assert res.trials[KEY].equals(clean.trials[KEY])  # same seeds: same rewards
    with pytest.raises(DashselError, match="every dataset"):
        for f in tmp_path.iterdir():
            f.unlink()
        select(make_pool(), "dash", ev, 10, seed=4, retries=0)


def test_on_failure_stop_raises_the_trial_error() -> None:
    with pytest.raises(DashselError, match=r"cannot read a0\.npz"):
        select(make_pool(), "roundrobin", Failing({"a0": "raise"}), 5, on_failure="stop")
    with pytest.raises(DashselError, match="on_failure must be one of skip, stop"):
        select(make_pool(), "dash", Failing(), 5, on_failure="ignore")
    with pytest.raises(DashselError, match="retries must be an integer >= 0"):
        select(make_pool(), "dash", Failing(), 5, retries=-1)


def test_hung_trial_times_out_with_the_process_executor() -> None:
    start = time.monotonic()
    res = select(make_pool(), "roundrobin", Failing({"a1": "hang"}), 10, seed=5,
                 executor="process", workers=2, trial_timeout=1.0)  # fmt: skip
    assert time.monotonic() - start < 45  # one hung trial, not a minute per pull
    assert list(res.failed_datasets) == ["a1"]
    assert "TrialTimeoutError" in res.failed_datasets["a1"]
    assert "ran longer than the trial timeout of 1s" in res.failed_datasets["a1"]
    assert res.n_evaluations == 9
    assert res.batch_size == 2  # --workers 2 alone runs 2 trials at once


def test_resume_with_a_set_aside_dataset_equals_the_uninterrupted_run(tmp_path) -> None:
    clean = select(make_pool(), "dash", Failing(), 14, seed=6, batch_size=2)
    # Make two datasets the clean run tries early fail: the run then differs from it.
    bad = {clean.trials.loc[1, "dataset_id"], clean.trials.loc[4, "dataset_id"]}
    ev = Failing(dict.fromkeys(bad, "raise"))
    full = select(make_pool(), "dash", ev, 14, seed=6, batch_size=2)
    assert set(full.failed_datasets) == bad
    path = tmp_path / "run.db"

    def stop_late(outcome) -> None:
        if outcome.spec.number == 11:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        select(make_pool(), "dash", ev, 14, seed=6, batch_size=2, journal=path,
               callback=stop_late)  # fmt: skip
    res = select(make_pool(), "dash", ev, 14, seed=6, batch_size=2, journal=path)
    assert res.trials[KEY].equals(full.trials[KEY])
    assert res.failed_datasets == full.failed_datasets
    assert res.selected == full.selected


def test_executor_options_belong_to_the_executor_object() -> None:
    with ProcessExecutor(1) as ex, pytest.raises(DashselError, match="set on an executor"):
        select(make_pool(), "dash", Failing(), 4, executor=ex, trial_timeout=2)
