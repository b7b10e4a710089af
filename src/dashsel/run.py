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
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dashsel.checks import check_journal_path, check_seed
from dashsel.errors import DashselError, JournalError
from dashsel.executors import Executor, InProcessExecutor, make_executor
from dashsel.hierarchy import Hierarchy
from dashsel.journal import InMemoryJournal, Journal, is_abandoned, open_journal
from dashsel.jsonable import to_jsonable
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
    batch_size: int = 1,
    k: int | None = None,
    percentile: float | None = None,
    score_final: bool = True,
    callback: Callback | None = None,
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
        :func:`~dashsel.executors.make_executor`; executors given by name are closed at the
        end, executor objects are left open.
    batch_size : int
        Trials asked at once and evaluated in parallel before the policy learns their
        rewards.
    k, percentile : optional
        Final selection rule passed to ``policy.recommend`` (default: the single best).
    score_final : bool
        Score the selection, local data only and the whole pool on the test split when the
        evaluator can train.
    callback : callable, optional
        Called with each trial's outcome as soon as it finishes (not for journaled trials).

    Returns
    -------
    SelectionResult

    Raises
    ------
    DashselError
        A trial failed (an exception in ``evaluate``; :class:`~dashsel.errors.RewardError`
        for a non-finite reward). The message names the dataset and trial; the journal keeps
        the failure and everything finished before it, and running ``select`` again with the
        same journal retries from there.
    JournalError
        The journal belongs to another run or is not a dashsel journal.
    """
    budget = _positive_int("budget", budget)
    batch_size = _positive_int("batch_size", batch_size)
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

    jr, own_journal = open_journal(journal)
    try:
        if executor is None:
            ex, own_executor = InProcessExecutor(), True
        elif isinstance(executor, str):
            ex, own_executor = make_executor(executor), True
        else:
            ex, own_executor = executor, False
        try:
            run = _Run(pool, policy, evaluator, budget, jr, ex, seed, batch_size, callback)
            return run.execute(k=k, percentile=percentile, score_final=score_final)
        finally:
            if own_executor:
                ex.close()
    finally:
        if own_journal:
            jr.close()


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
        with self._policy_time():
            self.policy.reset(self.hierarchy, random_state=self.seed)

        n_started, n_spent, next_batch = self._resume(self.journal.records())
        while n_spent < self.budget:
            m = min(self.batch_size, self.budget - n_spent)
            with self._policy_time():
                ids = self.policy.ask(m)
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
        for batch, recs in batches:
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
        # Trials started but not finished (crash, kill, failure) are evaluated again with the
        # journaled spec, not asked again: asking would need the rewards of the very batch
        # they are part of. select leaves them in its last batch only; a study's pending
        # trials may sit in any batch, and are evaluated here as well.
        todo = [
            r
            for r in records
            if r.spec.number not in self.outcomes and r.spec.number not in abandoned
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
        """Run specs on the executor, journal each outcome, stop on the first failure."""
        failures: list[TrialOutcome] = []
        # closing(): if the callback or a KeyboardInterrupt stops us, trials not yet started
        # are cancelled; the journal keeps them as running and a resume re-runs them.
        with closing(self.executor.map_unordered(self.evaluator, specs)) as outcomes:
            for out in outcomes:
                self.journal.record_outcome(out)
                if out.state is TrialState.COMPLETE:
                    self.outcomes[out.spec.number] = out
                    if self.callback is not None:
                        self.callback(out)
                else:
                    failures.append(out)
        if failures:
            raise self._failure(min(failures, key=lambda o: o.spec.number))

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
                out = self.outcomes[n]
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
