"""Arm statistics, belief builders and parameter checks shared by every policy and peer.

One home for what the flat baselines, DaSH and the peer adapters all need: per-dataset and
per-group reward statistics (:class:`ArmStats`, Welford), the conjugate-normal posterior
(written once, used by FlatTS, DaSH's dataset level and DaSH's group level), the empirical
estimates of the frequentist policies, the :class:`~dashsel.policies.base.Posterior` builder,
and the validators of constructor parameters.

This module is private to :mod:`dashsel.policies` and :mod:`dashsel.peers`; its names are
public inside it so that no module imports a private name from another.
"""

from __future__ import annotations

import math
from functools import cached_property
from numbers import Real
from typing import Protocol

import numpy as np

from dashsel.errors import DashselError
from dashsel.hierarchy import Hierarchy
from dashsel.policies.base import Posterior

__all__ = [
    "ArmStats",
    "PriorLike",
    "argmax_random_tie",
    "check_finite",
    "check_range",
    "check_std",
    "empirical",
    "group_posterior",
    "is_number",
    "masked_argmax",
    "normal_posterior",
    "posterior_of",
]


class ArmStats:
    """Sufficient statistics of the rewards told so far, per dataset and per group.

    Attributes
    ----------
    group_of : ndarray of intp
        Group position (in ``hierarchy.group_ids`` order) of each dataset.
    members : tuple of ndarray
        ``members[g]``: dataset positions of group ``g``, in pool order (built on first use).
    sizes : ndarray of int
        Number of datasets per group.
    counts, sums, means, m2 : ndarray
        Per dataset: number of rewards, their sum, their running mean (0 where never pulled)
        and the sum of squared deviations from it (Welford: the spread stays accurate when
        rewards are close together, and nothing is squared that a sum of squares would
        overflow).
    group_counts, group_sums, group_means, group_m2 : ndarray
        The same over all rewards of each group.
    total : int
        Number of rewards told.

    Notes
    -----
    ``add`` is O(1). Rewards are assumed finite with magnitude at most
    :data:`~dashsel.policies.base.MAX_ABS_REWARD` (``Policy.tell`` enforces it), which keeps
    every statistic, and every posterior built from them, finite.
    """

    def __init__(self, hierarchy: Hierarchy) -> None:
        n, n_groups = hierarchy.n_datasets, hierarchy.n_groups
        # The hierarchy's cached, read-only codes: shared, not copied, by every policy.
        self.group_of = hierarchy.group_index
        self.sizes = np.bincount(self.group_of, minlength=n_groups)
        self.counts = np.zeros(n, dtype=np.int64)
        self.sums = np.zeros(n)
        self.means = np.zeros(n)
        self.m2 = np.zeros(n)
        self.group_counts = np.zeros(n_groups, dtype=np.int64)
        self.group_sums = np.zeros(n_groups)
        self.group_means = np.zeros(n_groups)
        self.group_m2 = np.zeros(n_groups)
        self.total = 0

    @cached_property
    def members(self) -> tuple[np.ndarray, ...]:
        """``members[g]``: dataset positions of group ``g`` in pool order (built on first use:
        flat policies never need it)."""
        order = np.argsort(self.group_of, kind="stable")
        return tuple(np.split(order, np.cumsum(self.sizes)[:-1]))

    def add(self, index: int, reward: float) -> int:
        """Record one reward for dataset ``index``; return the dataset's group position."""
        g = int(self.group_of[index])
        for counts, sums, means, m2, i in (
            (self.counts, self.sums, self.means, self.m2, index),
            (self.group_counts, self.group_sums, self.group_means, self.group_m2, g),
        ):
            n1 = int(counts[i]) + 1
            mean0 = float(means[i])
            delta = reward - mean0
            mean1 = mean0 + delta / n1
            m2[i] += delta * (reward - mean1)
            means[i] = mean1
            counts[i] = n1
            sums[i] += reward
        self.total += 1
        return g

    def empirical_means(self) -> np.ndarray:
        """Empirical mean per dataset (NaN where never pulled)."""
        return np.where(self.counts > 0, self.means, np.nan)

    def excluded_groups(self, excluded: np.ndarray) -> np.ndarray:
        """Mask of the groups all of whose datasets are in the dataset mask ``excluded``."""
        hit = np.bincount(self.group_of[excluded], minlength=self.sizes.size)
        return hit >= self.sizes


def empirical(
    counts: np.ndarray, means: np.ndarray, m2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Empirical mean (NaN if n = 0) and its standard error (NaN if n < 2)."""
    n = counts.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, means, np.nan)
        se = np.where(n > 1, np.sqrt(np.maximum(m2, 0.0) / (n - 1) / n), np.nan)
    return mean, se


def normal_posterior(
    counts: np.ndarray | float,
    means: np.ndarray | float,
    prior_mean: np.ndarray | float,
    prior_var: np.ndarray | float,
    noise_var: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """Conjugate normal update: prior N(prior_mean, prior_var), n observations averaging
    ``means``, each with noise variance ``noise_var``.

    Returns ``var = (1/prior_var + n/noise_var)^-1`` and
    ``mean = var (prior_mean/prior_var + n mean/noise_var)``, written as a weighted average
    of the prior mean and the observed mean so that no intermediate exceeds the magnitude of
    the rewards (the form with sums times precisions overflows first).
    """
    n = np.asarray(counts, dtype=float)
    p0 = 1.0 / np.asarray(prior_var, dtype=float)
    pn = n / np.asarray(noise_var, dtype=float)
    var = 1.0 / (p0 + pn)
    w = pn * var  # weight of the observations, in [0, 1)
    mean = (1.0 - w) * prior_mean + w * np.asarray(means, dtype=float)
    return mean, var


class PriorLike(Protocol):
    """The hyperparameters the group posterior reads (e.g. DaSH's ``GaussianPrior``)."""

    mu0: float
    sigma0: float
    sigmahat0: float
    sigma_r: float


def group_posterior(
    counts: np.ndarray, means: np.ndarray, prior: PriorLike
) -> tuple[np.ndarray, np.ndarray]:
    """DaSH's group posterior means and variances (paper Eqs. 4-5), vectorised over groups.

    A group with n_i rewards averaging sbar_i observes sbar_i with variance
    ``sigmahat0^2 + sigma_r^2 / n_i`` once: one conjugate update of N(mu0, sigma0^2). The
    prior where a group has no reward.
    """
    n = np.asarray(counts, dtype=float)
    pulled = n > 0
    obs_var = prior.sigmahat0**2 + prior.sigma_r**2 / np.where(pulled, n, 1.0)
    return normal_posterior(pulled, means, prior.mu0, prior.sigma0**2, obs_var)


def posterior_of(
    hierarchy: Hierarchy,
    stats: ArmStats,
    dataset: tuple[np.ndarray, np.ndarray] | None = None,
    group: tuple[np.ndarray, np.ndarray] | None = None,
) -> Posterior:
    """A columnar :class:`Posterior` from (mean, std) arrays per dataset and per group.

    Either defaults to the empirical mean and its standard error, the estimate of every
    frequentist policy and peer. Counts are copied (they change with later tells); the
    (mean, std) arrays given are used as they are, so pass arrays the caller will not modify.
    """
    d_mean, d_std = dataset or empirical(stats.counts, stats.means, stats.m2)
    g_mean, g_std = group or empirical(stats.group_counts, stats.group_means, stats.group_m2)
    return Posterior.from_arrays(
        hierarchy,
        mean=d_mean,
        std=d_std,
        pulls=stats.counts.copy(),
        group_mean=g_mean,
        group_std=g_std,
        group_pulls=stats.group_counts.copy(),
    )


def argmax_random_tie(score: np.ndarray, rng: np.random.Generator) -> int:
    """Position of the largest score, ties broken uniformly with ``rng``."""
    best = np.flatnonzero(score == score.max())
    return int(best[0]) if best.size == 1 else int(rng.choice(best))


def masked_argmax(score: np.ndarray, excluded: np.ndarray | None) -> int:
    """Position of the largest score among the positions ``excluded`` does not mark."""
    if excluded is not None:
        score = np.where(excluded, -np.inf, score)
    return int(np.argmax(score))


def is_number(v: object) -> bool:
    """A real, finite number that is not a bool."""
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(float(v))


def check_std(owner: str, **values: float) -> None:
    """Raise a one-line :class:`DashselError` unless every value is a positive finite number."""
    for name, v in values.items():
        if not (is_number(v) and v > 0):
            raise DashselError(f"{owner}: {name} must be a positive finite number, got {v!r}")


def check_finite(owner: str, **values: float) -> None:
    """Raise a one-line :class:`DashselError` unless every value is a finite number."""
    for name, v in values.items():
        if not is_number(v):
            raise DashselError(f"{owner}: {name} must be a finite number, got {v!r}")


def check_range(owner: str, name: str, value: float, low: float, high: float = math.inf) -> None:
    """Raise a one-line :class:`DashselError` unless ``value`` is a number in [low, high]."""
    check_finite(owner, **{name: value})
    if not low <= value <= high:
        bounds = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
        raise DashselError(f"{owner}: {name} must be {bounds}, got {value!r}")
