"""The selection run: the one place that wires pool, policy, evaluator, executor and journal.

:func:`select` is a loop over the policy's ``ask``/``tell`` (you can drive those by hand, as
in Optuna's ask-and-tell interface; ``select`` adds journaling, parallel evaluation, resuming
and the final scoring).

How a run stays reproducible and resumable:

* Trial ``t`` is the policy's ``t``-th ask; its evaluation seed is ``derive_seed(seed, t)``
  and its ``pull`` counts earlier trials of the same dataset. Nothing about a trial depends on
  where or when it runs.
* With batch size ``B`` the run keeps a window of ``B`` trials in flight: it asks ``B`` at
  first; then, each time the oldest trial in flight (lowest number) has finished, it tells it
  to the policy and asks one more, the others in flight excluded as pending, and starts it at
  once. Tells come strictly in trial-number order, so the asks and tells are the same whatever
  the executor and whatever the timing: a seed and a batch size give the same trials.
* The trials of each ask are journaled (state ``running``) together, in one transaction,
  *before* any is evaluated, then each outcome as it completes.
* Trial ``t + B`` is asked right after trial ``t`` is told, so every journaled trial but the
  last ``B`` was told. Resuming tells those to the policy (whose ask counter is set to where
  the original run had it) and rebuilds the window from the last ``B``: finished ones wait for
  their turn, unfinished ones are evaluated again *as journaled*, not asked again. Finished
  trials are never repeated, so a resumed run ends exactly like an uninterrupted one.
* A trial that fails (an exception, a timeout, a reward outside the evaluator's range) is run
  again up to ``retries`` times with the same spec; one that keeps failing is journaled
  failed, never told to the policy, and, at its turn, its dataset is set aside: excluded from
  every later ask (``on_failure="stop"``: the run stops there, once the trials in flight have
  finished). Resuming sets aside again the datasets whose trials failed before the window, so
  the later asks are the original run's; a failed trial in the window is tried again.
* Each finished trial is logged to the ``"dashsel"`` logger (:mod:`dashsel.log`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import itertools
import logging
import time
import warnings
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dashsel.checks import check_journal_path, check_seed
from dashsel.errors import DashselError, JournalError
from dashsel.executors import Executor, TrialStream, make_executor, warm_up
from dashsel.hierarchy import Hierarchy
from dashsel.journal import InMemoryJournal, Journal, is_abandoned, open_journal
from dashsel.jsonable import to_jsonable
from dashsel.log import log_event, trial_message
from dashsel.policies.base import Policy, validate_selection_rule
from dashsel.pool import Pool
from dashsel.random_state import derive_seed
from dashsel.result import SelectionResult
from dashsel.sets import Redundancy, check_dedupe, near_copies_for, set_aware
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

logger = logging.getLogger(__name__)


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
    scores: dict[str, Any] | None = None,
    pool_structure: bool = True,
    near_copies: Redundancy | None = None,
) -> dict[str, Any]:
    """The metadata a journal stores for a run (identity fields plus context).

    ``evaluator`` and ``batch_size`` are None for a study driven from outside
    (:class:`dashsel.Study`); a run continuing it adopts its own. ``k`` / ``percentile`` are
    the selection rule, kept so ``dashsel report`` makes the run's selection. ``scores``
    describes the prior scores the policy was given (source, columns and a digest of the
    matrix, never the matrix itself), or None. ``pool_structure=False`` leaves out the pool's
    fingerprint, ids and groups (O(N) work at 10^6 datasets), for a journal no one else
    reads: the in-memory journal of a call that was given none. ``near_copies`` are the pairs
    the final choice skips (:func:`dashsel.sets.near_copies_for`), kept so a report skips them too.
    """
    from dashsel import __version__

    h = pool.hierarchy
    structure = (
        {
            "fingerprint": h.fingerprint(),
            # the structure itself, so `dashsel report` can rebuild the posterior
            "dataset_ids": list(h.dataset_ids),
            "groups": list(h.groups),
        }
        if pool_structure
        else {}
    )

    return to_jsonable(
        {
            "format": "dashsel-journal",
            "dashsel_version": __version__,
            "pool": {
                "name": pool.name,
                "n_datasets": h.n_datasets,
                "n_groups": h.n_groups,
                **structure,
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
            "scores": scores,
            "near_copies": None if near_copies is None else near_copies.to_record(),
            "created": time.time(),
        }
    )


def select(
    pool: Pool | Hierarchy,
    policy: Policy | str | None = None,
    evaluator: Evaluator | None = None,
    budget: int | None = None,
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
    deterministic: bool | None = None,
    scores: Any = None,
    stop_delta: float | None = None,
    dedupe: Any = None,
) -> SelectionResult:
    """Select datasets from ``pool`` with ``policy``, spending at most ``budget`` evaluations.

    Parameters
    ----------
    pool : Pool or Hierarchy
        The candidates (a bare Hierarchy is wrapped in a replay-only pool).
    policy : Policy, str or None
        A policy object (reset here) or a name for :func:`dashsel.policies.make_policy`.
        Default: :data:`dashsel.policies.DEFAULT_POLICY` (``"hits"``, dashsel's engine).
    evaluator : Evaluator
        Turns a trial into a reward (required).
    budget : int
        Most trials in the run, journaled ones included (required).
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
        Trials in flight at once (default: the executor's workers, so ``workers`` trials run
        at once): ``batch_size`` are asked at first, then one more each time the oldest trial
        in flight has finished and been told, asked with the others in flight as pending.
        Rewards are told in trial-number order, so a given seed and batch size give the same
        trials whatever the executor.
    k, percentile : optional
        Final selection rule passed to ``policy.recommend`` (default: the policy's own ``k`` /
        ``percentile`` if it has them set, else the single best). A policy that takes ``k`` /
        ``percentile`` targets (the engine) and has none set gets these.
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
    deterministic : bool, optional
        Whether repeating an evaluation returns the same reward. Default: the evaluator's
        ``deterministic`` attribute (the manifest's ``[evaluator] deterministic`` sets it). A
        policy with a ``deterministic`` parameter left at its default is given this value;
        a run that stops learning because every dataset was evaluated stops early
        (``stop_reason`` "pool exhausted"), and repeats of a deterministic evaluation are
        counted (``n_repeated_deterministic``) and warned about once.
    scores : None, bool, DataFrame or array, optional
        Training-free scores given to a policy whose ``reset`` takes ``covariates`` (the
        engine's prior). None (default): the pool's own ``score_*`` columns if it has them,
        else :func:`dashsel.scores.score_pool` when the pool has arrays (a failure is a
        warning), else none. True: the same, but an error when none can be had. False: none.
        A DataFrame (``score_*`` columns, indexed by dataset id or in pool order) or an array
        ``(n_datasets,)`` / ``(n_datasets, p)`` in pool order, higher = expected better: yours.
    stop_delta : float in (0, 1), optional
        Stop before the budget once the recommended set is settled: the policy's
        ``prob_correct()`` (posterior probability that the recommended top-k is correct; the
        engine) is at least 1 - stop_delta, or, for a policy with only ``should_stop()``, when
        that says so. Checked before every ask (after each trial told); the trials already in
        flight still finish and are told. Not a policy parameter (a resumed run may change
        it). Ignored, with a warning, by a policy with neither.
    dedupe : None, bool or Redundancy, optional
        Make the final choice set-aware (:mod:`dashsel.sets`): a candidate that nearly copies
        one already chosen is skipped and the next of the policy's ranking takes its place
        (``SelectionResult.set_skipped`` says which and why). None (default): on when every
        candidate has arrays; True: on (an error without arrays); False: off; a
        :class:`~dashsel.sets.Redundancy` computed beforehand: use it.

    Returns
    -------
    SelectionResult
        With ``stop_reason`` and ``n_saved`` (budget not spent), the ``scores`` used and
        ``n_repeated_deterministic``.

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
    if evaluator is None:
        raise TypeError("select() missing required argument: 'evaluator'")
    if budget is None:
        raise TypeError("select() missing required argument: 'budget'")
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
    check_dedupe(dedupe)
    if deterministic is not None and not isinstance(deterministic, bool | np.bool_):
        raise DashselError(f"deterministic must be True, False or None, got {deterministic!r}")
    if stop_delta is not None and not (
        isinstance(stop_delta, int | float | np.floating)
        and not isinstance(stop_delta, bool)
        and 0.0 < float(stop_delta) < 1.0
    ):
        raise DashselError(f"stop_delta must be a number in (0, 1), got {stop_delta!r}")
    if isinstance(pool, Hierarchy):
        pool = Pool.replay_only(pool)
    if policy is None or isinstance(policy, str):
        from dashsel.policies import DEFAULT_POLICY, make_policy

        policy = make_policy(DEFAULT_POLICY if policy is None else policy)
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
    if executor is None:
        executor = "inprocess"
    if isinstance(executor, str):
        ex, own_executor = make_executor(executor, workers, **options), True
    else:
        ex, own_executor = executor, False
    try:
        # Workers start and load the evaluator while this process checks the splits, scores
        # and fingerprints the pool; sent before those load arrays, the evaluator carries
        # none of them (workers read what they need themselves).
        ex.start(evaluator, workers=batch_size)
        _check_splits(evaluator)
        claimed = getattr(evaluator, "deterministic", False)
        det = bool(claimed if deterministic is None else deterministic)
        k, percentile = configure_policy(policy, deterministic=det, k=k, percentile=percentile)
        prior = run_scores(pool, policy, scores)
        setup = _Setup(
            deterministic=det,
            policy_deterministic=bool(getattr(policy, "deterministic", False)),
            prior=prior,
            stop_delta=None if stop_delta is None else float(stop_delta),
            near_copies=near_copies_for(pool, dedupe, k, percentile),
        )
        if setup.stop_delta is not None and not any(
            callable(getattr(policy, m, None)) for m in ("prob_correct", "should_stop")
        ):
            warnings.warn(
                f"policy {policy.name!r} has no stopping rule (prob_correct or should_stop): "
                "stop_delta is ignored and the run spends its whole budget",
                stacklevel=2,
            )

        jr, own_journal = open_journal(journal)
        try:
            if batch_size is None:
                batch_size = max(1, int(ex.n_workers))
            run = _Run(pool, policy, evaluator, budget, jr, ex, seed, batch_size, callback, setup)
            run.private_journal = own_journal and isinstance(jr, InMemoryJournal)
            run.retries = int(retries)
            run.on_failure = on_failure
            return run.execute(k=k, percentile=percentile, score_final=score_final)
        finally:
            if own_journal:
                jr.close()
    finally:
        if own_executor:
            ex.close()


#: What a trial that fails for good does (see :func:`select`).
ON_FAILURE: tuple[str, ...] = ("skip", "stop")


def _check_splits(evaluator: Evaluator) -> None:
    """Load the local and validation data a training evaluator needs now, before any trial,
    so a missing or broken split fails the run up front, not in its first trial."""
    if getattr(evaluator, "can_train", False):
        warm_up(evaluator)


# --- what the run tells the policy ---------------------------------------------------------
def _param_names(policy: Policy) -> list[str]:
    names = getattr(type(policy), "_param_names", None)
    return list(names()) if callable(names) else list(policy.get_params())


def _param_default(policy: Policy, name: str) -> Any:
    try:
        p = inspect.signature(type(policy).__init__).parameters.get(name)
    except (TypeError, ValueError):
        return inspect.Parameter.empty
    return inspect.Parameter.empty if p is None else p.default


def configure_policy(
    policy: Policy,
    *,
    deterministic: bool,
    k: int | None,
    percentile: float | None,
) -> tuple[int | None, float | None]:
    """Tell ``policy`` what the run knows, through its own parameters, for any policy.

    * ``deterministic``: set when the policy takes it and the user left it at its default.
    * ``k`` / ``percentile``: the run's selection rule becomes the policy's target when the
      policy takes them and has neither set.

    A parameter counts as left alone when it equals the constructor's default, or still holds
    the value an earlier run set (so reusing one policy object across runs re-derives it).

    Returns
    -------
    (k, percentile)
        The final selection rule: the run's, or the policy's own when the run gives none.
    """
    names = set(_param_names(policy))
    # Values earlier runs set on this object: not the user's choice, derive them again.
    run_set: dict[str, Any] = dict(getattr(policy, "_dashsel_run_set", {}))

    def untouched(name: str) -> bool:
        value = getattr(policy, name, None)
        if name in run_set and run_set[name] == value:
            return True
        default = _param_default(policy, name)
        return default is not inspect.Parameter.empty and value == default

    changes: dict[str, Any] = {}
    if "deterministic" in names and untouched("deterministic"):
        changes["deterministic"] = bool(deterministic)
    has_rule = k is not None or percentile is not None
    if {"k", "percentile"} <= names:
        if untouched("k") and untouched("percentile"):
            if has_rule:
                changes["k"], changes["percentile"] = k, percentile
            else:  # a target an earlier run set is not this run's: back to the defaults
                for name in ("k", "percentile"):
                    if name in run_set:
                        changes[name] = _param_default(policy, name)
        elif not has_rule:  # the user set the policy's target: it is the run's rule too
            k, percentile = getattr(policy, "k", None), getattr(policy, "percentile", None)
    changes = {n: v for n, v in changes.items() if getattr(policy, n, None) != v or n in run_set}
    if changes:
        policy.set_params(**changes)
        run_set.update(changes)
        policy._dashsel_run_set = run_set  # type: ignore[attr-defined]
    return k, percentile


@dataclass(frozen=True)
class PriorScores:
    """Training-free scores handed to the policy as covariates (see :func:`run_scores`).

    ``covariates`` is the (n_datasets, p) matrix in pool order; ``frame`` the scores by
    dataset (``score_*`` columns); ``source`` is ``"computed"``, ``"pool"`` or ``"user"``;
    ``seconds`` the time spent computing them (0 unless computed).
    """

    covariates: np.ndarray
    frame: pd.DataFrame
    source: str
    seconds: float

    def digest(self) -> str:
        """SHA-256 of the covariate matrix (what the journal header keeps)."""
        x = np.ascontiguousarray(self.covariates, dtype="<f8")
        return hashlib.sha256(repr(x.shape).encode() + x.tobytes()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """What the journal header keeps: source, columns, a digest and, for pools of up to
        :data:`MAX_STORED_COVARIATES` values, the matrix itself (compressed), so a study or
        a report in another process rebuilds the policy with the same prior."""
        out: dict[str, Any] = {
            "source": self.source,
            "columns": [str(c) for c in self.frame.columns],
            "shape": list(self.covariates.shape),
            "sha256": self.digest(),
            "seconds": round(self.seconds, 6),
        }
        x = np.ascontiguousarray(self.covariates, dtype="<f8")
        if x.size <= MAX_STORED_COVARIATES:
            out["matrix"] = base64.b64encode(zlib.compress(x.tobytes(), 6)).decode("ascii")
        return out


#: Largest covariate matrix (in values) a journal header stores; a larger one is kept as its
#: digest only, and a study or report rebuilt from the journal then runs without it.
MAX_STORED_COVARIATES = 200_000


def covariates_from_meta(meta: Mapping[str, Any]) -> np.ndarray | None:
    """The covariate matrix a journal header stores (see :meth:`PriorScores.describe`), or
    None when it holds none. A matrix that does not match its digest is ignored."""
    info = meta.get("scores") if isinstance(meta, Mapping) else None
    if not isinstance(info, Mapping) or not isinstance(info.get("matrix"), str):
        return None
    try:
        shape = tuple(int(n) for n in info["shape"])
        raw = zlib.decompress(base64.b64decode(info["matrix"], validate=True))
        x = np.frombuffer(raw, dtype="<f8").reshape(shape).astype(float)
    except (ValueError, TypeError, KeyError, zlib.error, binascii.Error):
        return None
    digest = hashlib.sha256(repr(x.shape).encode() + x.tobytes()).hexdigest()
    return x if digest == info.get("sha256") else None


def takes_covariates(policy: Policy) -> bool:
    """Whether ``policy.reset`` accepts ``covariates`` (the engine's prior scores)."""
    try:
        params = inspect.signature(policy.reset).parameters
    except (TypeError, ValueError):
        return False
    return "covariates" in params


def _score_columns(frame: pd.DataFrame) -> list[str]:
    cols = [c for c in frame.columns if str(c).startswith("score_") and c != "score_default"]
    if not cols and "score_default" in frame.columns:
        cols = ["score_default"]
    return cols


def _frame_in_pool_order(frame: pd.DataFrame, ids: Sequence[str], what: str) -> pd.DataFrame:
    index = [str(i) for i in frame.index]
    if set(ids) <= set(index):
        return frame.set_axis(index).loc[list(ids)]
    if len(frame) == len(ids):  # no ids in the index: taken to be in pool order
        return frame
    raise DashselError(
        f"{what} covers {len(frame)} rows but the pool has {len(ids)} datasets, and its index "
        "does not hold the dataset ids"
    )


def _prior_from_frame(frame: pd.DataFrame, ids: Sequence[str], source: str, secs: float):
    from dashsel.scores import covariates_from_scores

    what = "the scores" if source == "user" else "the pool's table of scores"
    cols = _score_columns(frame)
    if not cols:
        raise DashselError(f"{what} have no score_* column")
    frame = _frame_in_pool_order(frame, ids, what)[cols]
    return PriorScores(covariates_from_scores(frame, cols), frame, source, secs)


def run_scores(pool: Pool, policy: Policy, scores: Any = None) -> PriorScores | None:
    """The prior scores a run gives ``policy`` (see ``scores`` in :func:`select`), or None.

    Nothing is computed for a policy whose ``reset`` does not take ``covariates``.
    """
    import pandas as pd

    if scores is False or (isinstance(scores, np.bool_) and not scores):
        return None
    # The pool's ids as they are: a pool read from a table makes its 10^6 Python strings only
    # on a branch that uses them all (see Hierarchy.dataset_ids).
    ids = pool.hierarchy.dataset_ids
    if not takes_covariates(policy):
        if scores is not None and scores is not True:
            warnings.warn(
                f"policy {policy.name!r} takes no covariates: the scores given are ignored",
                stacklevel=3,
            )
        return None
    if isinstance(scores, pd.DataFrame):
        return _prior_from_frame(scores, ids, "user", 0.0)
    if scores is not None and scores is not True:
        try:
            x = np.asarray(scores, dtype=float)
        except (TypeError, ValueError):
            raise DashselError(
                "scores must be True, False, None, a DataFrame or a numeric array"
            ) from None
        x = x[:, None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[0] != len(ids) or not np.all(np.isfinite(x)):
            raise DashselError(
                f"scores must be a finite array of shape ({len(ids)},) or ({len(ids)}, p) in "
                f"pool order, got shape {x.shape}"
            )
        cols = [f"score_{j}" for j in range(x.shape[1])]
        return PriorScores(x, pd.DataFrame(x, index=list(ids), columns=cols), "user", 0.0)
    # Default: the pool's own scores (a replay pool's table of datasets), else computed.
    own = getattr(pool, "scores", None)
    if isinstance(own, np.ndarray) and own.ndim == 2 and own.shape[1]:
        # A table of datasets' score_* columns: an (n_datasets, p) array in pool order.
        names = getattr(pool, "score_names", ()) or range(own.shape[1])
        own = pd.DataFrame(own, index=list(ids), columns=[f"score_{n}" for n in names])
    if isinstance(own, pd.DataFrame) and _score_columns(own):
        return _prior_from_frame(own, ids, "pool", 0.0)
    if not pool.has_arrays:
        if scores is True:
            raise DashselError(
                f"pool {pool.name!r} has no arrays to score and no score_* columns: give "
                "scores yourself or turn them off"
            )
        return None
    from dashsel.scores import DEFAULT_COVARIATES, covariates_from_scores, score_pool

    t0 = time.perf_counter()
    try:
        frame = score_pool(pool, which=DEFAULT_COVARIATES, random_state=0)
    except DashselError as exc:
        if scores is True:
            raise
        warnings.warn(f"training-free scores skipped: {exc}", stacklevel=3)
        return None
    secs = time.perf_counter() - t0
    cols = [f"score_{w}" for w in DEFAULT_COVARIATES]
    logger.info(
        "scored %d candidates of %s in %.2f s (%s) for the prior of %s",
        len(ids),
        pool.name,
        secs,
        ", ".join(cols),
        policy.name,
    )
    return PriorScores(covariates_from_scores(frame, cols), frame[cols], "computed", secs)


@dataclass(frozen=True)
class _Setup:
    """What :func:`select` worked out for the run loop besides the policy itself."""

    deterministic: bool
    policy_deterministic: bool
    prior: PriorScores | None
    stop_delta: float | None
    # Found before the first trial (dashsel.sets.near_copies_for), kept in the journal header
    # so that `dashsel report` makes the run's set-aware choice; None: no near-copy skipping.
    near_copies: Redundancy | None = None


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
        setup: _Setup | None = None,
    ) -> None:
        self.setup = setup or _Setup(False, False, None, None)
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
        self.private_journal = False  # a journal only this run sees: no pool structure in it
        self.on_failure = "skip"
        # Datasets whose trial failed for good, with the error: never asked again.
        self.failed: dict[str, str] = {}
        self.finished_failed: set[int] = set()
        self.best: float | None = None
        # The window's machinery (see _loop): final outcomes waiting for their turn, failed
        # attempts per trial in flight, the executor's stream.
        self._final: dict[int, TrialOutcome] = {}
        self._attempts: dict[int, int] = {}
        self._stream: TrialStream

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
            scores=None if self.setup.prior is None else self.setup.prior.describe(),
            pool_structure=not self.private_journal,
            near_copies=self.setup.near_copies,
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
            if self.setup.prior is None:
                self.policy.reset(self.hierarchy, random_state=self.seed)
            else:
                self.policy.reset(  # type: ignore[call-arg]
                    self.hierarchy, random_state=self.seed, covariates=self.setup.prior.covariates
                )

        self._stream = self.executor.stream(self.evaluator)
        try:
            stop_reason, n_spent = self._loop()
        finally:
            # Trials still in flight (an error, Ctrl-C, a trial that stops the run) are
            # cancelled; the journal keeps them running and a resume evaluates them again.
            self._stream.close()

        with self._policy_time():
            rec = self.policy.recommend(k=k, percentile=percentile)
            posterior = self.policy.posterior()
            # The best set, not the best members: near-copies of chosen datasets give way.
            rec, set_skipped = set_aware(self.policy, rec, self.setup.near_copies, self.hierarchy)

        test_acc = local_acc = global_acc = None
        if score_final and getattr(self.evaluator, "can_train", False):
            ev = self.evaluator
            test_acc = float(ev.score(list(rec.datasets), self.seed, "test"))
            local_acc = float(ev.score([], self.seed, "test"))
            global_acc = float(ev.score(list(self.hierarchy.dataset_ids), self.seed, "test"))

        done = [self.outcomes[n] for n in sorted(self.outcomes)]
        n_repeated = 0
        if self.setup.deterministic:
            n_repeated = sum(1 for o in done if o.spec.pull > 0)
            if n_repeated:
                # Said once per run: each repeat cost an evaluation and taught nothing.
                warnings.warn(
                    f"{self.policy.name}: {n_repeated} of {len(done)} evaluations repeated a "
                    "dataset already evaluated, but the evaluator is deterministic (a repeat "
                    "returns the same reward); the default engine never does this while an "
                    "unevaluated dataset remains",
                    stacklevel=3,
                )
        prior = self.setup.prior
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
            stop_reason=stop_reason,
            n_saved=self.budget - n_spent,
            deterministic=self.setup.deterministic,
            n_repeated_deterministic=n_repeated,
            scores=None if prior is None else prior.frame,
            scores_source=None if prior is None else prior.source,
            scores_seconds=0.0 if prior is None else prior.seconds,
            set_skipped=set_skipped,
        )

    def _loop(self) -> tuple[str, int]:
        """The trials: an in-order window of ``batch_size`` trials in flight.

        The run asks ``batch_size`` trials at first; then each time the oldest trial in
        flight (lowest number) has finished, it is told to the policy and one trial is asked
        (the others in flight excluded as pending) and started at once. Tells come strictly in
        trial-number order, so asks and tells come in the same order whatever the executor
        and however long each trial takes. Returns (stop reason, budget spent).
        """
        n_started, n_spent, next_batch, in_flight = self._resume(self.journal.records())
        window = deque(in_flight)
        stop_reason, stopped = "budget", False
        while True:
            if not stopped and n_spent < self.budget and len(window) < self.batch_size:
                why = self._stop_early(n_spent - len(window))  # trials told so far
                if why is not None:
                    stop_reason, stopped = why, True
                else:
                    m = min(self.batch_size - len(window), self.budget - n_spent)
                    specs = self._ask(m, n_started, window)
                    # Journaled, in one transaction, before any is evaluated: resuming
                    # evaluates what is recorded as it is, never asks it again.
                    self.journal.record_starts(
                        specs,
                        groups=[self.hierarchy.group_of(s.dataset_id) for s in specs],
                        batch=next_batch,
                    )
                    for spec in specs:
                        self.batch_of[spec.number] = next_batch
                        window.append(spec)
                        self._submit(spec)
                    n_started += m
                    n_spent += m
                    next_batch += 1
            if not window:
                return stop_reason, n_spent
            self._take_turn(self._wait_for(window.popleft().number))

    def _ask(self, m: int, n_started: int, window: Sequence[TrialSpec]) -> list[TrialSpec]:
        """Ask ``m`` trials; the datasets in flight are pending (excluded while the pool has
        others), those set aside after failing are excluded."""
        exclude = list(dict.fromkeys([*self.failed, *(s.dataset_id for s in window)]))
        if len(exclude) >= self.hierarchy.n_datasets:
            # Nothing else left: repeat a dataset in flight rather than one that failed.
            exclude = list(self.failed)
        with self._policy_time():
            # The policy's exclusion is part of its seeded ask, so a resumed run (which
            # rebuilds `failed` and the window) asks the same.
            ids = self.policy.ask(m, exclude=exclude) if exclude else self.policy.ask(m)
        return [self._spec(n_started + i, d) for i, d in enumerate(ids)]

    def _submit(self, spec: TrialSpec) -> None:
        self._attempts[spec.number] = 0
        self._stream.submit(spec)

    def _wait_for(self, number: int) -> TrialOutcome:
        """The final outcome of trial ``number``, taking the others' as they come."""
        while number not in self._final:
            self._finished(self._stream.next())
        return self._final.pop(number)

    def _finished(self, out: TrialOutcome) -> None:
        """An attempt finished: run it again (failed, retries left) or record its outcome."""
        number = out.spec.number
        attempt = self._attempts.get(number, 0)
        if out.state is not TrialState.COMPLETE and attempt < self.retries:
            log_event(
                logging.DEBUG,
                f"trial {number + 1} attempt {attempt + 1} failed, retrying: {out.error}",
                trial=number,
                dataset=out.spec.dataset_id,
                attempt=attempt + 1,
                error=out.error,
            )
            self._attempts[number] = attempt + 1
            self._stream.submit(out.spec)
            return
        self._attempts.pop(number, None)
        self.journal.record_outcome(out)
        if out.state is TrialState.COMPLETE:
            self.outcomes[number] = out
            if out.reward is not None and (self.best is None or out.reward > self.best):
                self.best = out.reward
        self._final[number] = out
        self._log_trial(out)
        if self.callback is not None:
            self.callback(out)

    def _take_turn(self, out: TrialOutcome) -> None:
        """Trial ``out`` is the oldest in flight: tell its reward, or act on its failure
        (``on_failure``) now, in trial-number order, whenever it actually finished."""
        if out.state is TrialState.COMPLETE:
            with self._policy_time():
                self.policy.tell(out.spec.dataset_id, out.reward)
            return
        if self.on_failure == "stop":
            self._drain()
            raise self._failure(out)
        self.failed.setdefault(out.spec.dataset_id, out.error or "failed")
        self.finished_failed.add(out.spec.number)
        if len(self.failed) >= self.hierarchy.n_datasets:
            self._drain()
            last_error = self._failure(out)
            raise last_error.with_message(
                f"every dataset of pool {self.pool.name!r} failed; the last: {last_error}"
            )

    def _drain(self) -> None:
        """Let the trials in flight finish and journal them before the run stops on a
        failure: running again then only evaluates what had not finished."""
        while self._stream.n_pending:
            self._finished(self._stream.next())

    def _stop_early(self, n_told: int) -> str | None:
        """Why the run stops before asking more (None: go on). Checked before each ask."""
        if n_told == 0:
            return None
        if self.setup.policy_deterministic and len(self.pulls) >= self.hierarchy.n_datasets:
            # Every dataset evaluated, rewards exact: more evaluations can only repeat them.
            return "pool exhausted (every dataset evaluated; the evaluator is deterministic)"
        delta = self.setup.stop_delta
        if delta is None:
            return None
        # The run's delta, not the policy's parameter: stopping is a setting of this call, so a
        # resumed run may drop or change it without becoming another run.
        prob_correct = getattr(self.policy, "prob_correct", None)
        if callable(prob_correct):
            with self._policy_time():
                p = float(prob_correct())
            if p < 1.0 - delta:
                return None
            target = getattr(self.policy, "target_k", None)
            what = f"top-{target()}" if callable(target) else "set"
            return (
                f"confident (P(recommended {what} is correct) = {p:.3f} >= {1.0 - delta:.3f} "
                f"after {n_told} evaluations)"
            )
        should_stop = getattr(self.policy, "should_stop", None)
        if not callable(should_stop):
            return None
        with self._policy_time():
            if not should_stop():
                return None
        reason = getattr(self.policy, "stop_reason_", None)
        if isinstance(reason, str) and reason:
            return f"confident ({reason.removeprefix('settled: ')})"
        return "confident (the policy's stopping rule)"

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
    def _resume(self, records: Sequence[TrialRecord]) -> tuple[int, int, int, list[TrialSpec]]:
        """Replay journaled trials; returns (trials started, budget spent, next batch, the
        window: the trials in flight when the run stopped, in number order).

        A run asks trial ``t + batch_size`` right after telling trial ``t``, so every trial
        but the last ``batch_size`` was told; those are the window again. Its finished trials
        wait for their turn, the others (running, or failed: they are tried again) are
        evaluated again *as journaled*, not asked again. Trials given back by a study
        (:data:`~dashsel.journal.ABANDONED`) keep their number but spend no budget and are
        not evaluated again.
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
        told = max(0, len(records) - self.batch_size)  # trials before it were told
        last_batch = -1
        for batch, recs in itertools.groupby(records, key=lambda r: r.batch):
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
                    and r.spec.number < told
                ):
                    # Failed for good and the run went on: its dataset stays set aside.
                    error = r.outcome.error if r.outcome is not None else None
                    self.failed[r.spec.dataset_id] = error or "failed"
                    self.finished_failed.add(r.spec.number)
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
        for r in todo:
            self._submit(r.spec)
        # A study's pending trials may sit before the window (select leaves none there):
        # they are evaluated now, and told with the trials before the window.
        for r in todo:
            if r.spec.number < told:
                self._take_failure_only(self._wait_for(r.spec.number))
        with self._policy_time():
            self.policy.replay(
                [
                    (o.spec.dataset_id, o.reward)
                    for n, o in sorted(self.outcomes.items())
                    if n < told
                ],
                n_asked=len(records),
            )
        window = [r.spec for r in records[told:] if r.spec.number not in abandoned]
        for spec in window:  # finished before the stop: they wait for their turn
            if spec.number in self.outcomes:
                self._final[spec.number] = self.outcomes[spec.number]
        return len(records), n_spent, last_batch + 1, window

    def _take_failure_only(self, out: TrialOutcome) -> None:
        """A trial before the window finished on resuming: a failure is acted on now; a
        reward is told with the others before the window."""
        if out.state is not TrialState.COMPLETE:
            self._take_turn(out)

    # --- evaluation and bookkeeping --------------------------------------------------------
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
