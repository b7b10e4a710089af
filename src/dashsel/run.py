"""The selection run: the one place that wires pool, policy, evaluator, executor and journal.

:func:`select` is a loop over the policy's ``ask``/``tell`` (you can drive those by hand, as
in Optuna's ask-and-tell interface; ``select`` adds journaling, parallel evaluation, resuming
and the final scoring).

How a run stays reproducible and resumable:

* Trial ``t`` is the policy's ``t``-th ask; its evaluation seed is ``derive_seed(seed, t)``
  and its ``pull`` counts earlier trials of the same dataset. Nothing about a trial depends on
  where or when it runs.
* A batch's trials are journaled (state ``running``) together, in one transaction, *before*
  any is evaluated, then each outcome as it completes; the policy is told the whole batch in
  trial-number order once all are in, so parallel runs reproduce the sequential bookkeeping.
* Resuming replays the journal batch by batch: complete batches are told to the policy (whose
  ask counter is set to where the original run had it), and the unfinished batch, if any, has
  its unfinished trials evaluated again *as journaled*, not asked again. Finished trials are
  never repeated, so a resumed run ends exactly like an uninterrupted one.
* A trial that fails (an exception, a timeout, a reward outside the evaluator's range) is run
  again up to ``retries`` times with the same spec; one that keeps failing is journaled
  failed, never told to the policy, and its dataset is excluded from every later ask. Resuming
  sets aside again the datasets whose trials failed in finished batches, so the later asks
  are the original run's.
* Each finished trial is logged to the ``"dashsel"`` logger (:mod:`dashsel.log`).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dashsel.checks import check_journal_path, check_seed
from dashsel.errors import DashselError, JournalError
from dashsel.executors import Executor, make_executor, warm_up
from dashsel.hierarchy import Hierarchy
from dashsel.journal import InMemoryJournal, Journal, is_abandoned, open_journal
from dashsel.jsonable import to_jsonable
from dashsel.log import log_event, trial_message
from dashsel.policies.base import Policy, validate_selection_rule
from dashsel.pool import Pool
from dashsel.random_state import derive_seed
from dashsel.result import SelectionResult
from dashsel.trial import (
    RESULT_TRIAL_COLUMNS,
    TrialOutcome,
    TrialRecord,
    TrialSpec,
    TrialState,
    trials_frame,
)

if TYPE_CHECKING:
    import pandas as pd

    from dashsel.evaluators.base import Evaluator

Callback = Callable[[TrialOutcome], Any]


def run_meta(
    pool: Pool,
    policy: Policy,
    evaluator: Evaluator | None,
    *,
    seed: int,
    batch_size: int | None,
    budget: int | None,
    k: int | None = None,
    percentile: float | None = None,
) -> dict[str, Any]:
    """The metadata a journal stores for a run (identity fields plus context).

    ``evaluator`` and ``batch_size`` are None for a study driven from outside
    (:class:`dashsel.Study`); a run continuing it adopts its own. ``k`` / ``percentile`` are
    the selection rule, kept so ``dashsel report`` makes the run's selection.
    """
    from dashsel import __version__

    return to_jsonable(
        {
            "format": "dashsel-journal",
            "dashsel_version": __version__,
            "pool": {
                "name": pool.name,
                "fingerprint": pool.hierarchy.fingerprint(),
                "n_datasets": pool.hierarchy.n_datasets,
                "n_groups": pool.hierarchy.n_groups,
                # the structure itself, so `dashsel report` can rebuild the posterior
                "dataset_ids": list(pool.hierarchy.dataset_ids),
                "groups": list(pool.hierarchy.groups),
            },
            "policy": {
                "name": policy.name,
                "class": f"{type(policy).__module__}.{type(policy).__qualname__}",
                "params": policy.get_params(),
            },
            "evaluator": None if evaluator is None else evaluator.describe(),
            "evaluator_class": None
            if evaluator is None
            else f"{type(evaluator).__module__}.{type(evaluator).__qualname__}",
            "seed": seed,
            "batch_size": batch_size,
            "budget": budget,
            "selection": {"k": k, "percentile": percentile},
            "created": time.time(),
        }
    )


def select(
    pool: Pool | Hierarchy,
    policy: Policy | str,
    evaluator: Evaluator,
    budget: int,
    *,
    journal: str | Path | Journal | None = None,
    seed: int = 0,
    executor: Executor | str | None = None,
    batch_size: int | None = None,
    k: int | None = None,
    percentile: float | None = None,
    score_final: bool = True,
    callback: Callback | None = None,
    workers: int | None = None,
    threads_per_trial: int | None = None,
    trial_timeout: float | None = None,
    retries: int = 0,
    on_failure: str = "skip",
) -> SelectionResult:
    """Select datasets from ``pool`` with ``policy``, spending ``budget`` evaluations.

    Parameters
    ----------
    pool : Pool or Hierarchy
        The candidates (a bare Hierarchy is wrapped in a replay-only pool).
    policy : Policy or str
        A policy object (reset here) or a name for :func:`dashsel.policies.make_policy`.
    evaluator : Evaluator
        Turns a trial into a reward.
    budget : int
        Total number of trials in the run, journaled ones included.
    journal : path, Journal or None
        Where trials are recorded. With a path, an existing journal of the same run is
        resumed (a larger budget continues it); one of another run is refused. None keeps the
        record in memory only.
    seed : int
        Run seed: seeds the policy and, through :func:`~dashsel.random_state.derive_seed`,
        every trial's evaluation.
    executor : Executor, str or None
        Where evaluations run (default in this process). A name goes to
        :func:`~dashsel.executors.make_executor` with ``workers``, ``threads_per_trial`` and
        ``trial_timeout``; executors given by name are closed at the end, executor objects
        are left open (set those options on the object).
    batch_size : int, optional
        Trials asked at once and evaluated in parallel before the policy learns their
        rewards (default: the executor's workers, so ``workers`` trials run at once). A
        given seed and batch size give the same trials whatever the executor.
    k, percentile : optional
        Final selection rule passed to ``policy.recommend`` (default: the single best).
    score_final : bool
        Score the selection, local data only and the whole pool on the test split when the
        evaluator can train.
    callback : callable, optional
        Called with each trial's final outcome (complete or failed) as soon as it finishes
        (not for journaled trials).
    workers : int, optional
        Worker processes (``"process"``) or CPUs of a local Ray instance (``"ray"``) of an
        executor given by name.
    threads_per_trial : int, optional
        BLAS/OpenMP threads of each trial (default: available CPUs // workers, at least 1).
    trial_timeout : float, optional
        Seconds a trial may run before it is stopped and counted as a failed attempt
        (guaranteed by the process executor; see :mod:`dashsel.executors`).
    retries : int
        How often a failed trial is run again (same seed) before it fails for good.
    on_failure : {"skip", "stop"}
        What a trial that fails for good does: ``"skip"`` records it failed with its error,
        sets its dataset aside (never asked again; listed in
        :attr:`SelectionResult.failed_datasets`) and goes on; the run stops only when every
        dataset of the pool has failed. ``"stop"`` stops the run with the trial's error (the
        journal keeps everything finished; running again retries the trial).

    Returns
    -------
    SelectionResult

    Raises
    ------
    DashselError
        Every dataset failed, or (``on_failure="stop"``) a trial failed: an exception in
        ``evaluate``, a :class:`~dashsel.errors.RewardError` for a reward that is not a
        finite number in the evaluator's ``reward_range``, a timeout. The message names
        the dataset and trial.
    JournalError
        The journal belongs to another run or is not a dashsel journal.
    """
    budget = _positive_int("budget", budget)
    if batch_size is not None:
        batch_size = _positive_int("batch_size", batch_size)
    if isinstance(retries, bool) or not isinstance(retries, int | np.integer) or retries < 0:
        raise DashselError(f"retries must be an integer >= 0, got {retries!r}")
    if on_failure not in ON_FAILURE:
        raise DashselError(f"on_failure must be one of {', '.join(ON_FAILURE)}, got {on_failure!r}")
    # An int only: the journal stores it and derive_seed() keys every trial on it.
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise DashselError(f"seed must be an integer, got {seed!r}")
    seed = check_seed(seed)  # numpy seeds cannot be negative
    if isinstance(journal, str | Path):
        check_journal_path(journal)
    validate_selection_rule(k, percentile)
    if isinstance(pool, Hierarchy):
        pool = Pool.replay_only(pool)
    if isinstance(policy, str):
        from dashsel.policies import make_policy

        policy = make_policy(policy)
    if not callable(getattr(evaluator, "evaluate", None)):
        raise TypeError(f"evaluator must be an Evaluator, not {type(evaluator).__name__}")

    options = {"threads_per_trial": threads_per_trial, "trial_timeout": trial_timeout}
    if isinstance(executor, Executor) and (
        workers is not None or any(v is not None for v in options.values())
    ):
        raise DashselError(
            "workers, threads_per_trial and trial_timeout are set on an executor object "
            "when it is made, not in select()"
        )
    _check_splits(evaluator)
    jr, own_journal = open_journal(journal)
    try:
        if executor is None:
            executor = "inprocess"
        if isinstance(executor, str):
            ex, own_executor = make_executor(executor, workers, **options), True
        else:
            ex, own_executor = executor, False
        try:
            if batch_size is None:
                batch_size = max(1, int(ex.n_workers))
            run = _Run(pool, policy, evaluator, budget, jr, ex, seed, batch_size, callback)
            run.retries = int(retries)
            run.on_failure = on_failure
            return run.execute(k=k, percentile=percentile, score_final=score_final)
        finally:
            if own_executor:
                ex.close()
    finally:
        if own_journal:
            jr.close()


#: What a trial that fails for good does (see :func:`select`).
ON_FAILURE: tuple[str, ...] = ("skip", "stop")


def _check_splits(evaluator: Evaluator) -> None:
    """Load the local and validation data a training evaluator needs now, before any trial,
    so a missing or broken split fails the run up front, not in its first trial."""
    if getattr(evaluator, "can_train", False):
        warm_up(evaluator)


def _positive_int(name: str, value: Any) -> int:
    integral = isinstance(value, int | np.integer) or (
        isinstance(value, float) and value.is_integer()
    )
    if isinstance(value, bool) or not integral or value < 1:
        raise DashselError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class _Run:
    """State of one :func:`select` call (kept out of the public API)."""

    def __init__(
        self,
        pool: Pool,
        policy: Policy,
        evaluator: Evaluator,
        budget: int,
        journal: Journal,
        executor: Executor,
        seed: int,
        batch_size: int,
        callback: Callback | None,
    ) -> None:
        self.pool = pool
        self.hierarchy = pool.hierarchy
        self.policy = policy
        self.evaluator = evaluator
        self.budget = budget
        self.journal = journal
        self.executor = executor
        self.seed = seed
        self.batch_size = batch_size
        self.callback = callback
        self.outcomes: dict[int, TrialOutcome] = {}
        self.batch_of: dict[int, int] = {}
        self.pulls: Counter[str] = Counter()
        self.overhead = 0.0
        self.n_resumed = 0
        self.retries = 0
        self.on_failure = "skip"
        # Datasets whose trial failed for good, with the error: never asked again.
        self.failed: dict[str, str] = {}
        self.finished_failed: set[int] = set()
        self.best: float | None = None

    @contextmanager
    def _policy_time(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.overhead += time.perf_counter() - t0

    # --- the loop --------------------------------------------------------------------------
    def execute(
        self, *, k: int | None, percentile: float | None, score_final: bool
    ) -> SelectionResult:
        meta = run_meta(
            self.pool,
            self.policy,
            self.evaluator,
            seed=self.seed,
            batch_size=self.batch_size,
            budget=self.budget,
            k=k,
            percentile=percentile,
        )
        self.journal.open_run(meta)
        log_event(
            logging.DEBUG,
            f"run: {self.policy.name} on {self.pool.name}, budget {self.budget}, executor "
            f"{self.executor.name} ({self.executor.n_workers} at once, batch {self.batch_size}, "
            f"{self.executor.threads_per_trial or 'default'} threads per trial)",
            policy=self.policy.name,
            pool=self.pool.name,
            budget=self.budget,
            executor=self.executor.name,
            batch_size=self.batch_size,
            threads_per_trial=self.executor.threads_per_trial,
            trial_timeout=self.executor.trial_timeout,
            retries=self.retries,
        )
        with self._policy_time():
            self.policy.reset(self.hierarchy, random_state=self.seed)

        n_started, n_spent, next_batch = self._resume(self.journal.records())
        while n_spent < self.budget:
            m = min(self.batch_size, self.budget - n_spent)
            with self._policy_time():
                # Set-aside datasets are excluded; the policy's exclusion is part of its
                # seeded ask, so a resumed run (which rebuilds `failed`) asks the same.
                ids = (
                    self.policy.ask(m, exclude=tuple(self.failed))
                    if self.failed
                    else (self.policy.ask(m))
                )
            specs = [self._spec(n_started + i, d) for i, d in enumerate(ids)]
            # Journal the whole batch, in one transaction, before evaluating any of it: a
            # kill then leaves all of the batch on record or none of it, and resuming
            # evaluates what is recorded as it is (never half a batch, asked again later).
            self.journal.record_starts(
                specs,
                groups=[self.hierarchy.group_of(s.dataset_id) for s in specs],
                batch=next_batch,
            )
            for spec in specs:
                self.batch_of[spec.number] = next_batch
            self._evaluate(specs)
            self._tell([s.number for s in specs])
            n_started += m
            n_spent += m
            next_batch += 1

        with self._policy_time():
            rec = self.policy.recommend(k=k, percentile=percentile)
            posterior = self.policy.posterior()

        test_acc = local_acc = global_acc = None
        if score_final and getattr(self.evaluator, "can_train", False):
            ev = self.evaluator
            test_acc = float(ev.score(list(rec.datasets), self.seed, "test"))
            local_acc = float(ev.score([], self.seed, "test"))
            global_acc = float(ev.score(list(self.hierarchy.dataset_ids), self.seed, "test"))

        done = [self.outcomes[n] for n in sorted(self.outcomes)]
        return SelectionResult(
            selected=tuple(rec.datasets),
            selected_groups=tuple(rec.groups),
            posterior=posterior,
            trials=self._trials_frame(done),
            test_accuracy=test_acc,
            local_accuracy=local_acc,
            global_accuracy=global_acc,
            n_evaluations=len(done),
            evaluation_seconds=float(sum(o.duration for o in done)),
            overhead_seconds=self.overhead,
            policy=self.policy.name,
            policy_params=to_jsonable(self.policy.get_params()),
            seed=self.seed,
            budget=self.budget,
            pool=self.pool.name,
            batch_size=self.batch_size,
            n_resumed=self.n_resumed,
            failed_datasets=dict(self.failed),
        )

    def _spec(self, number: int, dataset_id: str) -> TrialSpec:
        self.hierarchy.index(dataset_id)  # a policy bug should name the id, not fail later
        spec = TrialSpec(
            number=number,
            dataset_id=dataset_id,
            seed=derive_seed(self.seed, number),
            pull=self.pulls[dataset_id],
        )
        self.pulls[dataset_id] += 1
        return spec

    # --- resuming --------------------------------------------------------------------------
    def _resume(self, records: Sequence[TrialRecord]) -> tuple[int, int, int]:
        """Replay journaled trials; returns (trials started, budget spent, next batch).

        Trials given back by a study (:data:`~dashsel.journal.ABANDONED`) keep their number
        but spend no budget and are not evaluated again.
        """
        where = self.journal.location
        numbers = [r.spec.number for r in records]
        if numbers != list(range(len(records))):
            raise JournalError(
                f"journal {where}: trial numbers are not 0..{len(records) - 1} (holes or "
                "duplicates); it was not written by select"
            )
        abandoned = {r.spec.number for r in records if is_abandoned(r)}
        n_spent = len(records) - len(abandoned)
        if n_spent > self.budget:
            raise JournalError(
                f"journal {where} already holds {n_spent} trials, more than the budget "
                f"{self.budget}: give a budget of at least {n_spent}"
            )
        batches = [(b, list(rs)) for b, rs in itertools.groupby(records, key=lambda r: r.batch)]
        last_batch = -1
        for i, (batch, recs) in enumerate(batches):
            if batch <= last_batch:
                raise JournalError(f"journal {where}: batch {batch} is not contiguous")
            last_batch = batch
            for r in recs:
                expected = TrialSpec(
                    r.spec.number,
                    r.spec.dataset_id,
                    derive_seed(self.seed, r.spec.number),
                    self.pulls[r.spec.dataset_id],
                )
                if r.spec != expected:
                    raise JournalError(
                        f"journal {where}: trial {r.spec.number} is {r.spec}, but this run "
                        f"would have {expected}"
                    )
                self.pulls[r.spec.dataset_id] += 1
                self.batch_of[r.spec.number] = batch
                if r.state is TrialState.COMPLETE and r.outcome is not None:
                    self.outcomes[r.spec.number] = r.outcome
                    self.n_resumed += 1
                elif (
                    r.state is TrialState.FAILED
                    and r.spec.number not in abandoned
                    and i != len(batches) - 1
                ):
                    # Failed for good and the run went on: its dataset stays set aside.
                    error = r.outcome.error if r.outcome is not None else None
                    self.failed[r.spec.dataset_id] = error or "failed"
                    self.finished_failed.add(r.spec.number)
        # Trials started but not finished (crash, kill, failure) are evaluated again with the
        # journaled spec, not asked again: asking would need the rewards of the very batch
        # they are part of. select leaves them in its last batch only; a study's pending
        # trials may sit in any batch, and are evaluated here as well.
        todo = [
            r
            for r in records
            if r.spec.number not in self.outcomes
            and r.spec.number not in abandoned
            and r.spec.number not in self.finished_failed
        ]
        for b, recs in itertools.groupby(todo, key=lambda r: r.batch):
            specs = [r.spec for r in recs]
            self.journal.record_starts(
                specs, groups=[self.hierarchy.group_of(s.dataset_id) for s in specs], batch=b
            )
        if todo:
            self._evaluate([r.spec for r in todo])
        # Batches are contiguous in number order, so telling every trial in number order is
        # what the original run told, batch after batch; the ask counter goes where it was.
        with self._policy_time():
            self.policy.replay(
                [(o.spec.dataset_id, o.reward) for _, o in sorted(self.outcomes.items())],
                n_asked=len(records),
            )
        return len(records), n_spent, last_batch + 1

    # --- evaluation and bookkeeping --------------------------------------------------------
    def _evaluate(self, specs: Sequence[TrialSpec]) -> None:
        """Run specs on the executor, retrying failed ones, and journal each final outcome.

        A trial that still fails after ``retries`` more attempts stops the run
        (``on_failure="stop"``) or is recorded failed and its dataset set aside
        (``"skip"``); the run stops when every dataset has been set aside.
        """
        final_failures: list[TrialOutcome] = []
        todo = list(specs)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            again: list[TrialSpec] = []
            # closing(): if the callback or a KeyboardInterrupt stops us, trials not yet
            # finished are cancelled (the process executor kills their workers); the journal
            # keeps them as running and a resume runs them again.
            with closing(self.executor.map_unordered(self.evaluator, todo)) as outcomes:
                for out in outcomes:
                    if out.state is not TrialState.COMPLETE and not last:
                        log_event(
                            logging.DEBUG,
                            f"trial {out.spec.number + 1} attempt {attempt + 1} failed, "
                            f"retrying: {out.error}",
                            trial=out.spec.number,
                            dataset=out.spec.dataset_id,
                            attempt=attempt + 1,
                            error=out.error,
                        )
                        again.append(out.spec)
                        continue
                    self.journal.record_outcome(out)
                    if out.state is TrialState.COMPLETE:
                        self.outcomes[out.spec.number] = out
                        if out.reward is not None and (self.best is None or out.reward > self.best):
                            self.best = out.reward
                    else:
                        final_failures.append(out)
                    self._log_trial(out)
                    if self.callback is not None:
                        self.callback(out)
            todo = sorted(again, key=lambda sp: sp.number)
            if not todo:
                break
        if not final_failures:
            return
        final_failures.sort(key=lambda o: o.spec.number)
        if self.on_failure == "stop":
            raise self._failure(final_failures[0])
        for out in final_failures:
            self.failed.setdefault(out.spec.dataset_id, out.error or "failed")
            self.finished_failed.add(out.spec.number)
        if len(self.failed) >= self.hierarchy.n_datasets:
            last_error = self._failure(final_failures[-1])
            raise last_error.with_message(
                f"every dataset of pool {self.pool.name!r} failed; the last: {last_error}"
            )

    def _log_trial(self, out: TrialOutcome) -> None:
        fields = {
            "trial": out.spec.number,
            "budget": self.budget,
            "dataset": out.spec.dataset_id,
            "group": self.hierarchy.group_of(out.spec.dataset_id),
            "state": str(out.state),
            "reward": out.reward,
            "best": self.best,
            "seconds": round(out.duration, 4),
        }
        if out.state is TrialState.COMPLETE:
            log_event(logging.INFO, trial_message(fields), **fields)
        else:
            fields["error"] = out.error
            log_event(logging.WARNING, trial_message(fields), **fields)

    def _failure(self, out: TrialOutcome) -> DashselError:
        """The error a failed trial stops the run with: its own DashselError (it names the
        dataset and trial already), or a DashselError whose text keeps the foreign type."""
        hint = ""
        if not isinstance(self.journal, InMemoryJournal):
            hint = f" (journal {self.journal.location} keeps finished trials: run again)"
        exc = out.exception
        if isinstance(exc, DashselError):
            return exc.with_message(f"{exc}{hint}")
        text = out.error or f"trial {out.spec.number} on dataset {out.spec.dataset_id!r} failed"
        error = DashselError(f"{text}{hint}")
        error.__cause__ = exc
        return error

    def _tell(self, numbers: Sequence[int]) -> None:
        """Tell the policy a batch's rewards in trial-number order."""
        with self._policy_time():
            for n in sorted(numbers):
                out = self.outcomes.get(n)
                if out is not None:  # failed trials are never told
                    self.policy.tell(out.spec.dataset_id, out.reward)

    def _trials_frame(self, done: Sequence[TrialOutcome]) -> pd.DataFrame:
        records = [
            TrialRecord(
                o.spec,
                self.batch_of[o.spec.number],
                self.hierarchy.group_of(o.spec.dataset_id),
                o.state,
                o.started,
                o,
            )
            for o in done
        ]
        return trials_frame(records, RESULT_TRIAL_COLUMNS)
