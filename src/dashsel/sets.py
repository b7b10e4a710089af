"""The best set, not the best members: near-copies between candidates, and a set-aware choice.

Ranking candidates one at a time (by a posterior mean or a training-free score) misses one
thing: two candidates can each be excellent and still add nothing *next to each other*. A
near-copy of a good candidate scores as well as its original, alone, in every single-dataset
evaluation and every score; taking both spends a slot of the top-k on nothing. This module

* finds, without training, which candidates nearly copy which (:func:`find_near_copies`);
* makes a final choice that skips a candidate nearly copying one already chosen and fills
  from the ranking (:func:`dedupe_ranking`; :func:`dashsel.select` does it by default on a
  pool with arrays);
* optionally spends a small share of the budget evaluating the chosen *set* and a few swaps
  (:func:`refine_set`), for evaluators that can train on several datasets at once.

How near-copies are found
-------------------------
1. Every candidate's rows are standardised and projected on ``dim`` principal axes fitted on a
   sample of candidate rows (one shared space; a pool of any width costs ``dim`` numbers per
   row). The label is appended as one coordinate spaced far beyond the data's diameter, so a
   row only ever matches a row *with the same label*.
2. Candidate pairs: each candidate's ``n_neighbors`` nearest candidates by mean embedding
   (a near-copy's mean sits next to its original's; nearest neighbours over all candidates,
   so 10^4 candidates cost seconds), plus every pair with byte-identical arrays.
3. Row-wise confirmation, per ordered pair (A, B): ``d(A, B)``, the median over (at most
   ``n_query``) rows of A of the distance to the nearest row of B, divided by ``r(B)``, the
   median over B's rows of the distance to B's nearest *other distinct* row. ``r(B)`` is how
   close a fresh sample from B's own distribution comes to B's rows at B's density, so the
   ratio is unit-free and about 1 for an independent sample of the same distribution,
   whatever the domain, the width or the sizes; it is 0 for an exact copy (or a subset) and
   about ``noise / r(B)`` for rows of B plus noise.

A pair is a near-copy when the ratio is below ``threshold`` (default
:data:`NEAR_COPY_THRESHOLD` = 0.3: A's rows sit at less than a third of the distance an
independent sample would). Independent random subsets of the same data measure about 1 (the
smallest over every pair compared on the digits5-100 pools: 0.76); copies with 5 % feature
noise 0.01 there and at most 0.11 on synthetic pools of 10^4 candidates
(``docs/benchmarks/sets.md``, ``docs/benchmarks/near_copies_scale.md``), so the threshold has
wide margins on both sides.

Limits: a candidate larger than ``max_rows`` rows is compared on a random subsample of that
many rows, so a near-copy of part of it can be missed; a candidate with fewer than two
distinct rows never counts as covering another; a pair where either side has fewer than
:data:`MIN_ROWS` rows counts only when the rows coincide exactly (a median of a handful of
distances is chance). In very few dimensions (below about 8 features) 5 % noise moves a row as
far as the next row of the same data, so such a near-copy is not told apart from a fresh
sample.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dashsel.errors import DashselError

if TYPE_CHECKING:
    import pandas as pd

    from dashsel.hierarchy import Hierarchy
    from dashsel.policies.base import Recommendation
    from dashsel.pool import Pool

__all__ = [
    "NEAR_COPY_THRESHOLD",
    "NearCopy",
    "Redundancy",
    "Refinement",
    "SetChoice",
    "dedupe_ranking",
    "find_near_copies",
    "refine_set",
]

#: Default ratio below which a candidate counts as a near-copy of another (see module doc).
NEAR_COPY_THRESHOLD = 0.3
#: Candidates compared row-wise with each candidate (nearest by mean embedding).
N_NEIGHBORS = 8
#: Rows of a candidate whose nearest rows in another candidate are measured.
N_QUERY = 48
#: Rows of a candidate kept as the one compared against (larger ones are subsampled).
MAX_ROWS = 4096
#: Rows both candidates of a pair need for an inexact near-copy to count (fewer: exact only).
MIN_ROWS = 10
#: Axes of the shared space.
DIM = 32
#: Rows sampled to fit the shared space.
_FIT_ROWS = 2000
#: Memory for embeddings kept between the two passes over the candidates.
_KEEP_BYTES = 512 * 2**20


class SetError(DashselError):
    """A set-level choice that cannot be made (no arrays, an evaluator that cannot train)."""


@dataclass(frozen=True)
class NearCopy:
    """``copy``'s rows (nearly) all sit on rows of ``of``: next to ``of``, it adds nothing.

    Attributes
    ----------
    copy, of : str
        Dataset ids.
    ratio : float
        Median distance from ``copy``'s rows to their nearest row of ``of``, over ``of``'s
        own median distance to its nearest other row (0: exact copy, about 1: an
        independent sample of the same data).
    """

    copy: str
    of: str
    ratio: float


@dataclass(frozen=True)
class Redundancy:
    """Which candidate nearly copies which (:func:`find_near_copies`).

    Attributes
    ----------
    pairs : tuple of NearCopy
        Every ordered near-copy pair found, lowest ratio first.
    threshold : float
        The ratio below which a pair counts.
    n_candidates : int
        Candidates examined.
    n_compared : int
        Ordered pairs compared row-wise.
    seconds : float
        Wall time.
    """

    pairs: tuple[NearCopy, ...]
    threshold: float
    n_candidates: int
    n_compared: int
    seconds: float
    _covers: dict[str, dict[str, float]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        covers: dict[str, dict[str, float]] = {}
        for p in self.pairs:
            covers.setdefault(p.copy, {})[p.of] = p.ratio
        object.__setattr__(self, "_covers", covers)

    @property
    def copies(self) -> frozenset[str]:
        """Candidates that nearly copy at least one other."""
        return frozenset(self._covers)

    def copied_by(self, dataset_id: str) -> dict[str, float]:
        """The candidates ``dataset_id`` nearly copies, with the ratio of each."""
        return dict(self._covers.get(dataset_id, {}))

    def redundant_with(self, dataset_id: str, chosen: Iterable[str]) -> NearCopy | None:
        """The closest chosen candidate ``dataset_id`` nearly copies, or None."""
        mine = self._covers.get(dataset_id)
        if not mine:
            return None
        hits = [(r, c) for c in chosen if (r := mine.get(c)) is not None]
        if not hits:
            return None
        r, c = min(hits)
        return NearCopy(dataset_id, c, r)

    def to_frame(self) -> pd.DataFrame:
        """One row per pair: ``copy``, ``of``, ``ratio``."""
        import pandas as pd

        return pd.DataFrame(
            [(p.copy, p.of, p.ratio) for p in self.pairs], columns=["copy", "of", "ratio"]
        )

    def to_record(self) -> dict[str, Any]:
        """What a journal header keeps: the threshold and the pairs as ``[copy, of, ratio]``
        (the cost fields are not kept; :meth:`from_record` reads it back)."""
        return {
            "threshold": self.threshold,
            "n_candidates": self.n_candidates,
            "pairs": [[p.copy, p.of, p.ratio] for p in self.pairs],
        }

    @classmethod
    def from_record(cls, record: Any, where: str = "journal") -> Redundancy:
        """The inverse of :meth:`to_record`; a malformed record is a one-line
        :class:`SetError` naming ``where``."""
        try:
            pairs = tuple(NearCopy(str(c), str(o), float(r)) for c, o, r in record["pairs"])
            return cls(pairs, float(record["threshold"]), int(record["n_candidates"]), 0, 0.0)
        except (TypeError, ValueError, KeyError):
            raise SetError(f"{where}: the near-copies record is not readable") from None


# --- detection ------------------------------------------------------------------------------
def _flat(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    return X.reshape(X.shape[0], -1).astype(np.float64, copy=False)


class _Space:
    """Standardise, project on ``dim`` principal axes, append the label coordinate."""

    def __init__(self, sample: np.ndarray, dim: int, seed: int) -> None:
        self.mu = sample.mean(axis=0)
        sd = sample.std(axis=0)
        # A constant feature carries nothing; dividing by 1 keeps it constant (and finite).
        self.sd = np.where(sd > 1e-12, sd, 1.0)
        Z = (sample - self.mu) / self.sd
        n_comp = int(min(dim, Z.shape[0], Z.shape[1]))
        if n_comp < Z.shape[1]:
            Zc = Z - Z.mean(axis=0)
            if Z.shape[1] <= 512:
                # Narrow: the covariance's eigenvectors directly (cheap and exact).
                _, vecs = np.linalg.eigh(Zc.T @ Zc)
                self.axes: np.ndarray | None = vecs[:, ::-1][:, :n_comp]
            else:
                from sklearn.decomposition import PCA

                pca = PCA(
                    n_components=n_comp,
                    svd_solver="randomized",
                    iterated_power=3,
                    random_state=seed,
                )
                self.axes = pca.fit(Zc).components_.T
            P = Z @ self.axes
        else:
            self.axes = None
            P = Z
        # Labels as one coordinate spaced far beyond the sample's diameter: rows of different
        # labels never match while a row of the same label exists.
        spread = float(np.sqrt((P**2).sum(axis=1)).max()) if len(P) else 1.0
        self.label_step = 100.0 * max(spread, 1.0)
        self.labels: dict[Any, int] = {}

    def label_codes(self, y: np.ndarray) -> np.ndarray:
        values, inverse = np.unique(np.asarray(y), return_inverse=True)
        codes = np.array([self.labels.setdefault(v.item(), len(self.labels)) for v in values])
        return codes[inverse.ravel()].astype(np.float64)

    def embed(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        Z = (_flat(X) - self.mu) / self.sd
        P = Z @ self.axes if self.axes is not None else Z
        out = np.empty((P.shape[0], P.shape[1] + 1))
        out[:, :-1] = P
        out[:, -1] = self.label_codes(y) * self.label_step
        return out


def _candidates(data: Pool | Mapping[str, Any]) -> tuple[list[str], Callable[[str], Any]]:
    """Ids and a loader of ``(X, y)`` for a pool with arrays or a mapping id -> (X, y)."""
    from dashsel.pool import ArraySplit, Pool

    if isinstance(data, Pool):
        if not data.any_candidate_arrays or not all(e.has_data for e in data.entries):
            raise SetError(
                "near-copy detection needs every candidate's arrays; this pool has none "
                "(a replay-only table): pass dedupe=False"
            )
        return list(data.dataset_ids), lambda d: data.dataset(d)

    def load(d: str) -> Any:
        v = data[d]
        return v if isinstance(v, ArraySplit) else ArraySplit(*v)

    return list(data), load


def _digest(X: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha1(np.ascontiguousarray(X).tobytes())
    h.update(str(X.shape).encode())
    h.update(np.ascontiguousarray(np.asarray(y).astype(str)).tobytes())
    return h.hexdigest()


def _reference(B: np.ndarray) -> float:
    """Median distance from B's rows to their nearest other *distinct* row (inf if none)."""
    from scipy.spatial import cKDTree

    if len(B) < 2:
        return float("inf")
    kk = min(len(B), 8)
    dist, _ = cKDTree(B).query(B, k=kk)
    dist = np.asarray(dist).reshape(len(B), kk)[:, 1:]
    # The first positive distance of each row: repeated rows (a bootstrap sample) do not make
    # the reference shrink to 0.
    pos = np.where(dist > 1e-12, dist, np.inf).min(axis=1)
    pos = pos[np.isfinite(pos)]
    return float(np.median(pos)) if pos.size else float("inf")


def find_near_copies(
    data: Pool | Mapping[str, Any],
    *,
    threshold: float = NEAR_COPY_THRESHOLD,
    n_neighbors: int = N_NEIGHBORS,
    n_query: int = N_QUERY,
    max_rows: int = MAX_ROWS,
    dim: int = DIM,
    seed: int = 0,
) -> Redundancy:
    """Which candidates nearly copy which, without training (see the module doc).

    Parameters
    ----------
    data : Pool or mapping of str to (X, y) / ArraySplit
        Candidates with arrays.
    threshold : float
        Ratio (unit-free) below which a candidate counts as a near-copy of another.
    n_neighbors : int
        Candidates compared row-wise with each one (nearest by mean embedding).
    n_query, max_rows, dim : int
        Rows of a candidate measured, rows a candidate is compared against at most, axes of
        the shared space.
    seed : int
        Seeds the row subsamples and the space.

    Returns
    -------
    Redundancy
        The ordered pairs found, with their ratios and the cost.

    Raises
    ------
    SetError
        A pool without candidate arrays, or a threshold that is not a positive number.
    """
    from scipy.spatial import cKDTree
    from sklearn.neighbors import NearestNeighbors

    if not (isinstance(threshold, int | float) and not isinstance(threshold, bool)) or not (
        0.0 < float(threshold) < 1.0
    ):
        raise SetError(f"threshold must be a number in (0, 1), got {threshold!r}")
    t0 = time.perf_counter()
    ids, load = _candidates(data)
    n = len(ids)
    if n < 2:
        return Redundancy((), float(threshold), n, 0, time.perf_counter() - t0)
    rng = np.random.default_rng([seed, 5151])
    # Fit the space on a few rows of (at most) 500 candidates.
    fit_ids = rng.permutation(n)[: min(n, 500)]
    per = max(2, _FIT_ROWS // len(fit_ids))
    parts = []
    for i in fit_ids:
        X = _flat(load(ids[i]).X)
        if len(X):
            parts.append(X[rng.choice(len(X), size=min(per, len(X)), replace=False)])
    if not parts:
        return Redundancy((), float(threshold), n, 0, time.perf_counter() - t0)
    space = _Space(np.concatenate(parts), dim, seed)

    width = space.mu.size if space.axes is None else space.axes.shape[1]
    means = np.zeros((n, width))
    queries: list[np.ndarray] = []
    digests: dict[str, list[int]] = {}
    has_rows = np.zeros(n, dtype=bool)
    # Embeddings kept from the first pass for the second, within a memory budget (beyond it,
    # a candidate is embedded again when it is compared against).
    kept: dict[int, np.ndarray] = {}
    kept_bytes = 0
    for i, d in enumerate(ids):
        part = load(d)
        if len(part) == 0:
            queries.append(np.zeros((0, width + 1)))
            continue
        has_rows[i] = True
        digests.setdefault(_digest(np.asarray(part.X), np.asarray(part.y)), []).append(i)
        E = space.embed(np.asarray(part.X), np.asarray(part.y))
        means[i] = E[:, :-1].mean(axis=0)
        E32 = E.astype(np.float32)  # half the memory; distances need no more precision
        queries.append(E32[rng.choice(len(E), size=min(n_query, len(E)), replace=False)])
        B = E32[rng.choice(len(E), size=max_rows, replace=False)] if len(E) > max_rows else E32
        if kept_bytes + B.nbytes <= _KEEP_BYTES:
            kept[i] = B
            kept_bytes += B.nbytes

    # Candidate pairs: nearest by mean embedding, both directions, plus identical arrays.
    live = np.flatnonzero(has_rows)
    todo: dict[int, set[int]] = {}  # of (B) -> copies to test (A)
    if live.size >= 2:
        nn = NearestNeighbors(n_neighbors=min(n_neighbors + 1, live.size)).fit(means[live])
        _, nbr = nn.kneighbors(means[live])
        for row, a in enumerate(live):
            for b in live[nbr[row]]:
                if a != b:
                    todo.setdefault(int(b), set()).add(int(a))
                    todo.setdefault(int(a), set()).add(int(b))
    found: dict[tuple[int, int], float] = {}
    for same in digests.values():
        for a in same:
            for b in same:
                if a != b:
                    found[(a, b)] = 0.0
    n_compared = 0
    for b, copies in todo.items():
        B = kept.get(b)
        if B is None:
            part = load(ids[b])
            B = space.embed(np.asarray(part.X), np.asarray(part.y)).astype(np.float32)
            if len(B) > max_rows:
                B = B[rng.choice(len(B), size=max_rows, replace=False)]
        ref = _reference(B)
        if not np.isfinite(ref):
            continue
        tree = cKDTree(B)
        for a in sorted(copies):
            if (a, b) in found:
                continue
            dist, _ = tree.query(queries[a], k=1)
            n_compared += 1
            ratio = float(np.median(dist)) / ref
            # A median of a handful of distances is chance: few rows count only when exact.
            few = min(len(queries[a]), len(B)) < MIN_ROWS
            if ratio < threshold and (not few or ratio == 0.0):
                found[(a, b)] = ratio
    pairs = sorted(
        (NearCopy(ids[a], ids[b], r) for (a, b), r in found.items()),
        key=lambda p: (p.ratio, p.copy, p.of),
    )
    return Redundancy(tuple(pairs), float(threshold), n, n_compared, time.perf_counter() - t0)


# --- set-aware final choice -----------------------------------------------------------------
@dataclass(frozen=True)
class SetChoice:
    """A final choice made set-aware (:func:`dedupe_ranking`).

    Attributes
    ----------
    selected : tuple of str
        The chosen datasets, in ranking order.
    skipped : tuple of NearCopy
        Candidates passed over, each with the chosen candidate it nearly copies and the ratio.
    short : int
        Slots left empty because the ranking ran out (then filled with skipped candidates,
        best first, so the set keeps its size).
    """

    selected: tuple[str, ...]
    skipped: tuple[NearCopy, ...]
    short: int = 0

    def reasons(self) -> dict[str, str]:
        """Each skipped candidate -> why, in words."""
        return {s.copy: f"near-copy of chosen {s.of} (ratio {s.ratio:.2f})" for s in self.skipped}


def dedupe_ranking(ranking: Sequence[str], size: int, redundancy: Redundancy) -> SetChoice:
    """The first ``size`` candidates of ``ranking`` (best first), skipping any that nearly
    copies one already chosen.

    Parameters
    ----------
    ranking : sequence of str
        Candidates, best first (more than ``size`` so there is something to fill from).
    size : int
        Datasets to choose.
    redundancy : Redundancy
        From :func:`find_near_copies`.

    Returns
    -------
    SetChoice
        If the ranking runs out, skipped candidates fill the remaining slots (best first) and
        ``short`` counts them.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0:
        raise SetError(f"size must be an integer >= 0, got {size!r}")
    chosen: list[str] = []
    skipped: list[NearCopy] = []
    for d in dict.fromkeys(ranking):
        if len(chosen) >= size:
            break
        hit = redundancy.redundant_with(d, chosen)
        if hit is None:
            chosen.append(d)
        else:
            skipped.append(hit)
    short = 0
    while len(chosen) < size and skipped:
        chosen.append(skipped.pop(0).copy)
        short += 1
    order = {d: i for i, d in enumerate(dict.fromkeys(ranking))}
    chosen.sort(key=order.__getitem__)
    return SetChoice(tuple(chosen), tuple(skipped), short)


# --- evaluating the set ---------------------------------------------------------------------
@dataclass(frozen=True)
class Refinement:
    """What :func:`refine_set` did.

    Attributes
    ----------
    selected : tuple of str
        The final set.
    initial_value : float
        Set evaluation of the set it started from.
    value : float
        Set evaluation of the final set.
    swaps : tuple of (str, str, float, bool)
        Each swap tried: (member out, candidate in, value of the swapped set, kept).
    n_evaluations : int
        Set evaluations spent.
    """

    selected: tuple[str, ...]
    initial_value: float
    value: float
    swaps: tuple[tuple[str, str, float, bool], ...]
    n_evaluations: int


def refine_set(
    evaluator: Any,
    selected: Sequence[str],
    ranking: Sequence[str],
    n_evaluations: int,
    *,
    seed: int = 0,
    redundancy: Redundancy | None = None,
) -> Refinement:
    """Evaluate the chosen set, then try swapping its weakest members for the next candidates.

    The first evaluation trains on local data plus the whole set
    (``evaluator.evaluate_set``); each further one swaps the weakest member not yet tried
    (the last in ``selected``, which is best first) for the next candidate of ``ranking``
    that is not in the set (nor a near-copy of a member, with ``redundancy``), and keeps the
    swap if the set's value improves. Every evaluation uses the same ``seed``, so two sets
    are compared on the same training randomness.

    Parameters
    ----------
    evaluator : Evaluator
        One whose ``evaluate_set(dataset_ids, seed)`` trains on several datasets at once.
    selected : sequence of str
        The set to start from, best first.
    ranking : sequence of str
        Candidates best first; those after the set are swapped in, in order.
    n_evaluations : int
        Set evaluations to spend (>= 1 to do anything).
    seed : int
        Seed of every set evaluation.
    redundancy : Redundancy, optional
        Skip candidates that nearly copy a member.

    Raises
    ------
    SetError
        The evaluator cannot evaluate a set (a table or replay evaluator).
    """
    evaluate_set = getattr(evaluator, "evaluate_set", None)
    if not callable(evaluate_set) or not getattr(evaluator, "can_train", False):
        raise SetError(
            f"{type(evaluator).__name__} cannot evaluate a set of datasets (it does not train); "
            "set refinement needs a training evaluator"
        )
    current = list(selected)
    if n_evaluations < 1 or not current:
        return Refinement(tuple(current), float("nan"), float("nan"), (), 0)
    best = float(evaluate_set(current, seed))
    initial = best
    used = 1
    swaps: list[tuple[str, str, float, bool]] = []
    members = set(current)
    pending = [d for d in dict.fromkeys(ranking) if d not in members]
    out_order = list(reversed(current))  # weakest first
    while used < n_evaluations and out_order and pending:
        out = out_order.pop(0)
        if out not in current:
            continue
        rest = [d for d in current if d != out]
        incoming = None
        while pending:
            c = pending.pop(0)
            if redundancy is None or redundancy.redundant_with(c, rest) is None:
                incoming = c
                break
        if incoming is None:
            break
        trial = [*rest, incoming]
        value = float(evaluate_set(trial, seed))
        used += 1
        kept = value > best
        swaps.append((out, incoming, value, kept))
        if kept:
            current, best = trial, value
    return Refinement(tuple(current), initial, best, tuple(swaps), used)


# --- the run's final choice (called once, by dashsel.run.select) ----------------------------
def check_dedupe(dedupe: Any) -> None:
    """Refuse a ``dedupe`` that is not None, a bool or a :class:`Redundancy`."""
    if dedupe is not None and not isinstance(dedupe, bool | np.bool_ | Redundancy):
        raise SetError(f"dedupe must be True, False, None or a Redundancy, got {dedupe!r}")


def _pool_has_candidate_arrays(pool: Pool) -> bool:
    # any_candidate_arrays first: O(1) for a replay-only table of any size.
    return bool(pool.any_candidate_arrays) and all(e.has_data for e in pool.entries)


def near_copies_for(
    pool: Pool, dedupe: Any, k: int | None, percentile: float | None, *, seed: int = 0
) -> Redundancy | None:
    """The near-copies the final choice of a run or a study skips, found once before its
    first trial (so ``dedupe=True`` on a pool without arrays fails before any budget is
    spent) and kept in the journal header, so ``dashsel report`` skips them too.

    ``dedupe``: None (on when every candidate has arrays), True (on; a :class:`SetError`
    without arrays), False (off) or a precomputed :class:`Redundancy`. Returns None when off
    or when the rule (``k`` / ``percentile``) chooses a single dataset.
    """
    check_dedupe(dedupe)
    if dedupe is False or ((k is None or k < 2) and percentile is None):
        return None
    if isinstance(dedupe, Redundancy):
        return dedupe
    if dedupe is None and not _pool_has_candidate_arrays(pool):
        return None
    return find_near_copies(pool, seed=seed)


def set_aware(
    policy: Any, rec: Recommendation, redundancy: Redundancy | None, hierarchy: Hierarchy
) -> tuple[Recommendation, dict[str, str]]:
    """A final choice made set-aware: ``rec`` (the policy's recommendation, best first) with
    near-copies of chosen candidates replaced by the next of the policy's ranking.

    What the end of a run, ``dashsel report`` and :meth:`dashsel.Study.recommend` all apply, so
    they make the same choice. Returns the recommendation (``rec`` itself when nothing is
    skipped) and, for each skipped candidate, why.
    """
    datasets = tuple(rec.datasets)
    if redundancy is None or not redundancy.pairs or len(datasets) < 2:
        return rec, {}
    size = len(datasets)
    # Enough of the ranking to refill every slot a near-copy could free.
    longer = policy.recommend(k=min(hierarchy.n_datasets, size + len(redundancy.copies)))
    ranking = [*datasets, *(d for d in longer.datasets if d not in set(datasets))]
    choice = dedupe_ranking(ranking, size, redundancy)
    if not choice.skipped and choice.selected == datasets:
        return rec, {}
    groups = tuple(dict.fromkeys(hierarchy.group_of(d) for d in choice.selected))
    return type(rec)(choice.selected, groups), choice.reasons()
