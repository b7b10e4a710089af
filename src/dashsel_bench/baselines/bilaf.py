"""BiLAF: core samples as pseudo-class centres, then boundary samples (Lu et al., NeurIPS 2024)."""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse

from dashsel.errors import DashselError
from dashsel.random_state import RandomState, check_random_state
from dashsel_bench.baselines._common import (
    all_indices,
    check_budget,
    check_count,
    check_features,
    check_local,
    check_positive,
    l2_normalise,
)
from dashsel_bench.baselines.activeft import (
    check_activeft_params,
    fit_activeft,
    match_parameters,
)


def bilaf_select(
    candidates: np.ndarray,
    budget: int,
    *,
    local: np.ndarray | None = None,
    random_state: RandomState = None,
    core_ratio: float = 0.1,
    removal_ratio: float = 0.1,
    n_neighbors: int = 10,
    max_reference: int = 2000,
    neighbour_removal: float = 0.5,
    opponent_penalty: float = 0.1,
    activeft_params: dict | None = None,
) -> np.ndarray:
    """Pick pseudo-class centres, then samples on the boundaries between them (BiLAF).

    From Lu et al., "Boundary Matters: A Bi-Level Active Finetuning Method" (NeurIPS 2024).
    All steps run on L2-normalised features (the ActiveFT space), with Euclidean distances.

    1. **Core samples.** ``n_core = round(core_ratio * budget)`` (at least 2 when the budget
       allows, since a boundary needs two sides) samples chosen by ActiveFT
       (:func:`~dashsel_bench.baselines.activeft.fit_activeft`); they are the pseudo-class
       centres, and every sample joins the cluster of its nearest centre.
    2. **Denoising.** In each cluster, a sample's density is the inverse of its mean distance to
       its ``n_neighbors`` nearest cluster-mates; the ``removal_ratio`` least dense samples of
       each cluster are dropped (they are outliers or sit in another class's territory, and
       would otherwise be mistaken for boundary samples).
    3. **Boundary score.** A silhouette-style score ``s = (b - a) / max(a, b)``, with ``a`` the
       mean squared distance to the sample's own (denoised) cluster and ``b`` the smallest mean
       squared distance to another cluster, that cluster being the sample's *opponent*.
       ``s`` near 0 (or below) marks a sample between two pseudo-classes.
    4. **Iterative selection.** The remaining budget is shared among clusters in proportion to
       their denoised sizes. Within a cluster with quota ``q`` and ``n_c`` samples, the sample
       with the lowest ``s + opponent_penalty * (picks already facing the same opponent)`` is
       picked, then its ``ceil(neighbour_removal * n_c / q)`` nearest cluster-mates lose
       candidacy, so the picks spread along the boundary and towards different opponents.

    Adaptation and deviations (the reference code was not available to us): the pool's feature
    vectors stand in for DINO features; ``local`` is checked but not used (BiLAF is one-shot
    with no labelled set); the intra/inter distances are *mean squared* Euclidean distances,
    computed in O(n·n_core·d) from cluster means and scatters rather than all pairwise
    distances; the density of a large cluster is estimated against a random subset of at most
    ``max_reference`` of its members; denoising is one pass, not iterated; the neighbour
    removal size and the additive opponent penalty are our reading of the paper's "iterative
    selection and removal" and "opponent penalty". If removal leaves too few candidates, the
    remaining budget goes to the lowest-scoring unpicked samples.

    Parameters
    ----------
    candidates : ndarray of shape (n, d)
        Feature vectors of the pool's samples.
    budget : int
        Number of samples to pick (>= 1). ``budget >= n`` returns every index.
    local : ndarray of shape (m, d), optional
        Accepted for a common signature; not used.
    random_state : int, Generator, SeedSequence or None
        Seeds ActiveFT and the density reference subsets.
    core_ratio : float, default 0.1
        Fraction of the budget spent on core samples, in (0, 1].
    removal_ratio : float, default 0.1
        Fraction of each cluster removed as noise, in [0, 1).
    n_neighbors : int, default 10
        k of the k-NN density.
    max_reference : int, default 2000
        Largest cluster-mate set a density is measured against.
    neighbour_removal : float, default 0.5
        Scales how many neighbours of a pick lose candidacy (0 disables the removal).
    opponent_penalty : float, default 0.1
        Score added per earlier pick in the cluster that faces the same opponent.
    activeft_params : dict, optional
        Keyword arguments for :func:`fit_activeft` (``temperature``, ``n_iter``, ...).

    Returns
    -------
    ndarray of int, shape (min(budget, n),)
        Distinct indices into ``candidates``: the core samples first, then boundary samples.

    Notes
    -----
    Time: ActiveFT with ``n_core`` parameters, plus O(sum_c n_c·min(n_c, max_reference)·d)
    for the densities, O(n·n_core·d) for the scores and O(budget·max_c n_c·d) for the
    neighbour removal. Memory O(n·d + max_c n_c·max_reference).
    """
    x = check_features(candidates, "candidates")
    budget = check_budget(budget)
    check_local(local, x.shape[1])
    if not 0 < check_positive(core_ratio, "core_ratio") <= 1:
        raise DashselError(f"core_ratio must be in (0, 1], got {core_ratio}")
    if not 0 <= check_positive(removal_ratio, "removal_ratio", allow_zero=True) < 1:
        raise DashselError(f"removal_ratio must be in [0, 1), got {removal_ratio}")
    n_neighbors = check_count(n_neighbors, "n_neighbors")
    max_reference = check_count(max_reference, "max_reference", minimum=2)
    check_positive(neighbour_removal, "neighbour_removal", allow_zero=True)
    check_positive(opponent_penalty, "opponent_penalty", allow_zero=True)
    activeft_kw = check_activeft_params(**(activeft_params or {}))
    n = x.shape[0]
    if budget >= n:
        return all_indices(n)

    rng = check_random_state(random_state)
    feats = l2_normalise(x)
    n_core = min(budget, max(2, round(core_ratio * budget)))
    fit = fit_activeft(feats, n_core, rng=rng, **activeft_kw)
    core = match_parameters(feats, fit.theta)
    if n_core == budget:
        return core

    # Pseudo-classes: nearest core sample (cosine = Euclidean order on the unit sphere).
    labels = np.argmax(feats @ feats[core].T, axis=1)
    is_core = np.zeros(n, dtype=bool)
    is_core[core] = True
    kept = _denoise(feats, labels, is_core, removal_ratio, n_neighbors, max_reference, rng)

    score, opponent = _boundary_scores(feats, labels, kept, n_core)
    pool = kept & ~is_core
    quotas = _quotas(np.bincount(labels[pool], minlength=n_core), budget - n_core)

    chosen = list(core)
    picked = is_core.copy()
    for c in range(n_core):
        members = np.flatnonzero(pool & (labels == c))
        chosen += _pick_in_cluster(
            feats, members, score, opponent, int(quotas[c]), neighbour_removal, opponent_penalty
        )
    picked[chosen] = True
    if len(chosen) < budget:
        # Neighbour removal can exhaust a cluster before its quota: top up with the unpicked
        # samples closest to a boundary, denoised ones first (removed noise gets +inf).
        rest = np.flatnonzero(~picked)
        order = np.lexsort((score[rest], ~kept[rest]))
        chosen += rest[order[: budget - len(chosen)]].tolist()
    return np.asarray(chosen, dtype=np.intp)


def _denoise(
    feats: np.ndarray,
    labels: np.ndarray,
    is_core: np.ndarray,
    removal_ratio: float,
    n_neighbors: int,
    max_reference: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mask of samples kept after dropping each cluster's least dense ``removal_ratio``."""
    kept = np.ones(feats.shape[0], dtype=bool)
    if removal_ratio == 0:
        return kept
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_c = members.size
        n_drop = int(removal_ratio * n_c)
        k = min(n_neighbors, n_c - 1)
        if n_drop == 0 or k < 1:
            continue
        if n_c <= max_reference:
            ref_pos = np.arange(n_c)
        else:
            ref_pos = np.sort(rng.choice(n_c, size=max_reference, replace=False))
        sparsity = _knn_mean_distance(feats[members], ref_pos, k)
        # The core sample is the cluster's centre by definition: never drop it.
        sparsity[is_core[members]] = -np.inf
        kept[members[np.argsort(sparsity, kind="stable")[n_c - n_drop :]]] = False
    return kept


def _knn_mean_distance(pts: np.ndarray, ref_pos: np.ndarray, k: int) -> np.ndarray:
    """Mean distance of each point to its k nearest reference points, itself excluded."""
    ref = pts[ref_pos]
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    in_ref = np.full(pts.shape[0], -1)
    in_ref[ref_pos] = np.arange(ref_pos.size)
    k = min(k, ref_pos.size - 1)
    out = np.empty(pts.shape[0])
    for start in range(0, pts.shape[0], 1024):
        block = pts[start : start + 1024]
        d2 = np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * block @ ref.T + ref_sq
        rows = np.flatnonzero(in_ref[start : start + 1024] >= 0)
        # A point is not its own neighbour (its distance would be 0 and inflate density).
        d2[rows, in_ref[start + rows]] = np.inf
        near = np.partition(d2, k - 1, axis=1)[:, :k]
        out[start : start + 1024] = np.sqrt(np.maximum(near, 0.0)).mean(axis=1)
    return out


def _boundary_scores(
    feats: np.ndarray, labels: np.ndarray, kept: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Silhouette-style boundary score and opponent cluster of every sample.

    Mean squared distance to a cluster's members is ``||x - mu_c||^2 + scatter_c`` (scatter =
    mean squared distance of the members to their mean), so the score costs O(n·K·d) instead
    of the O(n²·d) of all pairwise distances. Cluster statistics use kept samples only.
    """
    counts = np.bincount(labels[kept], minlength=n_clusters).astype(float)
    kept_rows = np.flatnonzero(kept)
    # Per-cluster sums as a sparse (K x n) indicator product: O(n d), unlike np.add.at's
    # element-by-element loop.
    indicator = sparse.csr_matrix(
        (np.ones(kept_rows.size), (labels[kept_rows], kept_rows)),
        shape=(n_clusters, feats.shape[0]),
    )
    sums = np.asarray(indicator @ feats)
    safe = np.maximum(counts, 1.0)
    mu = sums / safe[:, None]
    sq = np.einsum("ij,ij->i", feats, feats)
    sq_sum = np.bincount(labels[kept], weights=sq[kept], minlength=n_clusters)
    scatter = sq_sum / safe - np.einsum("ij,ij->i", mu, mu)
    mean_sq = np.maximum(
        sq[:, None] - 2.0 * feats @ mu.T + np.einsum("ij,ij->i", mu, mu) + scatter, 0.0
    )
    # A cluster that lost all its members cannot be an opponent.
    mean_sq[:, counts == 0] = np.inf
    rows = np.arange(feats.shape[0])
    a = mean_sq[rows, labels]
    others = mean_sq.copy()
    others[rows, labels] = np.inf
    opponent = np.argmin(others, axis=1)
    b = others[rows, opponent]
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (b - a) / np.maximum(a, b)
    # Degenerate cases (a single cluster, identical points): treat as "not on a boundary".
    score = np.where(np.isfinite(score), score, 1.0)
    score[~kept] = np.inf
    return score, opponent


def _quotas(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` in proportion to ``sizes`` (largest remainder), capped at each size."""
    quotas = np.zeros(sizes.size, dtype=int)
    remaining = min(total, int(sizes.sum()))
    while remaining > 0:
        room = sizes - quotas
        open_ = room > 0
        share = remaining * room * open_ / room[open_].sum()
        add = np.minimum(np.floor(share).astype(int), room)
        left = remaining - int(add.sum())
        if left > 0:
            # Largest fractional parts first; ties to the lower cluster index (stable sort).
            frac = np.where(open_ & (add < room), share - np.floor(share), -1.0)
            for c in np.argsort(-frac, kind="stable")[:left]:
                if frac[c] >= 0:
                    add[c] += 1
        quotas += add
        remaining -= int(add.sum())
    return quotas


def _pick_in_cluster(
    feats: np.ndarray,
    members: np.ndarray,
    score: np.ndarray,
    opponent: np.ndarray,
    quota: int,
    neighbour_removal: float,
    opponent_penalty: float,
) -> list[int]:
    """Iterative boundary selection in one cluster (see :func:`bilaf_select`, step 4)."""
    if quota == 0 or members.size == 0:
        return []
    active = np.ones(members.size, dtype=bool)
    base = score[members]
    opp = opponent[members]
    facing = np.zeros(int(opp.max()) + 1)
    n_remove = math.ceil(neighbour_removal * members.size / quota)
    pts = feats[members]
    out: list[int] = []
    while len(out) < quota and active.any():
        penalty = opponent_penalty * facing[opp]
        i = int(np.argmin(np.where(active, base + penalty, np.inf)))
        out.append(int(members[i]))
        active[i] = False
        facing[opp[i]] += 1
        n_active = int(active.sum())
        if n_remove > 0 and n_active > 0:
            diff = pts - pts[i]
            d2 = np.where(active, np.einsum("ij,ij->i", diff, diff), np.inf)
            if n_remove >= n_active:
                active[:] = False
            else:
                active[np.argpartition(d2, n_remove - 1)[:n_remove]] = False
    return out
