"""Flat baselines: Thompson sampling without hierarchy (the paper's "DaS"), UCB1, epsilon-greedy,
round-robin and uniform random.

Every policy keeps per-dataset counts, running means and Welford sums of squares in numpy
arrays (``ArmStats``), so a ``tell`` is O(1) and an ``ask`` is one vectorised pass over the
datasets (FlatTS keeps its posterior mean and std vectors up to date at each tell).
Frequentist policies report the empirical mean and its standard error, NaN where they are
not defined (no pull for the mean, fewer than two pulls for the standard error);
NaN means rank last in :meth:`~dashsel.policies.base.Policy.recommend`.
"""

from __future__ import annotations

import math

import numpy as np

from dashsel.hierarchy import Hierarchy
from dashsel.policies._stats import (
    ArmStats,
    argmax_random_tie,
    check_finite,
    check_range,
    check_std,
    empirical,
    masked_argmax,
    normal_posterior,
    posterior_of,
)
from dashsel.policies.base import Policy, Posterior

__all__ = ["UCB1", "EpsilonGreedy", "FlatTS", "Random", "RoundRobin"]


class _EmpiricalPolicy(Policy):
    """Shared state of the flat policies: :class:`ArmStats` and empirical beliefs."""

    def _reset(self, hierarchy: Hierarchy) -> None:
        self.stats_ = ArmStats(hierarchy)

    def _tell(self, index: int, reward: float) -> None:
        self.stats_.add(index, reward)

    def _dataset_estimates(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.stats_
        return empirical(s.counts, s.means, s.m2)

    def _dataset_means(self) -> np.ndarray:
        return self.stats_.empirical_means()

    def posterior(self) -> Posterior:
        """Dataset estimates (see the class) and, for groups, the empirical mean and standard
        error of all rewards the group received (flat policies have no group model)."""
        self._check_reset()
        return posterior_of(self.hierarchy_, self.stats_, dataset=self._dataset_estimates())


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
        check_finite("FlatTS", mu0=self.mu0)
        check_std("FlatTS", sigma0=self.sigma0, sigma_r=self.sigma_r)

    def _reset(self, hierarchy: Hierarchy) -> None:
        super()._reset(hierarchy)
        n = hierarchy.n_datasets
        self.mean_ = np.full(n, float(self.mu0))
        self.std_ = np.full(n, float(self.sigma0))

    def _tell(self, index: int, reward: float) -> None:
        super()._tell(index, reward)
        # Only this dataset's posterior changed: O(1).
        s = self.stats_
        mean, var = normal_posterior(
            s.counts[index], s.means[index], self.mu0, self.sigma0**2, self.sigma_r**2
        )
        self.mean_[index], self.std_[index] = mean, math.sqrt(var)

    def _dataset_estimates(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean_.copy(), self.std_.copy()

    def _dataset_means(self) -> np.ndarray:
        return self.mean_

    def _ask_one(
        self, rng: np.random.Generator, step: int, excluded: np.ndarray | None = None
    ) -> int:
        draw = rng.standard_normal(self.mean_.size)
        draw *= self.std_  # in place: one array of N floats per ask
        draw += self.mean_
        return masked_argmax(draw, excluded)


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
        check_range("UCB1", "alpha", self.alpha, 0.0)

    def _reset(self, hierarchy: Hierarchy) -> None:
        super()._reset(hierarchy)
        # 1/sqrt(n) per dataset, +inf before the first pull (so the score is +inf there):
        # kept up to date at each tell, so an ask is one multiply-add over the datasets.
        self.inv_sqrt_n_ = np.full(hierarchy.n_datasets, np.inf)

    def _tell(self, index: int, reward: float) -> None:
        super()._tell(index, reward)
        self.inv_sqrt_n_[index] = 1.0 / math.sqrt(self.stats_.counts[index])

    def _ask_one(
        self, rng: np.random.Generator, step: int, excluded: np.ndarray | None = None
    ) -> int:
        c = self.alpha * math.sqrt(2.0 * math.log(max(self.stats_.total, 1)))
        with np.errstate(invalid="ignore"):  # alpha = 0 times inf: unpulled, scored +inf
            score = self.stats_.means + c * self.inv_sqrt_n_
        score[np.isnan(score)] = np.inf
        return _best(score, excluded, rng)


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
        check_range("EpsilonGreedy", "epsilon", self.epsilon, 0.0, 1.0)

    def _ask_one(
        self, rng: np.random.Generator, step: int, excluded: np.ndarray | None = None
    ) -> int:
        s = self.stats_
        if rng.random() < self.epsilon:
            return _uniform(rng, s.counts.size, excluded)
        score = np.where(s.counts > 0, s.means, np.inf)
        return _best(score, excluded, rng)


class RoundRobin(_EmpiricalPolicy):
    """Cycle through the datasets in pool order: ask t returns dataset ``t mod |D|``.

    Deterministic (the seed plays no role); useful as an exhaustive-evaluation baseline.
    """

    name = "roundrobin"

    def _ask_one(
        self, rng: np.random.Generator, step: int, excluded: np.ndarray | None = None
    ) -> int:
        n = self.hierarchy_.n_datasets
        start = step % n
        if excluded is None:
            return start
        # The first dataset at or after this step's position, cyclically, that is allowed.
        free = np.flatnonzero(~np.roll(excluded, -start))
        return (start + int(free[0])) % n


class Random(_EmpiricalPolicy):
    """Pick a dataset uniformly at random at every step (among those not excluded, so a
    batch holds distinct datasets while the pool has them)."""

    name = "random"

    def _ask_one(
        self, rng: np.random.Generator, step: int, excluded: np.ndarray | None = None
    ) -> int:
        return _uniform(rng, self.hierarchy_.n_datasets, excluded)


def _uniform(rng: np.random.Generator, n: int, excluded: np.ndarray | None) -> int:
    """A uniformly random position among the ``n`` datasets that ``excluded`` allows."""
    if excluded is None:
        return int(rng.integers(n))
    # A few rejection draws first: O(1) while few datasets are excluded (a batch's earlier
    # slots, a study's pending trials), and uniform over the allowed ones all the same.
    for _ in range(8):
        i = int(rng.integers(n))
        if not excluded[i]:
            return i
    free = np.flatnonzero(~excluded)
    return int(free[rng.integers(free.size)])


def _best(score: np.ndarray, excluded: np.ndarray | None, rng: np.random.Generator) -> int:
    """Largest score among allowed positions, ties broken at random."""
    if excluded is None:
        return argmax_random_tie(score, rng)
    return argmax_random_tie(np.where(excluded, -np.inf, score), rng)
