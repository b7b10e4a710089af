"""Uniform random samples: the reference every instance-level selector should beat."""

from __future__ import annotations

import numpy as np

from dashsel.random_state import RandomState, check_random_state
from dashsel_bench.baselines._common import (
    all_indices,
    check_budget,
    check_features,
    check_local,
)


def random_select(
    candidates: np.ndarray,
    budget: int,
    *,
    local: np.ndarray | None = None,
    random_state: RandomState = None,
) -> np.ndarray:
    """Pick ``budget`` candidates uniformly at random, without replacement.

    Not a method from the DaSH paper's tables, but the floor every selector is judged against:
    published subset-selection methods often fail to beat it at small budgets. In expectation
    it takes from every source in proportion to its size, so on a pool with irrelevant
    sources it shows how much a selector's feature-space criterion helps or hurts.

    Parameters
    ----------
    candidates : ndarray of shape (n, d)
        Feature vectors of the pool's samples (only the count is used; they are still checked,
        so bad input fails here as it would for the other selectors).
    budget : int
        Number of samples to pick (>= 1). ``budget >= n`` returns every index.
    local : ndarray of shape (m, d), optional
        Accepted for a common signature; not used.
    random_state : int, Generator, SeedSequence or None
        Seeds the draw.

    Returns
    -------
    ndarray of int, shape (min(budget, n),)
        Distinct indices into ``candidates``, in draw order. Time O(n), memory O(n).
    """
    x = check_features(candidates, "candidates")
    budget = check_budget(budget)
    check_local(local, x.shape[1])
    n = x.shape[0]
    if budget >= n:
        return all_indices(n)
    return check_random_state(random_state).choice(n, size=budget, replace=False).astype(np.intp)
