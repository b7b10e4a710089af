"""A journaled study: ask/tell on a journal file that any process can drive.

A :class:`Study` is the loop of :func:`dashsel.select` turned inside out: instead of calling
an evaluator, it hands out trials (``ask``) and records what the caller reports back
(``tell``). Everything lives in one SQLite journal, the same format ``dashsel run`` writes, so
a run's journal can be continued as a study and a study's journal by ``dashsel run``.

How it stays consistent with ``select``:

* The policy is rebuilt from the journal for every ask: complete trials told in trial-number
  order, the ask counter at the number of trials asked. A loop that asks ``n``, then tells the
  oldest pending trial and asks one more, again and again, makes the trials and selection of
  ``select(..., batch_size=n)`` with the same policy, seed and budget (select's window of
  ``n`` trials in flight).
* Trials asked but not told are *pending*: a later ask excludes their datasets while the pool
  has others (``Policy.ask(exclude=...)``), so ten cluster jobs asking one trial each train ten
  different datasets.
* Each ask or tell is one transaction under the journal's lock (see
  :class:`~dashsel.journal.JournalLock`), so several processes may ask and tell at once and
  no trial is lost or handed out twice. A live ``dashsel run`` holds the journal; study
  calls are refused then, with one line naming it.

>>> from dashsel import Study
>>> study = Study.create("run.db", "pool.toml", budget=40)     # doctest: +SKIP
>>> [(trial, dataset)] = study.ask()                           # doctest: +SKIP
>>> study.tell(trial, 0.83)                                    # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dashsel.closeable import Closeable
from dashsel.errors import DashselError, JournalError, RewardError, one_line
from dashsel.hierarchy import Hierarchy
from dashsel.journal import ABANDONED, SQLiteJournal, is_abandoned, meta_field
from dashsel.policies.base import (
    MAX_ABS_REWARD,
    Policy,
    Posterior,
    Recommendation,
    check_count,
    validate_selection_rule,
)
from dashsel.random_state import derive_seed
from dashsel.report import reset_policy
from dashsel.trial import TrialOutcome, TrialRecord, TrialSpec, TrialState

if TYPE_CHECKING:
    import pandas as pd

    from dashsel.pool import Pool


class StudyError(DashselError):
    """A study call that does not fit the journal's state (an unknown or finished trial)."""


class BudgetSpent(StudyError):
    """Every trial of the study's budget has been asked (``dashsel study ask`` exits with 3)."""


class TrialsPending(StudyError):
    """A serial study was asked for trials while others are pending (exit status 4)."""


def default_policy_name() -> str:
    """The default engine: ``dashsel.policies.DEFAULT_POLICY`` where defined, else DaSH."""
    import dashsel.policies as policies

    return str(getattr(policies, "DEFAULT_POLICY", "dash"))


def _pool_of(pool_or_manifest: Any) -> Pool:
    from dashsel.pool import Pool

    if isinstance(pool_or_manifest, Pool):
        return pool_or_manifest
    if isinstance(pool_or_manifest, Hierarchy):
        return Pool.replay_only(pool_or_manifest)
    if isinstance(pool_or_manifest, Mapping):  # {dataset id: group}
        ids = [str(d) for d in pool_or_manifest]
        return Pool.replay_only(Hierarchy(ids, [str(pool_or_manifest[d]) for d in ids]))
    if isinstance(pool_or_manifest, str | Path):
        from dashsel.manifest import load_manifest

        return load_manifest(pool_or_manifest).pool
    raise DashselError(
        "a study needs a Pool, a Hierarchy, a {dataset: group} mapping or a manifest path, not "
        f"{type(pool_or_manifest).__name__}"
    )


def _check_reward(trial: int, reward: Any) -> float:
    ok = isinstance(reward, int | float | np.integer | np.floating) and not isinstance(
        reward, bool | np.bool_
    )
    if not ok:
        raise RewardError(f"reward for trial {trial} is not a number: {one_line(repr(reward), 80)}")
    r = float(reward)
    if not math.isfinite(r):
        raise RewardError(f"reward for trial {trial} is not finite: {r!r}")
    if abs(r) > MAX_ABS_REWARD:
        raise RewardError(
            f"reward for trial {trial} is too large: {r!r} (|reward| must be at most "
            f"{MAX_ABS_REWARD:g})"
        )
    return r


class Study(Closeable):
    """Ask/tell on a journal file, from any number of processes.

    Make one with :meth:`create` or :meth:`open`; close it (or use it as a context manager)
    when done. Between calls it holds no lock: other processes may ask and tell.

    Attributes
    ----------
    path : Path
        The journal file.
    """

    def __init__(self, journal: SQLiteJournal) -> None:
        self.journal = journal
        self.path = journal.path
        self._policy: Policy | None = None
        self._told: list[int] = []

    # --- making and opening ----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        pool_or_manifest: Any,
        policy: str | Policy | None = None,
        *,
        seed: int = 0,
        k: int | None = None,
        percentile: float | None = None,
        budget: int | None = None,
        pending_timeout: float | None = None,
        deterministic: bool = False,
        serial: bool = False,
        policy_params: Mapping[str, Any] | None = None,
        dedupe: Any = None,
    ) -> Study:
        """Create a study in a new journal file.

        Parameters
        ----------
        path : str or Path
            The journal file; must not hold a run yet.
        pool_or_manifest : Pool, Hierarchy, mapping or path
            The candidates: a pool, its hierarchy, ``{dataset id: group}``, or a manifest.
        policy : str or Policy, optional
            The engine (default :func:`default_policy_name`); a name is built with
            ``policy_params``.
        seed : int
            Seeds the policy and every trial's evaluation seed, as in :func:`dashsel.select`.
        k, percentile : optional
            The selection rule the study aims at; :meth:`recommend` and ``report`` use it.
        budget : int, optional
            Trials the study may ask in all (abandoned ones not counted); None: no limit.
        pending_timeout : float, optional
            Seconds after which a pending trial is given back (when a later ask finds it).
        deterministic : bool
            The trainings are deterministic (a repeat returns the same reward), as an
            evaluator's ``deterministic`` says for ``dashsel run``: a policy that takes it (the
            engine) then never asks for an evaluated dataset while others remain.
        serial : bool
            Refuse to ask while trials are pending (:class:`TrialsPending`), so the trials
            depend on the seed and rewards only, never on timing: a loop that asks one trial
            and tells it makes exactly ``dashsel run``.
        policy_params : mapping, optional
            Parameters for a policy given by name.
        dedupe : None, bool or Redundancy, optional
            As in :func:`dashsel.select`: the selection skips a candidate that nearly copies
            one already chosen. None (default): on when every candidate has arrays and the
            rule chooses more than one dataset. The near-copies are found here, once, and
            kept in the journal for every process.
        """
        from dashsel.policies import make_policy
        from dashsel.run import configure_policy, run_meta, run_scores
        from dashsel.sets import check_dedupe, near_copies_for

        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise DashselError(f"seed must be a non-negative integer, got {seed!r}")
        validate_selection_rule(k, percentile)
        check_dedupe(dedupe)
        if budget is not None:
            budget = check_count("budget", budget)
        if pending_timeout is not None and not (
            isinstance(pending_timeout, int | float)
            and not isinstance(pending_timeout, bool)
            and math.isfinite(pending_timeout)
            and pending_timeout > 0
        ):
            raise DashselError(
                f"pending_timeout must be a positive number of seconds, got {pending_timeout!r}"
            )
        pool = _pool_of(pool_or_manifest)
        params = dict(policy_params or {})
        if policy is None or isinstance(policy, str):
            pol = make_policy(policy or default_policy_name(), **params)
        elif isinstance(policy, Policy):
            if params:
                policy.set_params(**params)
            pol = policy
            try:  # a study rebuilds its policy from the journal in every process
                make_policy(pol.name, **pol.get_params())
            except (DashselError, TypeError, ValueError) as exc:
                raise DashselError(
                    f"policy {pol.name!r} cannot be rebuilt from its name and parameters "
                    f"({one_line(exc)}); register it (dashsel.policies.register_policy)"
                ) from None
        else:
            raise DashselError(f"policy must be a name or a Policy, not {type(policy).__name__}")
        # What `dashsel run` tells the policy (deterministic trainings, the target k or
        # percentile) goes into its parameters, so every process rebuilds the same engine.
        configure_policy(pol, deterministic=bool(deterministic), k=k, percentile=percentile)
        # The engine's prior, computed once here and kept in the header for every process.
        prior = run_scores(pool, pol, None)
        near_copies = near_copies_for(pool, dedupe, k, percentile)
        meta = run_meta(
            pool,
            pol,
            None,
            scores=None if prior is None else prior.describe(),
            seed=int(seed),
            batch_size=None,
            budget=budget,
            k=k,
            percentile=percentile,
            near_copies=near_copies,
        )
        meta["study"] = {"pending_timeout": pending_timeout, "serial": bool(serial)}
        journal = SQLiteJournal(path, mode="shared")
        try:
            if journal.meta():
                raise JournalError(
                    f"journal {journal.path} already holds a run; continue it with "
                    "Study.open / `dashsel study ask`, or give a new file"
                )
            journal.open_run(meta)
        except BaseException:
            journal.close()
            raise
        return cls(journal)

    @classmethod
    def open(cls, path: str | Path) -> Study:
        """Open the study (or ``dashsel run`` journal) in ``path``."""
        path = Path(path)
        if not path.is_file():
            raise JournalError(
                f"journal {path} does not exist; create it with `dashsel study create`"
            )
        journal = SQLiteJournal(path, mode="shared")
        try:
            meta = journal.header()
            if not meta:
                raise JournalError(f"journal {path} holds no study yet")
            if journal.pool_structure() is None:
                raise JournalError(f"journal {path} does not hold its pool's dataset ids")
        except BaseException:
            journal.close()
            raise
        return cls(journal)

    def close(self) -> None:
        self.journal.close()

    # --- state -----------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        """The journal's header (pool, policy, seed, budget, selection rule, ...)."""
        return self.journal.meta()

    def _setting(self, meta: Mapping[str, Any], name: str) -> Any:
        return meta_field(meta, f"study.{name}")

    def _policy_for(self, meta: Mapping[str, Any], records: list[TrialRecord]) -> Policy:
        """The study's policy told every complete trial in number order, with its ask counter
        at the number of trials asked (cached between calls of this process)."""
        from dashsel.policies import make_policy

        done = [r for r in records if r.state is TrialState.COMPLETE and r.outcome is not None]
        numbers = [r.spec.number for r in done]
        if self._policy is None or numbers[: len(self._told)] != self._told:
            ids, groups = self.journal.pool_structure() or ((), ())
            try:
                policy = make_policy(
                    meta_field(meta, "policy.name"), **(meta_field(meta, "policy.params") or {})
                )
            except (DashselError, TypeError, ValueError) as exc:
                raise JournalError(
                    f"journal {self.path}: its policy cannot be made again ({one_line(exc)})"
                ) from None
            reset_policy(policy, Hierarchy(ids, groups), meta)
            self._policy, self._told = policy, []
        policy = self._policy
        for r in done[len(self._told) :]:
            policy.tell(r.spec.dataset_id, r.outcome.reward)  # type: ignore[union-attr]
            self._told.append(r.spec.number)
        policy.n_asked_ = len(records)
        return policy

    def _expire(self, meta: Mapping[str, Any], records: list[TrialRecord]) -> list[TrialRecord]:
        """Give back pending trials older than the pending timeout; returns the records."""
        timeout = self._setting(meta, "pending_timeout")
        if not timeout:
            return records
        now = time.time()
        expired = [
            r for r in records if r.state is TrialState.RUNNING and now - r.started > timeout
        ]
        for r in expired:
            self.journal.record_outcome(
                TrialOutcome(
                    r.spec,
                    TrialState.FAILED,
                    None,
                    r.started,
                    now,
                    f"{ABANDONED}: pending for more than {timeout:g} s (timed out)",
                )
            )
        return self.journal.records() if expired else records

    # --- ask / tell ------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[tuple[int, str]]:
        """Hand out up to ``n`` trials: ``[(trial number, dataset id), ...]``, marked running.

        Fewer than ``n`` come back when the budget has fewer left. Pending trials' datasets
        are avoided while the pool has others.

        Raises
        ------
        BudgetSpent
            The budget is spent (every trial asked; pending ones may still be told).
        TrialsPending
            A serial study has pending trials.
        """
        n = check_count("ask(n): n", n)
        if self._setting(self.journal.header(), "pending_timeout"):
            # its own transaction: trials given back stay given back even if the ask is refused
            with self.journal.transaction():
                self._expire(self.journal.header(), self.journal.records())
        with self.journal.transaction():
            meta = self.journal.header()
            records = self._expire(meta, self.journal.records())
            spent = sum(1 for r in records if not is_abandoned(r))
            budget = meta.get("budget")
            if budget is not None:
                left = int(budget) - spent
                if left <= 0:
                    raise BudgetSpent(f"study {self.path}: the budget of {budget} trials is spent")
                n = min(n, left)
            pending = [r for r in records if r.state is TrialState.RUNNING]
            if pending and self._setting(meta, "serial"):
                raise TrialsPending(
                    f"study {self.path} is serial and {len(pending)} trial(s) are "
                    f"pending ({', '.join(str(r.spec.number) for r in pending[:5])}); tell "
                    "them first"
                )
            policy = self._policy_for(meta, records)
            ids = policy.ask(n, exclude=[r.spec.dataset_id for r in pending])
            pulls = Counter(r.spec.dataset_id for r in records)
            seed = int(meta.get("seed", 0))
            specs = []
            for i, d in enumerate(ids):
                number = len(records) + i
                specs.append(TrialSpec(number, d, derive_seed(seed, number), pulls[d]))
                pulls[d] += 1
            h = policy.hierarchy_
            batch = max((r.batch for r in records), default=-1) + 1
            self.journal.record_starts(
                specs, groups=[h.group_of(s.dataset_id) for s in specs], batch=batch
            )
        return [(s.number, s.dataset_id) for s in specs]

    def _running(self, trial: Any, verb: str) -> TrialRecord:
        number = check_count("trial", trial, minimum=0)
        rec = self.journal.record(number)
        if rec is None:
            raise StudyError(f"study {self.path} has no trial {number}")
        if rec.state is TrialState.COMPLETE:
            raise StudyError(
                f"study {self.path}: trial {number} was already told (reward "
                f"{rec.outcome.reward if rec.outcome else None}); it cannot be {verb}"
            )
        if rec.state is TrialState.FAILED:
            why = rec.outcome.error if rec.outcome else None
            raise StudyError(
                f"study {self.path}: trial {number} is closed ({one_line(why or 'failed', 120)})"
                f"; it cannot be {verb}"
            )
        return rec

    def tell(self, trial: int, reward: float | None = None, *, failed: str | None = None) -> None:
        """Record a pending trial's reward, or that it failed (``failed="why"``).

        A failed trial is never told to the policy; its dataset may be asked again.
        """
        if (reward is None) == (failed is None):
            raise StudyError("tell needs a reward or failed='why', not both or neither")
        with self.journal.transaction():
            rec = self._running(trial, "told")
            now = time.time()
            if failed is not None:
                out = TrialOutcome(
                    rec.spec,
                    TrialState.FAILED,
                    None,
                    rec.started,
                    now,
                    one_line(failed) or "failed",
                )
            else:
                r = _check_reward(rec.spec.number, reward)
                out = TrialOutcome(rec.spec, TrialState.COMPLETE, r, rec.started, now)
            self.journal.record_outcome(out)

    def abandon(self, trial: int) -> None:
        """Give a pending trial back: it spends no budget and its dataset may be asked again."""
        with self.journal.transaction():
            rec = self._running(trial, "abandoned")
            self.journal.record_outcome(
                TrialOutcome(rec.spec, TrialState.FAILED, None, rec.started, time.time(), ABANDONED)
            )

    # --- reading ---------------------------------------------------------------------------
    def _read_policy(self) -> tuple[dict[str, Any], Policy]:
        meta = self.journal.header()
        return meta, self._policy_for(meta, self.journal.records())

    def recommend(self, k: int | None = None, percentile: float | None = None) -> Recommendation:
        """The selection: by the study's own rule unless ``k`` or ``percentile`` is given,
        skipping near-copies of chosen candidates as ``dashsel run`` does (see ``dedupe`` in
        :meth:`create`)."""
        from dashsel.report import final_choice, selection_rule

        meta, policy = self._read_policy()
        k, percentile, _ = selection_rule(meta, k, percentile)
        return final_choice(meta, policy, k, percentile)[0]

    def posterior(self) -> Posterior:
        """The policy's beliefs after every complete trial."""
        return self._read_policy()[1].posterior()

    def trials(self) -> pd.DataFrame:
        """Every trial asked, as :data:`~dashsel.trial.TRIAL_COLUMNS` rows."""
        return self.journal.trials_frame()

    def pending(self) -> list[tuple[int, str]]:
        """Trials asked and not yet told: ``[(trial number, dataset id), ...]``."""
        return [
            (r.spec.number, r.spec.dataset_id)
            for r in self.journal.records()
            if r.state is TrialState.RUNNING
        ]
