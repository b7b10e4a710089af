"""Replay pools with known truth, for measuring selection policies without any training.

Each pool is generated from a seed: true utilities come from a two-level model with
heavy-ish tails (Student t with 4 degrees of freedom, rescaled to unit variance)::

    theta_g = 0.7 + sigma0 * t4          group utility
    theta_d = theta_g + sigmahat0 * t4   dataset utility (the truth)
    reward  = theta_d + sigma_r * N(0,1) drawn afresh at every evaluation

Kinds (``KINDS``):

* ``informative``: 200 datasets in 24 groups (8 or 9 each), sigma0 = 0.05, sigmahat0 = 0.03,
  sigma_r = 0.02: groups explain most of the spread.
* ``uninformative``: the same datasets and utilities as ``informative`` with the same seed,
  group labels shuffled across datasets: groups carry no information.
* ``mixed``: 25 groups of 8 generated as informative, then 3 members of every group moved to
  3 other groups (each group keeps 5 own members and receives 3 foreign ones).
* ``deterministic``: the ``informative`` layout with one reward per dataset (sigma_r = 0: an
  evaluation always returns the dataset's utility).
* ``large``: 2,000 datasets in 100 groups of 20, informative.

Every pool also carries ``scores``, a training-free-like score per dataset (higher = better):
the standardised utility plus unit Gaussian noise (correlation about 0.7 with the truth).

The quality of a chosen set is its **normalized utility**: (mean utility of the chosen
datasets - mean utility of the pool) / (mean utility of the best k - mean utility of the pool):
0 is an average dataset, 1 the best k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dashsel.errors import DashselError
from dashsel.hierarchy import Hierarchy

__all__ = ["KINDS", "ReplayPool", "make_replay_pool", "normalized_utility"]

KINDS: tuple[str, ...] = ("informative", "uninformative", "mixed", "deterministic", "large")

_MU, _SIGMA0, _SIGMAHAT0, _SIGMA_R = 0.7, 0.05, 0.03, 0.02


@dataclass(frozen=True)
class ReplayPool:
    """A generated pool: hierarchy, true utilities, reward noise and a score per dataset."""

    kind: str
    seed: int
    hierarchy: Hierarchy
    utility: np.ndarray
    sigma_r: float
    scores: np.ndarray

    @property
    def deterministic(self) -> bool:
        """True when every evaluation of a dataset returns the same reward."""
        return self.sigma_r == 0.0

    @property
    def n_datasets(self) -> int:
        return self.hierarchy.n_datasets

    def reward(self, index: int, rng: np.random.Generator) -> float:
        """One evaluation of dataset ``index`` (pool order): its utility plus fresh noise."""
        if self.sigma_r == 0.0:
            return float(self.utility[index])
        return float(self.utility[index] + self.sigma_r * rng.standard_normal())

    def normalized_utility(self, chosen: Sequence[str], k: int) -> float:
        """Normalized utility (0 = average dataset, 1 = the best ``k``) of chosen dataset ids."""
        idx = np.fromiter((self.hierarchy.index(d) for d in chosen), np.intp, count=len(chosen))
        return normalized_utility(self.utility, idx, k)


def normalized_utility(utility: np.ndarray, chosen: np.ndarray, k: int) -> float:
    """(mean of ``utility[chosen]`` - pool mean) / (mean of the best ``k`` - pool mean)."""
    u = np.asarray(utility, dtype=float)
    if len(chosen) == 0:
        raise DashselError("normalized_utility: no dataset chosen")
    base = float(u.mean())
    best = float(np.sort(u)[-int(k) :].mean())
    if best <= base:
        return 0.0
    return (float(u[np.asarray(chosen)].mean()) - base) / (best - base)


def _t4(rng: np.random.Generator, size: int) -> np.ndarray:
    # Student t(4) has variance 2: rescale to unit variance.
    return rng.standard_t(4, size) / np.sqrt(2.0)


def _layout(sizes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Group index per dataset and utilities for groups of the given sizes."""
    groups = np.repeat(np.arange(sizes.size), sizes)
    theta_g = _MU + _SIGMA0 * _t4(rng, sizes.size)
    utility = theta_g[groups] + _SIGMAHAT0 * _t4(rng, groups.size)
    return groups, utility


def _mix(groups: np.ndarray, n_groups: int, n_foreign: int, rng: np.random.Generator) -> np.ndarray:
    """Move ``n_foreign`` members of every group to ``n_foreign`` distinct other groups."""
    out = groups.copy()
    offsets = rng.choice(np.arange(1, n_groups), size=n_foreign, replace=False)
    for g in range(n_groups):
        members = np.flatnonzero(groups == g)
        moved = rng.choice(members, size=n_foreign, replace=False)
        for j, d in enumerate(moved):
            out[d] = (g + offsets[j]) % n_groups
    return out


def make_replay_pool(kind: str, seed: int) -> ReplayPool:
    """Generate the pool of ``kind`` (one of :data:`KINDS`) from ``seed``.

    Raises :class:`DashselError` for an unknown kind.
    """
    if kind not in KINDS:
        raise DashselError(f"unknown replay kind {kind!r}: use one of {', '.join(KINDS)}")
    seed = int(seed)
    rng = np.random.default_rng([seed, 0])
    sigma_r = _SIGMA_R
    if kind in ("informative", "uninformative", "deterministic"):
        sizes = np.full(24, 8)
        sizes[rng.choice(24, size=8, replace=False)] += 1  # 200 = 16 x 8 + 8 x 9
        groups, utility = _layout(sizes, rng)
        if kind == "uninformative":
            groups = np.random.default_rng([seed, 1]).permutation(groups)
        if kind == "deterministic":
            sigma_r = 0.0
    elif kind == "mixed":
        groups, utility = _layout(np.full(25, 8), rng)
        groups = _mix(groups, 25, 3, np.random.default_rng([seed, 2]))
    else:  # large
        groups, utility = _layout(np.full(100, 20), rng)
    n = utility.size
    z = (utility - utility.mean()) / utility.std()
    scores = z + np.random.default_rng([seed, 3]).standard_normal(n)
    ids = [f"d{i:04d}" for i in range(n)]
    hierarchy = Hierarchy(ids, [f"g{g:03d}" for g in groups])
    return ReplayPool(kind, seed, hierarchy, utility, sigma_r, scores)
