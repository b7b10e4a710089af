"""The policy protocol: ``reset`` / ``ask`` / ``tell`` / ``posterior`` / ``recommend``.

A policy is configured in ``__init__`` (parameters only, scikit-learn style) and gets its state
from :meth:`Policy.reset`, which binds it to a pool's :class:`~dashsel.hierarchy.Hierarchy` and
a seed. Learned state lives in attributes ending in ``_``.

Reproducibility contract (checked by :mod:`dashsel.testing`): the dataset returned by the t-th
``ask`` depends only on the seed, ``t``, the rewards told before it and the ``exclude`` set it
is given. Policies draw their randomness from :func:`dashsel.random_state.step_generator`,
never from a generator that advances across calls, so replaying a journal's trials with
``tell`` and then asking again gives exactly what an uninterrupted run would have asked.

Pending trials: ``ask(exclude=ids)`` never returns one of ``ids`` while the pool holds another
dataset, and the slots of a batch ``ask(n)`` exclude the earlier slots, so a batch holds
distinct datasets while the pool has them (slot j of ``ask(n, exclude=E)`` is exactly what a
single ``ask(exclude=E + slots before j)`` would return at that step).

Naming: policies follow scikit-learn (``get_params(deep=True)``, ``set_params``,
``sklearn.base.clone``). The seed is given at :meth:`Policy.reset` as ``random_state`` (an
int, a ``numpy.random.Generator`` or None, as in scikit-learn); the CLI's ``--seed``, the
manifest's ``seed`` and ``run(..., seed=)`` are the same value under its everyday name.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Self, overload

import numpy as np

from dashsel.errors import DashselError, RewardError, UnknownDatasetError, one_line
from dashsel.hierarchy import Hierarchy
from dashsel.random_state import RandomState, check_random_state, step_generator

#: Largest reward magnitude :meth:`Policy.tell` accepts. Far beyond any accuracy or loss, and
#: small enough that sums, squared deviations and posterior precisions built from up to
#: 10^100 such rewards stay finite (1e308 told twice would overflow them to inf and NaN).
MAX_ABS_REWARD = 1e100


@dataclass(frozen=True)
class Belief:
    """Current belief about one arm (a dataset or a group).

    ``mean`` and ``std`` are the posterior's (or, for frequentist policies, the empirical mean
    and its standard error; NaN where nothing is known). ``group`` is None for a group's own
    belief.
    """

    id: str
    group: str | None
    mean: float
    std: float
    pulls: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Posterior:
    """Beliefs about every dataset (pool order) and every group (first-appearance order)."""

    datasets: tuple[Belief, ...]
    groups: tuple[Belief, ...]

    def dataset(self, dataset_id: str) -> Belief:
        for b in self.datasets:
            if b.id == dataset_id:
                return b
        raise KeyError(dataset_id)

    def group(self, group_id: str) -> Belief:
        for b in self.groups:
            if b.id == group_id:
                return b
        raise KeyError(group_id)

    def to_frame(self, level: str = "datasets"):
        """The beliefs of ``level`` ("datasets" or "groups") as a pandas DataFrame."""
        import pandas as pd

        rows = self.datasets if level == "datasets" else self.groups
        return pd.DataFrame([b.to_dict() for b in rows], columns=list(Belief.__annotations__))


@dataclass(frozen=True)
class Recommendation:
    """The final choice: datasets (best first) and the groups they come from."""

    datasets: tuple[str, ...]
    groups: tuple[str, ...]


def _is_real(v: object) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(
        v, bool | np.bool_
    )


def check_count(what: str, n: object, minimum: int = 1) -> int:
    """``n`` as an int, or a one-line :class:`DashselError` unless it is a whole number
    >= ``minimum`` (bools, NaN, infinities and fractions are refused)."""
    if not (_is_real(n) and math.isfinite(float(n)) and int(n) == n and n >= minimum):  # type: ignore[arg-type]
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise DashselError(f"{what} must be a {bound} integer, got {n!r}")
    return int(n)  # type: ignore[call-overload]


def validate_selection_rule(k: int | None, percentile: float | None) -> None:
    """Refuse a final rule that is not ``k`` (positive integer) or ``percentile`` in [0, 100)."""
    if k is not None and percentile is not None:
        raise DashselError("give either k (top-k) or percentile, not both")
    if k is not None:
        check_count("k", k)
    if percentile is not None and not (_is_real(percentile) and 0.0 <= percentile < 100.0):
        raise DashselError(f"percentile must be a number in [0, 100), got {percentile!r}")


def top_by_mean(
    ids: Sequence[str], means: np.ndarray, k: int | None, percentile: float | None
) -> list[str]:
    """Ids ranked by mean (best first, ties by position) and cut by top-k or percentile.

    With ``percentile=x`` every id whose mean is >= the x-th percentile of ``means`` is kept,
    so at least one id is always kept. NaN means rank last and never pass a percentile.
    Default (both None): the single best.
    """
    means = np.asarray(means, dtype=float)
    key = np.where(np.isnan(means), -np.inf, means)
    # Stable sort on -mean: ties keep pool order. O(n log n) in numpy, not Python.
    if percentile is None:
        n = min(int(k or 1), means.size)
        if n == means.size:
            order = np.argsort(-key, kind="stable")
        else:  # partial selection first: O(N) for a small k of a large pool
            cut = key[np.argpartition(-key, n - 1)[:n]].min()
            above = np.flatnonzero(key > cut)
            # Ties at the cut fill the remaining places in pool order.
            tied = np.flatnonzero(key == cut)[: n - above.size]
            order = np.concatenate([above[np.argsort(-key[above], kind="stable")], tied])
        return [ids[i] for i in order.tolist()]
    finite = means[~np.isnan(means)]
    if finite.size == 0:
        return [ids[0]]
    cut = float(np.percentile(finite, percentile))
    kept = np.flatnonzero(means >= cut)  # NaN compares False: never kept
    return [ids[i] for i in kept[np.argsort(-means[kept], kind="stable")].tolist()]


class Policy(ABC):
    """Base class of all selection policies.

    Subclasses implement :meth:`_reset`, :meth:`_ask_one`, :meth:`_tell` and
    :meth:`posterior`; this class handles validation, batching, the step counter that seeds
    each decision, and the default (flat) :meth:`recommend`.
    """

    #: Name used by the CLI and in result files.
    name: str = "policy"

    # --- lifecycle -------------------------------------------------------------------------
    def reset(self, hierarchy: Hierarchy | Any, random_state: RandomState = 0) -> Self:
        """Bind to a pool's hierarchy (a :class:`Hierarchy` or anything with ``.hierarchy``)
        and start from the prior. Returns self so ``DaSH().reset(pool)`` chains."""
        if not isinstance(hierarchy, Hierarchy):
            hierarchy = getattr(hierarchy, "hierarchy", None)
            if not isinstance(hierarchy, Hierarchy):
                raise DashselError(
                    f"{type(self).__name__}.reset needs a Pool or a Hierarchy, "
                    f"got {type(hierarchy).__name__}"
                )
        if isinstance(random_state, bool | np.bool_):  # an int to numpy, but surely a mistake
            raise DashselError(
                f"random_state must be an int, Generator or None, got {random_state!r}"
            )
        try:
            rng = check_random_state(random_state)
        except (TypeError, ValueError) as exc:  # a str, a negative int, ...
            raise DashselError(f"random_state: {one_line(exc)} (got {random_state!r})") from None
        self.hierarchy_ = hierarchy
        self.seed_ = int(rng.integers(0, 2**32 - 1))
        self.n_asked_ = 0
        self.n_told_ = 0
        self._validate()  # parameters may have been set since construction
        self._reset(hierarchy)
        return self

    def _validate(self) -> None:
        """Check the constructor parameters (one-line :class:`DashselError`); a no-op here."""
        return None

    def _check_reset(self) -> None:
        if not hasattr(self, "hierarchy_"):
            raise DashselError(
                f"{type(self).__name__} is not bound to a pool: call .reset(pool) first"
            )

    # --- ask / tell ------------------------------------------------------------------------
    @overload
    def ask(self, *, exclude: Iterable[str] = ()) -> str: ...
    @overload
    def ask(self, n: int, *, exclude: Iterable[str] = ()) -> list[str]: ...
    def ask(self, n: int | None = None, *, exclude: Iterable[str] = ()) -> str | list[str]:
        """Choose the next dataset to evaluate, or ``n`` of them for a parallel batch.

        Parameters
        ----------
        n : int, optional
            Batch size; None (default) returns a single id instead of a list.
        exclude : iterable of str, default ()
            Dataset ids not to return while the pool holds any other dataset: the pending
            (asked, not yet told) trials of a study. An id the pool does not hold raises
            :class:`~dashsel.errors.UnknownDatasetError`.

        Notes
        -----
        A batch is drawn from the current belief with independent randomness per slot (for
        Thompson sampling that is n posterior draws), before any of its rewards are told;
        each slot excludes the earlier ones, so the batch holds distinct datasets while the
        pool has enough of them that are not excluded.
        """
        self._check_reset()
        if n is not None:
            n = check_count("ask(n): n", n)
        mask = self._exclusion_mask(exclude)
        if n is None:
            return self.hierarchy_.dataset_ids[self._next(mask)]
        chosen = []
        for _ in range(n):
            idx = self._next(mask)
            chosen.append(self.hierarchy_.dataset_ids[idx])
            if mask is None:
                mask = np.zeros(self.hierarchy_.n_datasets, dtype=bool)
            mask[idx] = True
        return chosen

    def _exclusion_mask(self, exclude: Iterable[str]) -> np.ndarray | None:
        if isinstance(exclude, str):  # a lone id would otherwise be read letter by letter
            exclude = (exclude,)
        try:
            ids = list(exclude)
        except TypeError:
            raise DashselError(
                f"exclude must be an iterable of dataset ids, got {type(exclude).__name__}"
            ) from None
        if not ids:
            return None
        mask = np.zeros(self.hierarchy_.n_datasets, dtype=bool)
        mask[[self._index_of(d) for d in ids]] = True
        return mask

    def _index_of(self, dataset_id: object) -> int:
        if not isinstance(dataset_id, str):
            raise UnknownDatasetError(
                f"a dataset id must be a string, got {type(dataset_id).__name__} {dataset_id!r}"
            )
        return self.hierarchy_.index(dataset_id)

    def _next(self, excluded: np.ndarray | None) -> int:
        if excluded is not None and excluded.all():
            excluded = None  # nothing else left: any dataset may repeat
        rng = step_generator(self.seed_, self.n_asked_)
        if excluded is None or not self._takes_exclusion():
            choice = self._ask_one(rng, self.n_asked_)
        else:
            choice = self._ask_one(rng, self.n_asked_, excluded)  # type: ignore[call-arg]
        self.n_asked_ += 1
        return self._index_of(choice) if isinstance(choice, str) else int(choice)

    @classmethod
    def _takes_exclusion(cls) -> bool:
        # Policies written before ``exclude`` existed implement ``_ask_one(rng, step)``; they
        # keep working and simply ignore it (the conformance suite reports that).
        cached = cls.__dict__.get("_takes_exclusion_cache")
        if cached is None:
            cached = "excluded" in inspect.signature(cls._ask_one).parameters
            cls._takes_exclusion_cache = cached
        return bool(cached)

    def tell(self, dataset_id: str, reward: float) -> None:
        """Record the reward observed for ``dataset_id``.

        Raises :class:`~dashsel.errors.RewardError` for a reward that is not a finite number
        and :class:`~dashsel.errors.UnknownDatasetError` for an id the pool does not hold;
        neither changes the policy's state.
        """
        self._check_reset()
        idx = self._index_of(dataset_id)
        try:
            r = float(reward)
        except (TypeError, ValueError):
            raise RewardError(
                f"reward for dataset {dataset_id!r} is not a number: {reward!r}"
            ) from None
        if not math.isfinite(r):
            raise RewardError(f"reward for dataset {dataset_id!r} is not finite: {r!r}")
        if abs(r) > MAX_ABS_REWARD:
            raise RewardError(
                f"reward for dataset {dataset_id!r} is too large: {r!r} "
                f"(|reward| must be at most {MAX_ABS_REWARD:g})"
            )
        self._tell(idx, r)
        self.n_told_ += 1

    def replay(self, history: Iterable[tuple[str, float]], n_asked: int | None = None) -> Self:
        """Rebuild a resumed run's state: tell each finished trial, then set the ask counter.

        Parameters
        ----------
        history : iterable of (dataset_id, reward)
            Finished trials in the order they were told to the original policy.
        n_asked : int, optional
            How many asks the original run had made (trials started, finished or not).
            Default: the number of trials in ``history``.

        Returns
        -------
        Policy
            self; the next :meth:`ask` returns what the uninterrupted run would have asked.
        """
        self._check_reset()
        if self.n_asked_ or self.n_told_:
            raise DashselError(
                f"{type(self).__name__}.replay needs a freshly reset policy "
                f"(it has {self.n_asked_} asks and {self.n_told_} tells)"
            )
        if n_asked is not None:
            n_asked = check_count("replay: n_asked", n_asked, minimum=0)
        try:
            trials = list(history)
        except TypeError:
            raise DashselError(
                f"replay: history must be an iterable of (dataset_id, reward), "
                f"got {type(history).__name__}"
            ) from None
        for k, trial in enumerate(trials):
            if not isinstance(trial, tuple | list) or len(trial) != 2:
                raise DashselError(f"replay: history[{k}] is not a (dataset_id, reward) pair")
            self.tell(trial[0], trial[1])
        self.n_asked_ = self.n_told_ if n_asked is None else int(n_asked)
        return self

    # --- to implement ----------------------------------------------------------------------
    @abstractmethod
    def _reset(self, hierarchy: Hierarchy) -> None:
        """Initialise learned state (attributes ending in ``_``) for this hierarchy."""

    @abstractmethod
    def _ask_one(
        self, rng: np.random.Generator, step: int, excluded: np.ndarray | None = None
    ) -> str | int:
        """Choose one dataset (its id or its position) using only ``rng`` for randomness.

        ``excluded`` is None or a boolean mask over the datasets (pool order) marking those
        not to choose; it never marks them all. An implementation without the ``excluded``
        parameter is called without it and cannot honour ``ask(exclude=...)``.
        """

    @abstractmethod
    def _tell(self, index: int, reward: float) -> None:
        """Update state with a validated reward for dataset ``hierarchy_.dataset_ids[index]``."""

    @abstractmethod
    def posterior(self) -> Posterior:
        """Current beliefs about every dataset and group."""

    # --- final choice ----------------------------------------------------------------------
    def recommend(self, k: int | None = None, percentile: float | None = None) -> Recommendation:
        """Final selection by estimated mean (never by an exploration score).

        Flat policies rank datasets by posterior mean and keep the top ``k`` or those at or
        above the ``percentile``-th percentile; the groups are those of the kept datasets.
        Hierarchical policies override this to choose groups first. Default: the best dataset.
        """
        self._check_reset()
        validate_selection_rule(k, percentile)
        chosen = top_by_mean(self.hierarchy_.dataset_ids, self._dataset_means(), k, percentile)
        groups = tuple(dict.fromkeys(self.hierarchy_.group_of(d) for d in chosen))
        return Recommendation(tuple(chosen), groups)

    def _dataset_means(self) -> np.ndarray:
        """Posterior mean per dataset (pool order; NaN where unknown), for :meth:`recommend`.

        Built-in policies override this with an O(N) array computation; the default reads
        :meth:`posterior`, which builds one object per dataset.
        """
        return np.array([b.mean for b in self.posterior().datasets], dtype=float)

    # --- description (scikit-learn conventions) --------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (for journals, result files and ``sklearn.base.clone``).

        Parameters
        ----------
        deep : bool, default True
            Accepted for scikit-learn compatibility; policies hold no nested estimators, so
            it changes nothing.
        """
        return {p: getattr(self, p) for p in self._param_names() if hasattr(self, p)}

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters by name and check them as the constructor does.

        Takes effect at the next :meth:`reset`. Raises a one-line :class:`DashselError`
        naming an unknown parameter (nothing is changed then) or a value the policy refuses.
        """
        valid = self._param_names()
        bad = sorted(set(params) - set(valid))
        if bad:
            raise DashselError(
                one_line(  # a name may hold a newline
                    f"{type(self).__name__} has no parameter(s) {', '.join(bad)}; "
                    f"it takes: {', '.join(valid) or 'none'}"
                )
            )
        # Checked on a new instance first, so a refused value leaves this one unchanged.
        type(self)(**{**self.get_params(deep=False), **params})
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
