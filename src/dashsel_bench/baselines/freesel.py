"""FreeSel: one-pass, training-free distance-based sampling over semantic patterns.

Xie et al., "Towards Free Data Selection with General-Purpose Models" (NeurIPS 2023).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dashsel.errors import DashselError
from dashsel.random_state import RandomState, check_random_state
from dashsel_bench.baselines._common import (
    CHUNK,
    all_indices,
    check_budget,
    check_count,
    check_features,
    check_local,
    check_positive,
    l2_normalise,
)

Sampling = Literal["prob", "fps"]


def semantic_patterns(features: np.ndarray, n_patches: int, keep_ratio: float) -> tuple:
    """Per-sample "semantic patterns" built from feature vectors, in place of ViT patches.

    Each feature vector is cut into ``n_patches`` contiguous pseudo-patches (zero-padded to
    equal length). As FreeSel keeps the patches that hold the top ``keep_ratio`` of the
    [CLS] attention, we keep, per sample, the highest-energy pseudo-patches that together hold
    at least ``keep_ratio`` of its squared norm (at least one patch). Every kept patch,
    L2-normalised, is one pattern. With ``n_patches=1`` the pattern is the whole normalised
    feature vector, the analogue of the reference default (one pattern per image).

    Returns
    -------
    patterns : ndarray of shape (P, ceil(d / n_patches))
        Unit (or zero) pattern vectors.
    owner : ndarray of int, shape (P,)
        The sample each pattern belongs to (non-decreasing).
    """
    n, d = features.shape
    if n_patches == 1:
        return l2_normalise(features), np.arange(n, dtype=np.intp)
    width = -(-d // n_patches)
    padded = np.zeros((n, n_patches * width))
    # array_split-style cut: the first d % n_patches chunks get one extra column, which keeps
    # every column in exactly one chunk; chunks are then left-aligned into equal widths.
    bounds = np.cumsum([0] + [len(c) for c in np.array_split(np.arange(d), n_patches)])
    for p in range(n_patches):
        lo, hi = bounds[p], bounds[p + 1]
        padded[:, p * width : p * width + (hi - lo)] = features[:, lo:hi]
    patches = padded.reshape(n, n_patches, width)
    energy = np.einsum("npw,npw->np", patches, patches)
    order = np.argsort(-energy, axis=1, kind="stable")
    sorted_energy = np.take_along_axis(energy, order, axis=1)
    total = sorted_energy.sum(axis=1, keepdims=True)
    # Keep patch r if the patches ranked above it hold less than keep_ratio of the energy:
    # this always keeps the top patch and stops once the threshold is reached.
    before = np.cumsum(sorted_energy, axis=1) - sorted_energy
    keep_sorted = before < keep_ratio * np.where(total > 0, total, 1.0)
    keep_sorted[:, 0] = True
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=1)
    owner, patch = np.nonzero(keep)
    return l2_normalise(patches[owner, patch]), owner.astype(np.intp)


def freesel_select(
    candidates: np.ndarray,
    budget: int,
    *,
    local: np.ndarray | None = None,
    random_state: RandomState = None,
    n_patches: int = 1,
    keep_ratio: float = 0.5,
    sampling: Sampling = "prob",
) -> np.ndarray:
    """Pick samples by distance-based sampling over their semantic patterns (FreeSel).

    From Xie et al., "Towards Free Data Selection with General-Purpose Models" (NeurIPS 2023).
    The original passes each image once through a pretrained ViT, keeps the patch features the
    [CLS] token attends to, and summarises them into a few "semantic patterns". Selection is
    then one pass of distance-based sampling: with ``D(p)`` the cosine distance of pattern ``p``
    to the nearest pattern of an already selected sample, the next pattern is drawn with
    probability proportional to ``D(p)^2`` (k-means++ style; the reference ``prob`` sampling,
    or the plain farthest point with ``sampling="fps"``) and its whole sample is selected.

    Adaptation: **no pretrained ViT is used.** The pool's own feature vectors (HOG, hashed term
    frequencies, ...) stand in for the ViT features, and pseudo-patches cut from them stand in
    for the patch tokens, with their energy standing in for the attention
    (:func:`semantic_patterns`). The default ``n_patches=1`` uses the whole feature vector as
    the single pattern, which suits any feature type; more patches only make sense where
    contiguous feature blocks mean something (HOG blocks are image regions). When ``local`` is
    given, its patterns seed the selected set, as the reference code's ``init_ids`` do, so the
    picks move away from what the local data already covers; otherwise the first sample is
    uniformly random.

    Parameters
    ----------
    candidates : ndarray of shape (n, d)
        Feature vectors of the pool's samples.
    budget : int
        Number of samples to pick (>= 1). ``budget >= n`` returns every index.
    local : ndarray of shape (m, d), optional
        Feature vectors of the local samples (initial selected set).
    random_state : int, Generator, SeedSequence or None
        Seeds the first pick and the probabilistic draws.
    n_patches : int, default 1
        Pseudo-patches per feature vector (1 to d).
    keep_ratio : float, default 0.5
        Share of a sample's energy its kept patches must hold (reference attention ratio 0.5);
        unused when ``n_patches=1``.
    sampling : {"prob", "fps"}, default "prob"
        ``D^2``-weighted draws (FreeSel's rule) or deterministic farthest-point sampling.

    Returns
    -------
    ndarray of int, shape (min(budget, n),)
        Distinct indices into ``candidates`` in the order they were picked.

    Notes
    -----
    Time O(budget·P·w + P·P_local·w) with P <= n·n_patches patterns of width w = d/n_patches,
    i.e. O(budget·n·d) for the default; memory O(n·d). No training, no iterations.
    """
    x = check_features(candidates, "candidates")
    budget = check_budget(budget)
    loc = check_local(local, x.shape[1])
    n_patches = check_count(n_patches, "n_patches")
    if n_patches > x.shape[1]:
        raise DashselError(
            f"n_patches ({n_patches}) cannot exceed the number of features ({x.shape[1]})"
        )
    if not 0 < check_positive(keep_ratio, "keep_ratio") <= 1:
        raise DashselError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    if sampling not in ("prob", "fps"):
        raise DashselError(f"sampling must be 'prob' or 'fps', got {sampling!r}")
    n = x.shape[0]
    if budget >= n:
        return all_indices(n)

    rng = check_random_state(random_state)
    patterns, owner = semantic_patterns(x, n_patches, keep_ratio)
    # Pattern ranges per sample (owner is sorted), to fetch a sample's patterns in O(1).
    starts = np.searchsorted(owner, np.arange(n + 1))
    # Cosine distance to the nearest selected pattern; 2 is the largest possible value, so it
    # plays the role of "no selected pattern yet".
    dist = np.full(patterns.shape[0], 2.0)
    if loc is not None:
        loc_patterns, _ = semantic_patterns(loc, n_patches, keep_ratio)
        for s in range(0, loc_patterns.shape[0], CHUNK):
            sim = patterns @ loc_patterns[s : s + CHUNK].T
            np.minimum(dist, 1.0 - sim.max(axis=1), out=dist)
        np.maximum(dist, 0.0, out=dist)

    chosen: list[int] = []
    picked = np.zeros(n, dtype=bool)
    if loc is None:
        chosen.append(int(rng.integers(n)))
    while True:
        if chosen and not picked[chosen[-1]]:
            new = chosen[-1]
            picked[new] = True
            own = patterns[starts[new] : starts[new + 1]]
            np.minimum(dist, np.maximum(1.0 - (patterns @ own.T).max(axis=1), 0.0), out=dist)
            # A chosen sample's own patterns must never be drawn again, even if rounding left
            # them a tiny positive distance.
            dist[starts[new] : starts[new + 1]] = 0.0
        if len(chosen) == budget:
            break
        chosen.append(_next_sample(dist, owner, picked, sampling, rng))
    return np.asarray(chosen, dtype=np.intp)


def _next_sample(
    dist: np.ndarray,
    owner: np.ndarray,
    picked: np.ndarray,
    sampling: Sampling,
    rng: np.random.Generator,
) -> int:
    """The sample owning the next drawn (or farthest) pattern, never an already picked one."""
    weight = np.where(picked[owner], 0.0, dist**2)
    total = weight.sum()
    if total <= 0:
        # Every unpicked sample duplicates a picked one: any of them is as good as another.
        return int(rng.choice(np.flatnonzero(~picked)))
    if sampling == "fps":
        return int(owner[np.argmax(weight)])
    # Inverse-CDF draw: one cumsum and a binary search, cheaper than rng.choice(p=...), which
    # re-validates the whole probability vector on every call.
    cdf = np.cumsum(weight)
    k = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    # side="right" lands on a pattern whose weight is positive; the clip guards the rounding
    # case where the draw equals the total.
    k = min(k, int(np.flatnonzero(weight)[-1]))
    return int(owner[k])
