"""Core-sets: k-center greedy selection (Sener & Savarese, ICLR 2018)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import pairwise_distances_argmin_min

from dashsel.random_state import RandomState, check_random_state
from dashsel_bench.baselines._common import (
    all_indices,
    check_budget,
    check_features,
    check_local,
)


def coresets_select(
    candidates: np.ndarray,
    budget: int,
    *,
    local: np.ndarray | None = None,
    random_state: RandomState = None,
) -> np.ndarray:
    """Pick samples that cover the candidates' feature space, by k-center greedy.

    From Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
    Approach" (ICLR 2018), Algorithm 1 (the greedy 2-approximation of the k-center problem):
    starting from the already-labelled set ``s``, repeatedly add
    ``argmax_{i not in s} min_{j in s} ||x_i - x_j||``.

    Adaptation: the labelled set is the target's local training data (``local``), so the picks
    cover what the local data leaves uncovered; without ``local`` the first centre is a
    uniformly random candidate. Distances are Euclidean on the given feature vectors (the
    original used a CNN's last-layer activations). The paper's robust MIP variant (which
    tolerates outliers) is not implemented; the greedy version is what it initialises from and
    what later work reports as "Core-Set".

    Parameters
    ----------
    candidates : ndarray of shape (n, d)
        Feature vectors of the pool's samples.
    budget : int
        Number of samples to pick (>= 1). ``budget >= n`` returns every index.
    local : ndarray of shape (m, d), optional
        Feature vectors of the local (already labelled) samples.
    random_state : int, Generator, SeedSequence or None
        Only used for the first centre when ``local`` is None.

    Returns
    -------
    ndarray of int, shape (min(budget, n),)
        Distinct indices into ``candidates`` in the order they were picked, so every prefix is
        the greedy selection for the smaller budget.

    Notes
    -----
    Time O(n·(m + budget)·d), memory O(n·d): one vectorised distance pass per pick, plus a
    chunked nearest-local pass when ``local`` is given.
    """
    x = check_features(candidates, "candidates")
    budget = check_budget(budget)
    loc = check_local(local, x.shape[1])
    n = x.shape[0]
    if budget >= n:
        return all_indices(n)

    # Centre the data: ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2 cancels badly when the points sit
    # far from the origin (HOG and hashed term-frequency features are all non-negative);
    # centring removes the common offset at no cost to the distances.
    mean = x.mean(axis=0)
    x = x - mean
    sq_norms = np.einsum("ij,ij->i", x, x)

    chosen: list[int] = []
    if loc is not None:
        _, dist = pairwise_distances_argmin_min(x, loc - mean)
        min_sq = dist**2
    else:
        first = int(check_random_state(random_state).integers(n))
        chosen.append(first)
        min_sq = _sq_dist_to(x, sq_norms, first)
    # A picked sample's entry is set to -inf, and np.minimum keeps it there: argmax never
    # returns it again, even when duplicate points leave every other distance at 0.
    min_sq[chosen] = -np.inf
    while len(chosen) < budget:
        new = int(np.argmax(min_sq))
        chosen.append(new)
        np.minimum(min_sq, _sq_dist_to(x, sq_norms, new), out=min_sq)
        min_sq[new] = -np.inf
    return np.asarray(chosen, dtype=np.intp)


def _sq_dist_to(x: np.ndarray, sq_norms: np.ndarray, i: int) -> np.ndarray:
    """Squared Euclidean distance of every row of ``x`` to row ``i`` (clipped at 0)."""
    d = sq_norms - 2.0 * (x @ x[i]) + sq_norms[i]
    return np.maximum(d, 0.0, out=d)
