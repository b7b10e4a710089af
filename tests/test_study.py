"""The journaled study: ask/tell from outside, same trials as select, processes, locking."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dashsel import Study, select
from dashsel.errors import DashselError, JournalError, RewardError
from dashsel.evaluators.base import Evaluator
from dashsel.hierarchy import Hierarchy
from dashsel.journal import JournalBusyError, JournalLock, SQLiteJournal
from dashsel.pool import Pool
from dashsel.report import read_journal, report_dict
from dashsel.study import BudgetSpent, StudyError, TrialsPending
from dashsel.trial import TrialSpec

GROUPS = {f"g{g}": [f"g{g}d{i}" for i in range(5)] for g in range(4)}
BASE = {d: 0.3 + 0.1 * g + 0.02 * i for g, ds in enumerate(GROUPS.values()) for i, d in
        enumerate(ds)}  # fmt: skip


def make_pool() -> Pool:
    return Pool.replay_only(Hierarchy.from_mapping(GROUPS), name="study-toy")


def reward_of(dataset_id: str, seed: int) -> float:
    """What the user's own training script would compute (outside dashsel)."""
    return BASE[dataset_id] + 0.05 * float(np.random.default_rng(seed).normal())


class Outside(Evaluator):
    """The same reward, as an evaluator, for the select() side of the comparison."""

    def evaluate(self, spec: TrialSpec) -> float:
        return reward_of(spec.dataset_id, spec.seed)

    def describe(self) -> dict[str, Any]:
        return {"kind": "outside"}

    def score(self, dataset_ids, seed, split="test") -> float:
        return 0.0


KEY = ["number", "dataset_id", "seed", "pull", "reward"]


@pytest.mark.parametrize(
    ("policy", "batch"), [("dash", 1), ("dash", 3), ("flat", 2), ("hits", 1), ("hits", 2)]
)
def test_ask_tell_loop_equals_select(tmp_path, policy, batch) -> None:
    res = select(
        make_pool(), policy, Outside(), 14, seed=5, batch_size=batch, k=3, score_final=False
    )
    path = tmp_path / "study.db"
    Study.create(path, make_pool(), policy, seed=5, k=3, budget=14).close()
    # select's window: ask `batch` trials, then tell the oldest pending one and ask one more
    with Study.open(path) as study:  # a fresh process-like open for each step
        pending = deque(study.ask(batch))
    while pending:
        trial, dataset = pending.popleft()
        _, frame = read_journal(path)
        seed = int(frame.loc[frame["number"] == trial, "seed"].iloc[0])
        with Study.open(path) as study:
            study.tell(trial, reward_of(dataset, seed))
        with Study.open(path) as study, contextlib.suppress(BudgetSpent):
            pending.extend(study.ask(1))
    _, frame = read_journal(path)
    assert frame[KEY].to_dict("records") == res.trials[KEY].to_dict("records")
    with Study.open(path) as study:
        assert study.recommend().datasets == res.selected
        assert study.posterior() == res.posterior
    report = report_dict(path, *read_journal(path))
    assert report["selected"] == list(res.selected) and report["rule"]["text"] == "top-3"


def test_pending_aware_budget_and_failures(tmp_path) -> None:
    path = tmp_path / "s.db"
    with Study.create(path, make_pool(), "dash", seed=1, budget=6) as study:
        asked = study.ask(3) + study.ask() + study.ask()
        assert len({d for _, d in asked}) == 5  # pending datasets are not handed out twice
        assert [t for t, _ in asked] == [0, 1, 2, 3, 4]
        study.tell(0, 0.5)
        study.tell(1, failed="out of memory")
        with pytest.raises(StudyError, match="already told"):
            study.tell(0, 0.6)
        with pytest.raises(StudyError, match="closed"):
            study.tell(1, 0.6)
        with pytest.raises(StudyError, match="no trial 9"):
            study.tell(9, 0.6)
        with pytest.raises(RewardError, match="not finite"):
            study.tell(2, float("nan"))
        with pytest.raises(RewardError, match="not a number"):
            study.tell(2, "0.5")  # type: ignore[arg-type]
        assert study.ask(5) == [(5, study.trials()["dataset_id"][5])]  # one left in the budget
        with pytest.raises(BudgetSpent, match="budget of 6"):
            study.ask()
        study.abandon(2)  # given back: the budget has one trial again
        with pytest.raises(StudyError, match="abandoned"):
            study.tell(2, 0.5)
        assert [t for t, _ in study.ask()] == [6]
        assert {t for t, _ in study.pending()} == {3, 4, 5, 6}


def test_pending_timeout(tmp_path) -> None:
    path = tmp_path / "s.db"
    with Study.create(path, make_pool(), seed=1, pending_timeout=0.2) as study:
        [(t0, _)] = study.ask()
        time.sleep(0.3)
        [(t1, _)] = study.ask()  # finds trial 0 pending too long: given back
        frame = study.trials()
        assert frame.loc[t0, "state"] == "failed" and "timed out" in frame.loc[t0, "error"]
        with pytest.raises(StudyError, match="timed out"):
            study.tell(t0, 0.5)
        study.tell(t1, 0.5)


def test_serial_refuses_to_ask_while_pending(tmp_path) -> None:
    with Study.create(tmp_path / "s.db", make_pool(), serial=True) as study:
        study.ask(2)
        with pytest.raises(TrialsPending, match="pending"):
            study.ask()


def test_create_refuses_existing_and_bad_arguments(tmp_path) -> None:
    path = tmp_path / "s.db"
    Study.create(path, make_pool()).close()
    with pytest.raises(JournalError, match="already holds a run"):
        Study.create(path, make_pool())
    for kwargs, match in [
        ({"budget": 0}, "budget"),
        ({"k": 2, "percentile": 50.0}, "either k"),
        ({"pending_timeout": -1}, "pending_timeout"),
        ({"seed": -1}, "seed"),
        ({"policy": "nope"}, "nope"),
    ]:
        with pytest.raises(DashselError, match=match):
            Study.create(tmp_path / f"x{len(match)}.db", make_pool(), **kwargs)
    with pytest.raises(JournalError, match="does not exist"):
        Study.open(tmp_path / "missing.db")


def test_run_and_study_continue_each_other(tmp_path) -> None:
    full = select(make_pool(), "dash", Outside(), 10, seed=2, batch_size=2, score_final=False)
    path = tmp_path / "run.db"
    # a study starts it (no evaluator, no batch size), a run continues it, a study finishes it
    Study.create(path, make_pool(), "dash", seed=2, budget=10).close()
    with Study.open(path) as study:
        for trial, d in study.ask(2):
            study.tell(trial, reward_of(d, read_journal(path)[1]["seed"][trial]))
    select(make_pool(), "dash", Outside(), 6, journal=path, seed=2, batch_size=2, score_final=False)
    with Study.open(path) as study:
        while True:
            try:
                asked = study.ask(2)
            except BudgetSpent:
                break
            seeds = read_journal(path)[1]["seed"]
            for trial, d in asked:
                study.tell(trial, reward_of(d, seeds[trial]))
        assert study.recommend().datasets == full.selected
    _, frame = read_journal(path)
    assert frame[KEY].to_dict("records") == full.trials[KEY].to_dict("records")


def _hold_run(path: str, ready, done) -> None:
    with SQLiteJournal(path):
        ready.set()
        done.wait(30)


def test_a_live_run_refuses_study_commands_and_the_other_way_round(tmp_path) -> None:
    path = tmp_path / "s.db"
    Study.create(path, make_pool(), seed=1).close()
    ctx = mp.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_run, args=(str(path), ready, done))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(JournalBusyError, match=r"in use by run pid \d+ on"):
            Study.open(path).ask()
        with pytest.raises(JournalBusyError, match="in use by run"):
            select(make_pool(), "dash", Outside(), 2, journal=path, seed=1)
    finally:
        done.set()
        holder.join(30)
    # a study command's lock held past the run's wait: the run is refused, naming it
    lock = JournalLock(path, "study")
    lock.acquire()
    old, JournalLock.RUN_WAIT = JournalLock.RUN_WAIT, 0.1
    try:
        with pytest.raises(JournalBusyError, match="in use by study pid"):
            SQLiteJournal(path)
    finally:
        JournalLock.RUN_WAIT = old
        lock.release()
    with Study.open(path) as study:  # free again
        assert len(study.ask()) == 1
    assert not Path(str(path) + ".lock").exists()


def _worker(path: str, n_tells: int, out) -> None:
    done = []
    with Study.open(path) as study:
        while len(done) < n_tells:
            try:
                [(trial, d)] = study.ask()
            except BudgetSpent:
                break
            study.tell(trial, BASE[d])
            done.append(trial)
    out.put(done)


def test_four_processes_lose_and_double_nothing(tmp_path) -> None:
    path = tmp_path / "s.db"
    Study.create(path, make_pool(), "dash", seed=3, budget=40).close()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(path), 40, out)) for _ in range(4)]
    for p in procs:
        p.start()
    told = [t for _ in procs for t in out.get(timeout=120)]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sorted(told) == list(range(40))  # every trial told once, by one process
    _, frame = read_journal(path)
    assert list(frame["number"]) == list(range(40))
    assert set(frame["state"]) == {"complete"}
    pulls = frame.groupby("dataset_id")["pull"].apply(sorted)
    assert all(list(p) == list(range(len(p))) for p in pulls)  # no pull doubled or skipped
