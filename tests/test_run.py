"""The run loop: bookkeeping, failures, and resuming to exactly the uninterrupted run."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dashsel import SelectionResult, select
from dashsel.errors import DashselError, DataError, JournalError, RewardError
from dashsel.evaluators.base import Evaluator
from dashsel.executors import InProcessExecutor, ProcessExecutor
from dashsel.hierarchy import Hierarchy
from dashsel.journal import SQLiteJournal
from dashsel.policies.base import Belief, Policy, Posterior
from dashsel.pool import Pool
from dashsel.random_state import derive_seed
from dashsel.report import read_journal, replay_posterior
from dashsel.trial import TrialSpec

BASE = {"a0": 0.8, "a1": 0.7, "a2": 0.75, "b0": 0.3, "b1": 0.4, "b2": 0.2, "c0": 0.5, "c1": 0.55}
GROUPS = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"], "c": ["c0", "c1"]}
KEY = ["number", "dataset_id", "seed", "pull", "reward"]


def make_pool(groups: dict[str, list[str]] = GROUPS) -> Pool:
    return Pool.replay_only(Hierarchy.from_mapping(groups), name="toy")


class ToyTS(Policy):
    """Gaussian Thompson sampling over datasets (flat): enough to make asks depend on rewards."""

    name = "toy-ts"

    def __init__(self, prior_mean: float = 0.5, noise: float = 0.1) -> None:
        self.prior_mean = prior_mean
        self.noise = noise

    def _reset(self, hierarchy: Hierarchy) -> None:
        self.sum_ = np.zeros(hierarchy.n_datasets)
        self.n_ = np.zeros(hierarchy.n_datasets, dtype=int)

    def _moments(self) -> tuple[np.ndarray, np.ndarray]:
        prec = 1 / 0.3**2 + self.n_ / self.noise**2
        mean = (self.prior_mean / 0.3**2 + self.sum_ / self.noise**2) / prec
        return mean, 1 / np.sqrt(prec)

    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        mean, std = self._moments()
        return self.hierarchy_.dataset_ids[int(np.argmax(rng.normal(mean, std)))]

    def _tell(self, index: int, reward: float) -> None:
        self.sum_[index] += reward
        self.n_[index] += 1

    def posterior(self) -> Posterior:
        h = self.hierarchy_
        mean, std = self._moments()
        ds = tuple(
            Belief(d, g, float(m), float(s), int(n))
            for d, g, m, s, n in zip(h.dataset_ids, h.groups, mean, std, self.n_, strict=True)
        )
        gs = tuple(
            Belief(g, None, float(np.mean([b.mean for b in ds if b.group == g])), 0.1, 0)
            for g in h.group_ids
        )
        return Posterior(ds, gs)


class ToyEvaluator(Evaluator):
    """Reward = base + seeded noise. Controlled through files in ``control`` (so one object,
    shipped once to worker processes, can be told to fail): ``fail_at`` / ``nan_at`` hold a
    trial number; every evaluation appends its trial number to ``calls.log``."""

    can_train = True

    def __init__(self, control: str | Path | None = None, sleep: float = 0.0) -> None:
        self.control = str(control) if control is not None else None
        self.sleep = sleep

    def _flag(self, name: str) -> int | None:
        p = Path(self.control, name)
        return int(p.read_text()) if p.exists() else None

    def evaluate(self, spec: TrialSpec) -> float:
        time.sleep(self.sleep)
        reward = BASE[spec.dataset_id] + 0.05 * float(np.random.default_rng(spec.seed).normal())
        if self.control is not None:
            with open(Path(self.control, "calls.log"), "a") as fh:
                fh.write(f"{spec.number}\n")
            if self._flag("fail_at") == spec.number:
                raise OSError(f"cannot read {spec.dataset_id}.npz")
            if self._flag("nan_at") == spec.number:
                return float("nan")
        return reward

    def describe(self) -> dict[str, Any]:
        return {"kind": "toy", "base": BASE}

    def score(self, dataset_ids, seed: int, split: str = "test") -> float:
        return 0.5 + 0.1 * float(np.mean([BASE[d] for d in dataset_ids] or [0.0]))


def calls(control: Path) -> list[int]:
    p = control / "calls.log"
    return [int(x) for x in p.read_text().split()] if p.exists() else []


def same_run(a: SelectionResult, b: SelectionResult) -> None:
    assert a.trials[KEY].to_dict("records") == b.trials[KEY].to_dict("records")
    assert a.selected == b.selected and a.selected_groups == b.selected_groups
    assert a.posterior == b.posterior


@pytest.fixture(scope="module")
def reference() -> dict[tuple[int, int], SelectionResult]:
    """Uninterrupted in-memory runs, keyed by (batch_size, budget)."""
    return {
        (b, n): select(make_pool(), ToyTS(), ToyEvaluator(), n, seed=7, batch_size=b, k=2)
        for b, n in [(1, 12), (3, 12), (1, 16)]
    }


def test_bookkeeping(reference) -> None:
    seen = []
    res = select(make_pool(), ToyTS(), ToyEvaluator(), 12, seed=7, k=2, callback=seen.append)
    same_run(res, reference[(1, 12)])
    t = res.trials
    assert list(t["number"]) == list(range(12)) and [o.spec.number for o in seen] == list(range(12))
    assert list(t["seed"]) == [derive_seed(7, n) for n in range(12)]
    for n, row in t.iterrows():  # pull = earlier trials of the same dataset
        assert row["pull"] == (t["dataset_id"][:n] == row["dataset_id"]).sum()
    assert list(t["batch"]) == list(range(12))
    assert t.loc[3, "group"] == make_pool().hierarchy.group_of(t.loc[3, "dataset_id"])
    assert res.n_evaluations == 12 and res.n_resumed == 0 and res.budget == 12
    assert len(res.selected) == 2 and res.policy == "toy-ts"
    assert res.policy_params == {"prior_mean": 0.5, "noise": 0.1}
    assert res.local_accuracy == pytest.approx(0.5)
    assert res.test_accuracy == pytest.approx(0.5 + 0.1 * np.mean([BASE[d] for d in res.selected]))
    assert res.global_accuracy == pytest.approx(0.5 + 0.1 * np.mean(list(BASE.values())))
    no_score = select(make_pool(), ToyTS(), ToyEvaluator(), 2, score_final=False)
    assert no_score.test_accuracy is None and no_score.global_accuracy is None


class Recording(ToyTS):
    def _reset(self, hierarchy: Hierarchy) -> None:
        super()._reset(hierarchy)
        self.events_: list[tuple[str, Any]] = []

    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        choice = super()._ask_one(rng, step)
        self.events_.append(("ask", step))
        return choice

    def _tell(self, index: int, reward: float) -> None:
        super()._tell(index, reward)
        self.events_.append(("tell", self.hierarchy_.dataset_ids[index]))


class ReversedExecutor(InProcessExecutor):
    """Completes each batch's trials last-first, as a parallel executor may."""

    def map_unordered(self, evaluator, specs):
        yield from reversed(list(super().map_unordered(evaluator, specs)))


def test_window_asks_and_tells_in_number_order(reference) -> None:
    policy = Recording()
    seen: list[int] = []
    res = select(
        make_pool(),
        policy,
        ToyEvaluator(),
        12,
        seed=7,
        batch_size=3,
        k=2,
        executor=ReversedExecutor(),
        callback=lambda o: seen.append(o.spec.number),
    )
    same_run(res, reference[(3, 12)])
    assert seen[:3] == [2, 1, 0]  # completion order ...
    ids = list(res.trials["dataset_id"])
    # ... but the window's asks and tells come in trial-number order: 3 asked at first, then
    # each tell of the oldest trial in flight is followed by one ask, until the budget is spent
    expected = [("ask", 0), ("ask", 1), ("ask", 2)]
    for n in range(12):
        expected.append(("tell", ids[n]))
        if n + 3 < 12:
            expected.append(("ask", n + 3))
    assert policy.events_ == expected
    assert list(res.trials["batch"]) == [0, 0, 0, *range(1, 10)]


def test_overhead_timed_apart_from_evaluation() -> None:
    res = select(make_pool(), ToyTS(), ToyEvaluator(sleep=0.02), 5, score_final=False)
    assert res.evaluation_seconds >= 5 * 0.02
    assert 0 < res.overhead_seconds < res.evaluation_seconds
    assert res.trials["duration"].min() >= 0.02


@pytest.mark.parametrize("batch_size", [1, 3])
def test_resume_after_failure_equals_uninterrupted(tmp_path, reference, batch_size) -> None:
    path = tmp_path / "run.db"
    (tmp_path / "fail_at").write_text("7")
    ev = ToyEvaluator(tmp_path)
    with pytest.raises(DashselError) as info:
        select(make_pool(), ToyTS(), ev, 12, journal=path, seed=7, batch_size=batch_size, k=2,
               on_failure="stop")  # fmt: skip
    msg = str(info.value)
    failed_ds = reference[(batch_size, 12)].trials.loc[7, "dataset_id"]
    assert f"OSError: evaluating dataset {failed_ds!r} (trial 7)" in msg and "\n" not in msg
    assert str(path) in msg
    _, frame = read_journal(path)
    assert frame.loc[7, "state"] == "failed" and "OSError" in frame.loc[7, "error"]
    assert (frame["state"][:7] == "complete").all()

    (tmp_path / "fail_at").unlink()
    before = calls(tmp_path)
    res = select(make_pool(), ToyTS(), ev, 12, journal=path, seed=7, batch_size=batch_size, k=2)
    same_run(res, reference[(batch_size, 12)])
    again = calls(tmp_path)[len(before) :]
    finished = set(frame.index[frame["state"] == "complete"])
    assert sorted(again) == sorted(set(range(12)) - finished)  # each unfinished trial once
    assert res.n_resumed == len(finished)


def test_resume_after_interrupt_in_callback(tmp_path, reference) -> None:
    path = tmp_path / "run.db"

    def stop_at_5(outcome) -> None:
        if outcome.spec.number == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        select(make_pool(), ToyTS(), ToyEvaluator(tmp_path), 12, journal=path, seed=7,
               batch_size=3, k=2, callback=stop_at_5)  # fmt: skip
    _, frame = read_journal(path)
    # trial 5 was asked after trial 2 was told; trials 6 and 7 were asked, not evaluated
    assert list(frame["state"]) == ["complete"] * 6 + ["running"] * 2
    res = select(
        make_pool(), ToyTS(), ToyEvaluator(tmp_path), 12, journal=path, seed=7, batch_size=3, k=2
    )
    same_run(res, reference[(3, 12)])
    assert sorted(calls(tmp_path)) == list(range(12))


def test_resume_mid_window_repeats_no_finished_trial(tmp_path, reference) -> None:
    # Trials 3, 4, 5 in flight; 5 and then 4 finish before 3, and the run is stopped while
    # 3 is still unfinished: 4 and 5 wait in the journal for their turn, 3 runs again.
    path = tmp_path / "run.db"

    def stop_at_4(outcome) -> None:
        if outcome.spec.number == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        select(make_pool(), ToyTS(), ToyEvaluator(tmp_path), 12, journal=path, seed=7,
               batch_size=3, k=2, executor=ReversedExecutor(), callback=stop_at_4)  # fmt: skip
    _, frame = read_journal(path)
    assert list(frame["state"]) == ["complete"] * 3 + ["running", "complete", "complete"]
    res = select(
        make_pool(), ToyTS(), ToyEvaluator(tmp_path), 12, journal=path, seed=7, batch_size=3, k=2
    )
    same_run(res, reference[(3, 12)])
    assert res.n_resumed == 5
    # 3 was evaluated but never recorded before the stop: only it ran twice
    assert sorted(calls(tmp_path)) == sorted([*range(12), 3])


class Uneven(ToyEvaluator):
    """Trials of some datasets take 10x longer: parallel trials finish out of order."""

    def evaluate(self, spec: TrialSpec) -> float:
        time.sleep(0.04 if spec.dataset_id in ("a0", "b1", "c0") else 0.004)
        return super().evaluate(spec)


@pytest.mark.parametrize("policy", ["dash", "hits"])
def test_same_trials_whatever_the_executor(policy) -> None:
    # A seed and a batch size give the same trials, in this process or in 2 workers where
    # trials finish out of order (and are told in trial-number order all the same).
    seen: list[int] = []
    args = {"seed": 3, "batch_size": 3, "k": 2, "score_final": False}
    serial = select(make_pool(), policy, Uneven(), 15, **args)
    with ProcessExecutor(2) as ex:
        on_trial = lambda o: seen.append(o.spec.number)  # noqa: E731
        par = select(make_pool(), policy, Uneven(), 15, executor=ex, callback=on_trial, **args)
    assert seen != sorted(seen)  # finished out of order ...
    same_run(par, serial)  # ... same trials, same selection
    assert list(par.trials["batch"]) == list(serial.trials["batch"])


@pytest.mark.parametrize("policy", ["dash", "hits", "flat"])
def test_window_holds_distinct_datasets(policy) -> None:
    # Each ask sees the other trials in flight as pending: any batch_size consecutive trials
    # (asked while the others were in flight) train distinct datasets while the pool has
    # enough of them.
    res = select(make_pool(), policy, ToyEvaluator(), 24, seed=1, batch_size=4, score_final=False)
    ids = list(res.trials["dataset_id"])
    assert all(len(set(ids[i : i + 4])) == 4 for i in range(len(ids) - 3))


def test_resume_with_process_executor(tmp_path, reference) -> None:
    path = tmp_path / "run.db"
    (tmp_path / "fail_at").write_text("4")
    ev = ToyEvaluator(tmp_path)
    with ProcessExecutor(2) as ex:  # one pool (same evaluator object) for both calls
        with pytest.raises(DashselError, match="trial 4"):
            select(make_pool(), ToyTS(), ev, 12, journal=path, seed=7, batch_size=3, k=2,
                   executor=ex, on_failure="stop")  # fmt: skip
        (tmp_path / "fail_at").unlink()
        res = select(
            make_pool(), ToyTS(), ev, 12, journal=path, seed=7, batch_size=3, k=2, executor=ex
        )
    same_run(res, reference[(3, 12)])
    log = calls(tmp_path)
    assert sorted(log) == sorted([*range(12), 4])  # only the failed trial ran twice


def test_nan_reward_stops_and_resumes(tmp_path, reference) -> None:
    path = tmp_path / "run.db"
    (tmp_path / "nan_at").write_text("5")
    with pytest.raises(RewardError) as info:
        select(make_pool(), ToyTS(), ToyEvaluator(tmp_path), 12, journal=path, seed=7, k=2,
               on_failure="stop")  # fmt: skip
    ds = reference[(1, 12)].trials.loc[5, "dataset_id"]
    assert f"reward for dataset {ds!r} (trial 5) is not finite: nan" in str(info.value)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute("SELECT state FROM trials ORDER BY number").fetchall()
    con.close()
    assert [r[0] for r in rows] == ["complete"] * 5 + ["failed"]
    (tmp_path / "nan_at").unlink()
    res = select(make_pool(), ToyTS(), ToyEvaluator(tmp_path), 12, journal=path, seed=7, k=2)
    same_run(res, reference[(1, 12)])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seed": 8}, "seed"),
        ({"policy": ToyTS(noise=0.2)}, "policy.params"),
        ({"pool": make_pool({"a": ["a0", "a1"], "b": ["b0"]})}, "pool.fingerprint"),
        ({"batch_size": 2}, "batch_size"),
    ],
)
def test_journal_of_another_run_refused(tmp_path, change, field) -> None:
    path = tmp_path / "run.db"
    args = {"pool": make_pool(), "policy": ToyTS(), "seed": 7, "batch_size": 1}
    select(args["pool"], args["policy"], ToyEvaluator(), 2, journal=path, seed=7)
    args.update(change)
    with pytest.raises(
        JournalError, match=rf"run\.db belongs to a different run \({re.escape(field)} "
    ):
        select(args.pop("pool"), args.pop("policy"), ToyEvaluator(), 2, journal=path, **args)


def test_larger_budget_continues_same_budget_replays(tmp_path, reference) -> None:
    path = tmp_path / "run.db"
    select(make_pool(), ToyTS(), ToyEvaluator(tmp_path), 12, journal=path, seed=7, k=2)
    res = select(make_pool(), ToyTS(), ToyEvaluator(tmp_path), 16, journal=path, seed=7, k=2)
    same_run(res, reference[(1, 16)])
    n_calls = len(calls(tmp_path))
    assert n_calls == 16
    again = select(make_pool(), ToyTS(), ToyEvaluator(tmp_path), 16, journal=path, seed=7, k=2)
    same_run(again, res)
    assert len(calls(tmp_path)) == n_calls and again.n_resumed == 16
    with pytest.raises(JournalError, match="holds 16 trials, more than the budget 10"):
        select(make_pool(), ToyTS(), ToyEvaluator(), 10, journal=path, seed=7)
    with SQLiteJournal(path) as j:
        assert j.meta()["budget"] == 16
    assert replay_posterior(*read_journal(path)) == (None, None)  # "toy-ts" is not registered


def test_bad_arguments() -> None:
    for kwargs, match in [
        ({"budget": 0}, "budget must be a positive integer"),
        ({"budget": 2.5}, "budget must be a positive integer"),
        ({"budget": float("inf")}, "budget must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"seed": "x"}, "seed must be an integer"),
        ({"k": 2, "percentile": 50.0}, "either k"),
    ]:
        args = {"budget": 3, **kwargs}
        with pytest.raises(DashselError, match=match):
            select(make_pool(), ToyTS(), ToyEvaluator(), args.pop("budget"), **args)


# --- killed process ------------------------------------------------------------------------
_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_run import ToyEvaluator, ToyTS, make_pool
from dashsel import select
select(make_pool(), ToyTS(), ToyEvaluator({control!r}, sleep=0.25), 12, journal={path!r},
       seed=7, k=2)
"""


def _n_complete(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM trials WHERE state='complete'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet
        return 0


def test_resume_after_sigkill(tmp_path, reference) -> None:
    path = tmp_path / "run.db"
    control = tmp_path / "ctl"
    control.mkdir()
    script = tmp_path / "child.py"
    script.write_text(
        _CHILD.format(tests=str(Path(__file__).parent), control=str(control), path=str(path))
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _n_complete(path) < 3:
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "child journaled nothing in 120 s"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL

    _, frame = read_journal(path)
    finished = set(frame.index[frame["state"] == "complete"])
    assert 3 <= len(finished) < 12, "the child finished before it was killed"
    n_before = len(calls(control))
    res = select(make_pool(), ToyTS(), ToyEvaluator(control), 12, journal=path, seed=7, k=2)
    same_run(res, reference[(1, 12)])
    resumed = calls(control)[n_before:]
    assert sorted(resumed) == sorted(set(range(12)) - finished)  # finished never repeated
    assert res.n_resumed == len(finished)


# --- with the real policies ----------------------------------------------------------------
def test_dash_end_to_end_resume(tmp_path) -> None:
    policies = pytest.importorskip("dashsel.policies")
    if not hasattr(policies, "make_policy"):
        pytest.skip("dashsel.policies.make_policy not available yet")
    full = select(make_pool(), "dash", ToyEvaluator(), 10, seed=3, batch_size=2)
    (tmp_path / "fail_at").write_text("5")
    path = tmp_path / "run.db"
    with pytest.raises(DashselError, match="trial 5"):
        select(make_pool(), policies.make_policy("dash"), ToyEvaluator(tmp_path), 10,
               journal=path, seed=3, batch_size=2, on_failure="stop")  # fmt: skip
    (tmp_path / "fail_at").unlink()
    res = select(make_pool(), "dash", ToyEvaluator(tmp_path), 10, journal=path, seed=3,
                 batch_size=2)  # fmt: skip
    same_run(res, full)
    assert res.policy == "dash"
    # `dashsel report` rebuilds the same posterior from the journal alone
    meta, frame = read_journal(path)
    assert meta["pool"]["name"] == "toy" and meta["policy"]["name"] == "dash"
    posterior, rec = replay_posterior(meta, frame)
    assert posterior == res.posterior and rec.datasets == res.selected
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert all(math.isfinite(b["mean"]) for b in d["group_posterior"] if b["mean"] is not None)


class DataFailing(ToyEvaluator):
    """Raises a DataError (a DashselError subclass) on dataset b1."""

    def evaluate(self, spec: TrialSpec) -> float:
        if spec.dataset_id == "b1":
            raise DataError("b1.npz: unreadable")
        return super().evaluate(spec)


@pytest.mark.parametrize("executor", [InProcessExecutor, lambda: ProcessExecutor(1)])
def test_a_trial_error_stops_the_run_as_itself(tmp_path, executor) -> None:
    # The exception object comes back from the worker; nothing is parsed from text.
    path = tmp_path / "run.db"
    with executor() as ex, pytest.raises(DataError) as info:
        select(make_pool(), "roundrobin", DataFailing(), 8, journal=path, executor=ex,
               on_failure="stop")  # fmt: skip
    msg = str(info.value)
    assert msg.startswith("evaluating dataset 'b1' (trial ") and "b1.npz: unreadable" in msg
    assert str(path) in msg and "\n" not in msg
    _, frame = read_journal(path)
    assert frame["error"].str.startswith("DataError: evaluating dataset 'b1'").any()
