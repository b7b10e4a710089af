"""The trivial baseline every study includes: evaluate in random order, rank by group means.

It needs no model at all, and on real pools it has matched the paper's DaSH: a selection
method is only worth its complexity if it beats this.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import overload

import numpy as np

from dashsel.hierarchy import Hierarchy
from dashsel.policies.base import (
    Policy,
    Posterior,
    Recommendation,
    check_count,
    top_by_mean,
    validate_selection_rule,
)
from dashsel.random_state import step_generator

__all__ = ["GroupMean"]


class GroupMean(Policy):
    """Random order without repeats; evaluated datasets ranked by reward, the others by the
    mean of their group's evaluated datasets.

    Asks follow a random permutation of the pool (drawn from the seed): each ask returns the
    first dataset of the permutation among those evaluated the fewest times, so every dataset
    is evaluated once before any is repeated. Its estimate of a dataset is its mean reward if
    evaluated, else the average of the mean rewards of its group's evaluated datasets (NaN,
    ranked last, for a group with none). The reported std is the standard error of the
    rewards (NaN below two rewards).
    """

    name = "group-mean"

    def __init__(self) -> None:
        pass

    def _reset(self, hierarchy: Hierarchy) -> None:
        n = hierarchy.n_datasets
        pos = {g: i for i, g in enumerate(hierarchy.group_ids)}
        self._group_of = np.fromiter((pos[g] for g in hierarchy.groups), np.intp, count=n)
        self._n_groups = len(pos)
        # rank_[d]: position of dataset d in this run's random order.
        order = step_generator(self.seed_, 2**31 - 1).permutation(n)
        self.rank_ = np.empty(n, dtype=np.int64)
        self.rank_[order] = np.arange(n)
        self.counts_ = np.zeros(n, dtype=np.int64)
        self.sums_ = np.zeros(n)
        self.sumsq_ = np.zeros(n)

    def _tell(self, index: int, reward: float) -> None:
        self.counts_[index] += 1
        self.sums_[index] += reward
        self.sumsq_[index] += reward * reward

    def _pick(self, blocked: np.ndarray) -> int:
        allowed = ~blocked if not blocked.all() else np.ones_like(blocked)
        c = np.where(allowed, self.counts_, np.iinfo(np.int64).max)
        fewest = c == c.min()
        return int(np.argmin(np.where(fewest, self.rank_, np.iinfo(np.int64).max)))

    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        return self.hierarchy_.dataset_ids[self._pick(np.zeros(self.counts_.size, dtype=bool))]

    @overload
    def ask(self, *, exclude: Iterable[str] = ()) -> str: ...
    @overload
    def ask(self, n: int, *, exclude: Iterable[str] = ()) -> list[str]: ...
    def ask(self, n: int | None = None, *, exclude: Iterable[str] = ()) -> str | list[str]:
        """Next dataset(s) in the random order; ``exclude`` and earlier members of the batch are
        skipped while other datasets remain."""
        self._check_reset()
        h = self.hierarchy_
        # The base class's checks: ids must be strings of the pool, a lone str is one id.
        mask = self._exclusion_mask(exclude)
        blocked = np.zeros(h.n_datasets, dtype=bool) if mask is None else mask
        if n is None:
            self.n_asked_ += 1
            return h.dataset_ids[self._pick(blocked)]
        n = check_count("ask(n): n", n)
        out = []
        for _ in range(n):
            i = self._pick(blocked)
            blocked[i] = True
            self.n_asked_ += 1
            out.append(h.dataset_ids[i])
        return out

    def estimates(self) -> tuple[np.ndarray, np.ndarray]:
        """Estimated mean and standard error of every dataset, as arrays (O(N))."""
        n = self.counts_.astype(float)
        ev = n > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            own = np.where(ev, self.sums_ / n, np.nan)
            var = (self.sumsq_ - self.sums_**2 / np.where(ev, n, 1.0)) / (n - 1)
            se = np.where(n > 1, np.sqrt(np.maximum(var, 0.0) / n), np.nan)
            g_sum = np.bincount(self._group_of, np.where(ev, own, 0.0), self._n_groups)
            g_n = np.bincount(self._group_of, ev.astype(float), self._n_groups)
            g_mean = np.where(g_n > 0, g_sum / g_n, np.nan)
        return np.where(ev, own, g_mean[self._group_of]), se

    def posterior(self) -> Posterior:
        """Dataset estimates as above; a group's belief is the mean of its evaluated datasets'
        mean rewards (NaN if none)."""
        self._check_reset()
        h = self.hierarchy_
        mean, se = self.estimates()
        ev = self.counts_ > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            g_n = np.bincount(self._group_of, ev.astype(float), self._n_groups)
            g_sum = np.bincount(self._group_of, np.where(ev, mean, 0.0), self._n_groups)
            g_mean = np.where(g_n > 0, g_sum / g_n, np.nan)
        g_pulls = np.bincount(self._group_of, self.counts_, self._n_groups).astype(int)
        return Posterior.from_arrays(
            h,
            mean=np.array(mean, dtype=float),
            std=np.array(se, dtype=float),
            pulls=np.asarray(self.counts_, dtype=np.int64),
            group_mean=g_mean,
            group_std=np.full(self._n_groups, np.nan),
            group_pulls=g_pulls.astype(np.int64),
        )

    def recommend(self, k: int | None = None, percentile: float | None = None) -> Recommendation:
        """Top ``k`` (or the ``percentile``) of the estimates above, across groups; datasets of
        groups with no evaluation rank last."""
        self._check_reset()
        validate_selection_rule(k, percentile)
        mean, _ = self.estimates()
        chosen = top_by_mean(list(self.hierarchy_.dataset_ids), mean, k, percentile)
        groups = tuple(dict.fromkeys(self.hierarchy_.group_of(d) for d in chosen))
        return Recommendation(tuple(chosen), groups)
