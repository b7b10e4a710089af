"""Flat baselines: Thompson sampling without hierarchy (the paper's "DaS"), UCB1, epsilon-greedy,
round-robin and uniform random.

Every policy keeps per-dataset counts, sums and Welford sums of squares in numpy arrays
(:class:`ArmStats`), so a ``tell`` is O(1) and an ``ask`` is one vectorised pass over the
datasets. Frequentist policies report the empirical mean and its standard error, NaN where
they are not defined (no pull for the mean, fewer than two pulls for the standard error);
NaN means rank last in :meth:`~dashsel.policies.base.Policy.recommend`.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from dashsel.errors import DashselError
from dashsel.hierarchy import Hierarchy
from dashsel.policies.base import Belief, Policy, Posterior

__all__ = ["UCB1", "ArmStats", "EpsilonGreedy", "FlatTS", "Random", "RoundRobin"]


class ArmStats:
    """Sufficient statistics of the rewards told so far, per dataset and per group.

    Attributes
    ----------
    group_of : ndarray of intp
        Group position (in ``hierarchy.group_ids`` order) of each dataset.
    members : tuple of ndarray
        ``members[g]``: dataset positions of group ``g``, in pool order.
    counts, sums, m2 : ndarray
        Per dataset: number of rewards, their sum, and the sum of squared deviations from
        their mean (Welford, so the spread stays accurate when rewards are close together).
    group_counts, group_sums, group_m2 : ndarray
        The same over all rewards of each group.
    total : int
        Number of rewards told.
    """

    def __init__(self, hierarchy: Hierarchy) -> None:
        pos = {g: i for i, g in enumerate(hierarchy.group_ids)}
        n, n_groups = hierarchy.n_datasets, len(pos)
        self.group_of = np.fromiter((pos[g] for g in hierarchy.groups), dtype=np.intp, count=n)
        order = np.argsort(self.group_of, kind="stable")
        sizes = np.bincount(self.group_of, minlength=n_groups)
        self.members: tuple[np.ndarray, ...] = tuple(np.split(order, np.cumsum(sizes)[:-1]))
        self.counts = np.zeros(n, dtype=np.int64)
        self.sums = np.zeros(n)
        self.m2 = np.zeros(n)
        self.group_counts = np.zeros(n_groups, dtype=np.int64)
        self.group_sums = np.zeros(n_groups)
        self.group_m2 = np.zeros(n_groups)
        self.total = 0

    def add(self, index: int, reward: float) -> int:
        """Record one reward for dataset ``index``; return the dataset's group position."""
        g = int(self.group_of[index])
        for counts, sums, m2, i in (
            (self.counts, self.sums, self.m2, index),
            (self.group_counts, self.group_sums, self.group_m2, g),
        ):
            n0 = int(counts[i])
            mean0 = float(sums[i]) / n0 if n0 else 0.0
            delta = reward - mean0
            m2[i] += delta * (reward - (mean0 + delta / (n0 + 1)))
            counts[i] = n0 + 1
            sums[i] += reward
        self.total += 1
        return g

    def means(self) -> np.ndarray:
        """Empirical mean per dataset (NaN where never pulled)."""
        return _empirical(self.counts, self.sums, self.m2)[0]


def _empirical(
    counts: np.ndarray, sums: np.ndarray, m2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Empirical mean (NaN if n = 0) and standard error (NaN if n < 2)."""
    n = counts.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, sums / n, np.nan)
        se = np.where(n > 1, np.sqrt(np.maximum(m2, 0.0) / (n - 1) / n), np.nan)
    return mean, se


def _beliefs(
    ids: tuple[str, ...],
    groups: tuple[str, ...] | None,
    mean: np.ndarray,
    std: np.ndarray,
    pulls: np.ndarray,
) -> tuple[Belief, ...]:
    return tuple(
        Belief(
            id=ids[k],
            group=None if groups is None else groups[k],
            mean=float(mean[k]),
            std=float(std[k]),
            pulls=int(pulls[k]),
        )
        for k in range(len(ids))
    )


def _argmax_random_tie(score: np.ndarray, rng: np.random.Generator) -> int:
    """Position of the largest score, ties broken uniformly with ``rng``."""
    best = np.flatnonzero(score == score.max())
    return int(best[0]) if best.size == 1 else int(rng.choice(best))


def _is_number(v: object) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _check_std(owner: str, **values: float) -> None:
    for name, v in values.items():
        if not (_is_number(v) and v > 0):
            raise DashselError(f"{owner}: {name} must be a positive finite number, got {v!r}")


def _check_finite(owner: str, **values: float) -> None:
    for name, v in values.items():
        if not _is_number(v):
            raise DashselError(f"{owner}: {name} must be a finite number, got {v!r}")


class _EmpiricalPolicy(Policy):
    """Shared state of the flat policies: :class:`ArmStats` and empirical beliefs."""

    def _reset(self, hierarchy: Hierarchy) -> None:
        self.stats_ = ArmStats(hierarchy)

    def _tell(self, index: int, reward: float) -> None:
        self.stats_.add(index, reward)

    def _dataset_estimates(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.stats_
        return _empirical(s.counts, s.sums, s.m2)

    def posterior(self) -> Posterior:
        """Dataset estimates (see the class) and, for groups, the empirical mean and standard
        error of all rewards the group received (flat policies have no group model)."""
        self._check_reset()
        s, h = self.stats_, self.hierarchy_
        mean, std = self._dataset_estimates()
        g_mean, g_std = _empirical(s.group_counts, s.group_sums, s.group_m2)
        return Posterior(
            datasets=_beliefs(h.dataset_ids, h.groups, mean, std, s.counts),
            groups=_beliefs(h.group_ids, None, g_mean, g_std, s.group_counts),
        )


class FlatTS(_EmpiricalPolicy):
    """Flat Gaussian Thompson sampling over all datasets (the paper's "DaS" ablation).

    Each dataset has its own posterior N(m, v) from the prior N(mu0, sigma0^2) and Gaussian
    rewards of known noise sigma_r: ``v = (1/sigma0^2 + n/sigma_r^2)^-1``,
    ``m = v (mu0/sigma0^2 + S/sigma_r^2)`` with n rewards summing to S. Each step draws once
    from every dataset's posterior and picks the largest draw: O(|D|) per step.

    Parameters
    ----------
    mu0 : float, default 0.5
        Prior mean of a dataset's utility (DaSH's ``mu0``).
    sigma0 : float, default 0.27
        Prior std of a dataset's utility: about sqrt(0.25^2 + 0.1^2), the marginal std of one
        dataset under DaSH's default priors (group spread 0.25, within-group spread 0.1), so
        the two methods start from the same belief about any single dataset.
    sigma_r : float, default 0.05
        Reward noise std (DaSH's ``sigma_r``).
    """

    name = "flat"

    def __init__(self, mu0: float = 0.5, sigma0: float = 0.27, sigma_r: float = 0.05) -> None:
        self.mu0 = mu0
        self.sigma0 = sigma0
        self.sigma_r = sigma_r
        self._validate()

    def _validate(self) -> None:
        _check_finite("FlatTS", mu0=self.mu0)
        _check_std("FlatTS", sigma0=self.sigma0, sigma_r=self.sigma_r)

    def _reset(self, hierarchy: Hierarchy) -> None:
        self._validate()
        super()._reset(hierarchy)

    def _dataset_estimates(self) -> tuple[np.ndarray, np.ndarray]:
        mean, var = self._gaussian()
        return mean, np.sqrt(var)

    def _gaussian(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.stats_
        p0, pr = 1.0 / self.sigma0**2, 1.0 / self.sigma_r**2
        var = 1.0 / (p0 + s.counts * pr)
        return var * (self.mu0 * p0 + s.sums * pr), var

    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        mean, var = self._gaussian()
        draw = mean + np.sqrt(var) * rng.standard_normal(mean.size)
        return self.hierarchy_.dataset_ids[int(np.argmax(draw))]


class UCB1(_EmpiricalPolicy):
    """UCB1: pull the dataset with the largest ``mean + alpha * sqrt(2 ln N / n)``.

    N is the number of rewards told, n the dataset's. Datasets never pulled score +inf, so
    every dataset is tried once first, in an order drawn from the step's generator (ties are
    always broken at random). Asks of a batch see the same counts, so a batch may repeat a
    dataset. The final choice ranks by empirical mean, never by this score.

    Parameters
    ----------
    alpha : float, default 1.0
        Width of the exploration bonus, in reward units (1.0 is classic UCB1 for rewards in
        [0, 1]; smaller explores less).
    """

    name = "ucb"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha
        self._validate()

    def _validate(self) -> None:
        _check_finite("UCB1", alpha=self.alpha)
        if self.alpha < 0:
            raise DashselError(f"UCB1: alpha must be >= 0, got {self.alpha!r}")

    def _reset(self, hierarchy: Hierarchy) -> None:
        self._validate()
        super()._reset(hierarchy)

    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        s = self.stats_
        n = s.counts.astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = self.alpha * np.sqrt(2.0 * math.log(max(s.total, 1)) / n)
            score = np.where(n > 0, s.sums / n + bonus, np.inf)
        return self.hierarchy_.dataset_ids[_argmax_random_tie(score, rng)]


class EpsilonGreedy(_EmpiricalPolicy):
    """With probability ``epsilon`` a uniformly random dataset, else the best empirical mean.

    Datasets never pulled count as best (each is tried once before exploiting, as in
    :class:`UCB1`), and ties are broken at random.

    Parameters
    ----------
    epsilon : float, default 0.1
        Exploration probability, in [0, 1].
    """

    name = "egreedy"

    def __init__(self, epsilon: float = 0.1) -> None:
        self.epsilon = epsilon
        self._validate()

    def _validate(self) -> None:
        _check_finite("EpsilonGreedy", epsilon=self.epsilon)
        if not 0.0 <= self.epsilon <= 1.0:
            raise DashselError(f"EpsilonGreedy: epsilon must be in [0, 1], got {self.epsilon!r}")

    def _reset(self, hierarchy: Hierarchy) -> None:
        self._validate()
        super()._reset(hierarchy)

    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        s = self.stats_
        ids = self.hierarchy_.dataset_ids
        if rng.random() < self.epsilon:
            return ids[int(rng.integers(len(ids)))]
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(s.counts > 0, s.sums / s.counts, np.inf)
        return ids[_argmax_random_tie(score, rng)]


class RoundRobin(_EmpiricalPolicy):
    """Cycle through the datasets in pool order: ask t returns dataset ``t mod |D|``.

    Deterministic (the seed plays no role); useful as an exhaustive-evaluation baseline.
    """

    name = "roundrobin"

    def __init__(self) -> None:
        pass

    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        ids = self.hierarchy_.dataset_ids
        return ids[step % len(ids)]


class Random(_EmpiricalPolicy):
    """Pick a dataset uniformly at random (with replacement) at every step."""

    name = "random"

    def __init__(self) -> None:
        pass

    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        ids = self.hierarchy_.dataset_ids
        return ids[int(rng.integers(len(ids)))]
