"""The policy protocol: ``reset`` / ``ask`` / ``tell`` / ``posterior`` / ``recommend``.

A policy is configured in ``__init__`` (parameters only, scikit-learn style) and gets its state
from :meth:`Policy.reset`, which binds it to a pool's :class:`~dashsel.hierarchy.Hierarchy` and
a seed. Learned state lives in attributes ending in ``_``.

Reproducibility contract (checked by :mod:`dashsel.testing`): the dataset returned by the t-th
``ask`` depends only on the seed, ``t`` and the rewards told before it. Policies draw their
randomness from :func:`dashsel.random_state.step_generator`, never from a generator that
advances across calls, so replaying a journal's trials with ``tell`` and then asking again gives
exactly what an uninterrupted run would have asked.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Self, overload

import numpy as np

from dashsel.errors import DashselError, RewardError
from dashsel.hierarchy import Hierarchy
from dashsel.random_state import RandomState, check_random_state, step_generator


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


def validate_selection_rule(k: int | None, percentile: float | None) -> None:
    if k is not None and percentile is not None:
        raise DashselError("give either k (top-k) or percentile, not both")
    if k is not None and (int(k) != k or k < 1):
        raise DashselError(f"k must be a positive integer, got {k!r}")
    if percentile is not None and not (0.0 <= percentile < 100.0):
        raise DashselError(f"percentile must be in [0, 100), got {percentile!r}")


def top_by_mean(
    ids: list[str], means: np.ndarray, k: int | None, percentile: float | None
) -> list[str]:
    """Ids ranked by mean (best first, ties by position) and cut by top-k or percentile.

    With ``percentile=x`` every id whose mean is >= the x-th percentile of ``means`` is kept,
    so at least one id is always kept. NaN means rank last and never pass a percentile.
    Default (both None): the single best.
    """
    means = np.asarray(means, dtype=float)
    key = np.where(np.isnan(means), -np.inf, means)
    # Stable sort on -mean: ties keep pool order. O(n log n) in numpy, not Python.
    order = np.argsort(-key, kind="stable").tolist()
    if percentile is not None:
        finite = means[~np.isnan(means)]
        if finite.size == 0:
            return [ids[order[0]]]
        cut = float(np.percentile(finite, percentile))
        kept = [ids[i] for i in order if not np.isnan(means[i]) and means[i] >= cut]
        return kept or [ids[order[0]]]
    return [ids[i] for i in order[: (k or 1)]]


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
            hierarchy = hierarchy.hierarchy
        self.hierarchy_ = hierarchy
        rng = check_random_state(random_state)
        self.seed_ = int(rng.integers(0, 2**32 - 1))
        self.n_asked_ = 0
        self.n_told_ = 0
        self._reset(hierarchy)
        return self

    def _check_reset(self) -> None:
        if not hasattr(self, "hierarchy_"):
            raise DashselError(
                f"{type(self).__name__} is not bound to a pool: call .reset(pool) first"
            )

    # --- ask / tell ------------------------------------------------------------------------
    @overload
    def ask(self) -> str: ...
    @overload
    def ask(self, n: int) -> list[str]: ...
    def ask(self, n: int | None = None) -> str | list[str]:
        """Choose the next dataset to evaluate, or ``n`` of them for a parallel batch.

        A batch is drawn from the current belief with independent randomness per slot (for
        Thompson sampling that is n posterior draws), before any of its rewards are told.
        """
        self._check_reset()
        if n is None:
            return self._next()
        if int(n) != n or n < 1:
            raise DashselError(f"ask(n) needs a positive integer n, got {n!r}")
        return [self._next() for _ in range(int(n))]

    def _next(self) -> str:
        rng = step_generator(self.seed_, self.n_asked_)
        choice = self._ask_one(rng, self.n_asked_)
        self.n_asked_ += 1
        return choice

    def tell(self, dataset_id: str, reward: float) -> None:
        """Record the reward observed for ``dataset_id``.

        Raises :class:`~dashsel.errors.RewardError` for a reward that is not a finite number
        and :class:`~dashsel.errors.UnknownDatasetError` for an id the pool does not hold;
        neither changes the policy's state.
        """
        self._check_reset()
        idx = self.hierarchy_.index(dataset_id)
        try:
            r = float(reward)
        except (TypeError, ValueError):
            raise RewardError(
                f"reward for dataset {dataset_id!r} is not a number: {reward!r}"
            ) from None
        if not math.isfinite(r):
            raise RewardError(f"reward for dataset {dataset_id!r} is not finite: {r!r}")
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
        if n_asked is not None and (int(n_asked) != n_asked or n_asked < 0):
            raise DashselError(f"replay: n_asked must be a non-negative integer, got {n_asked!r}")
        for dataset_id, reward in history:
            self.tell(dataset_id, reward)
        self.n_asked_ = self.n_told_ if n_asked is None else int(n_asked)
        return self

    # --- to implement ----------------------------------------------------------------------
    @abstractmethod
    def _reset(self, hierarchy: Hierarchy) -> None:
        """Initialise learned state (attributes ending in ``_``) for this hierarchy."""

    @abstractmethod
    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        """Choose one dataset id using only ``rng`` for randomness."""

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
        post = self.posterior()
        ids = [b.id for b in post.datasets]
        means = np.array([b.mean for b in post.datasets])
        chosen = top_by_mean(ids, means, k, percentile)
        groups = tuple(dict.fromkeys(self.hierarchy_.group_of(d) for d in chosen))
        return Recommendation(tuple(chosen), groups)

    # --- description -----------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, for journals and result files."""
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
