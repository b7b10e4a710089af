"""Training-free scores: how promising each candidate looks before any model is trained.

Every score compares a candidate's features and labels with the pool's validation data (the data
rewards are measured on) in one shared space, and is oriented **higher = expected better**: the
distances are negated. The raw distances are returned too.

The shared space
----------------
A PCA fitted on the validation and local features (at most ``n_components`` axes, default 32),
plus a random (Johnson-Lindenstrauss) projection of what the PCA leaves out (``n_residual``
directions, default 16), so that a candidate shifted in a direction the target does not vary in
still looks different. Coordinates are divided by one common scale, so that kernel bandwidths
and penalties are unit-free. The space is cross-fitted: the PCA sees one half of the validation
rows and candidates are compared with the other half (axes fitted on the rows they are compared
with overfit them, and a fresh sample of the target would look far from it). Projecting a
candidate is one matrix product; every score then works in 48 dimensions, whatever the width
of the features.

Scores (``which=``)
-------------------
``mean``
    Label-free. Distance between the candidate's mean point and the validation data's.
``mmd``
    Label-free. Maximum mean discrepancy with a Gaussian (RBF) kernel, median-heuristic
    bandwidth, approximated with random Fourier features (``n_features_rff``, default 256).
    Sees differences in spread and shape that the mean misses.
``otdd``
    Label-aware, the Gaussian approximation of OTDD (Alvarez-Melis & Fusi, 2020): each class of
    each dataset is summarised by a Gaussian with diagonal covariance; the cost of matching the
    candidate's class ``c`` with the validation's class ``v`` is the 2-Wasserstein distance
    between the two Gaussians, plus a *label penalty* when ``c != v`` (twice the validation
    data's total variance: the expected squared distance between two random validation points,
    i.e. "as bad as pairing at random"); each cost is corrected for the sampling noise of the
    class statistics. The distance is the optimal transport between the two label
    distributions under that cost (a tiny LP, at most classes x classes), classes both sides
    have taking the validation's proportions. Unlike OTDD proper, the label penalty makes it
    care about *which* label a look-alike carries: permuted or noisy labels cost, and a class
    missing on either side must be paid for by moving mass to another label. This is
    ``score_default``.
``label_quality``
    Fraction of the candidate's rows whose label agrees with a k-nearest-neighbour vote
    (``k_neighbors``, default 5) of the validation and local data in the shared space. In
    [0, 1]; it is already a score (no distance).
``otdd_exact``
    Optional (needs POT: ``pip install 'dashsel[ot]'``; not computed by default). OTDD on the
    samples: exact optimal transport between (at most ``max_ot_rows``) candidate and validation
    rows with cost ``|x - x'|^2 + label cost(y, y')``, the label cost as in ``otdd``. Cubic in
    the rows: for small pools.

See ``docs/scores.md`` for costs and for when each score misleads.
"""

from __future__ import annotations

import functools
import itertools
import numbers
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dashsel.errors import DashselError
from dashsel.random_state import RandomState, check_random_state

if TYPE_CHECKING:
    import pandas as pd

    from dashsel.pool import Pool

#: Every score :func:`score_pool` knows.
SCORES: tuple[str, ...] = ("mean", "mmd", "otdd", "label_quality", "otdd_exact")
#: Scores computed when ``which`` is not given (the cheap ones, core dependencies only).
DEFAULT_SCORES: tuple[str, ...] = ("mean", "mmd", "otdd", "label_quality")
#: The score ``score_default`` copies.
DEFAULT_SCORE = "otdd"
#: Scores that :func:`pool_covariates` hands to an engine by default.
DEFAULT_COVARIATES: tuple[str, ...] = ("otdd", "label_quality", "mmd")
#: Scores that are distances (``dist_<name>`` column; the score is its negation).
_DISTANCES = ("mean", "mmd", "otdd", "otdd_exact")
#: Reference rows used to fit the PCA and the kernel bandwidth (more add cost, not accuracy).
_MAX_FIT_ROWS = 5000
#: Validation rows from which on the space is cross-fitted (fewer: fitted on all of them).
_MIN_SPLIT = 40


class ScoreError(DashselError):
    """Scores cannot be computed for this pool (no arrays, mismatched features, ...)."""


# --- the shared space ------------------------------------------------------------------------
@dataclass
class _Space:
    """Centre and projection; ``project`` maps raw rows into the shared space."""

    center: np.ndarray  # (d,)
    matrix: np.ndarray  # (d, p + q): PCA axes, then random directions of their complement

    def __post_init__(self) -> None:
        # (X - c) @ M = X @ M - c @ M: one product, no centred copy of X.
        self.offset = self.center @ self.matrix

    @classmethod
    def fit(
        cls, R: np.ndarray, n_components: int, n_residual: int, rng: np.random.Generator
    ) -> _Space:
        if R.shape[0] > _MAX_FIT_ROWS:
            R = R[rng.choice(R.shape[0], _MAX_FIT_ROWS, replace=False)]
        center = R.mean(axis=0)
        C = R - center
        d = C.shape[1]
        p = max(1, min(n_components, d, C.shape[0]))
        # Full SVD of a (<= 5000, d) matrix: exact and deterministic (no randomized solver).
        _, _, vt = np.linalg.svd(C, full_matrices=False)
        axes = vt[:p].T  # (d, p)
        # A shift orthogonal to the target's principal axes would be invisible in them: keep a
        # random (Johnson-Lindenstrauss) projection of the residual too. Norms are preserved
        # on average, and isotropic noise keeps its per-coordinate variance.
        q = min(n_residual, d - p)
        blocks = [axes]
        if q > 0:
            rp = rng.normal(0.0, 1.0 / np.sqrt(q), size=(d, q)) * np.sqrt((d - p) / d)
            blocks.append(rp - axes @ (axes.T @ rp))
        matrix = np.hstack(blocks)
        total = float((C @ matrix).var(axis=0).sum())
        scale = float(np.sqrt(total / matrix.shape[1])) if total > 0 else 1.0
        return cls(center, matrix / scale)

    def project(self, X: np.ndarray) -> np.ndarray:
        Z = X @ self.matrix
        Z -= self.offset
        return Z


def _as_matrix(X: np.ndarray, width: int | None, what: str) -> np.ndarray:
    X = np.asarray(X)
    X = X.reshape(X.shape[0], int(np.prod(X.shape[1:])))  # images etc. become rows
    if not (np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.bool_)):
        raise ScoreError(f"{what}: features are not numeric (dtype {X.dtype})")
    X = X.astype(np.float64, copy=False)
    if width is not None and X.shape[1] != width:
        raise ScoreError(f"{what}: has {X.shape[1]} features but the validation data has {width}")
    if not np.isfinite(X).all():
        raise ScoreError(f"{what}: features hold NaN or infinite values")
    return X


# --- the reference (validation + local) ------------------------------------------------------
@dataclass
class _Reference:
    space: _Space
    Zv: np.ndarray  # validation rows the candidates are compared with, projected
    yv: np.ndarray  # their label codes
    Zr: np.ndarray  # validation + local rows, projected (k-NN data)
    Zr32: np.ndarray  # the same in float32
    Zr32_m2T: np.ndarray  # -2 * Zr32.T (the k-NN cross term)
    yr: np.ndarray  # their label codes
    code: dict[Any, int]  # label -> code
    val_codes: np.ndarray  # codes of the validation classes, sorted
    val_w: np.ndarray  # their proportions in the validation data
    val_stats: np.ndarray  # (K_v, 2 * dim): per-class mean and std
    val_noise: np.ndarray  # (K_v,): sampling noise of those estimates
    penalty: float  # label penalty (squared distance units)
    mean_v: np.ndarray
    rff_w: np.ndarray
    rff_b: np.ndarray
    rff_w32: np.ndarray  # the same in float32 (what the features are computed with)
    rff_b32: np.ndarray
    rff_mean_v: np.ndarray
    width: int


def _class_stats(
    Z: np.ndarray, codes: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean and standard deviation (diagonal Gaussian), stacked as (K, 2 * dim), and
    each class's sampling noise: the expected squared error of those estimates, (K,)."""
    onehot = (codes[:, None] == classes[None, :]).astype(np.float64)
    counts = onehot.sum(axis=0)[:, None]
    means = onehot.T @ Z / counts
    sq = onehot.T @ (Z**2) / counts
    var = np.maximum(sq - means**2, 0.0)
    # E|mean_hat - mean|^2 = tr(var)/n; E|std_hat - std|^2 ~ tr(var)/(2n) (Gaussian).
    noise = 1.5 * var.sum(axis=1) / counts[:, 0]
    return np.hstack([means, np.sqrt(var)]), noise


def _build_reference(
    pool: Pool, n_components: int, n_residual: int, n_features_rff: int, rng: np.random.Generator
) -> _Reference:
    val = pool.validation
    Xv = _as_matrix(val.X, None, "validation data")
    width = Xv.shape[1]
    parts_X, parts_y = [Xv], [np.asarray(val.y)]
    if pool.has_split("local"):
        loc = pool.local
        parts_X.append(_as_matrix(loc.X, width, "local data"))
        parts_y.append(np.asarray(loc.y))
    if Xv.shape[0] == 0:
        raise ScoreError(f"pool {pool.name!r}: the validation data has no rows")
    R = np.vstack(parts_X)
    n_val = Xv.shape[0]
    # Cross-fitting: PCA axes fitted on one half of the validation data (plus local) and the
    # validation statistics taken from the other half. Axes fitted on the very rows they are
    # compared with overfit them (the top noise directions carry inflated variance, the
    # residual is too small), so that a fresh sample from the target's own distribution would
    # look far from it.
    if n_val >= _MIN_SPLIT:
        perm = rng.permutation(n_val)
        fit_rows, ref_rows = np.sort(perm[: n_val // 2]), np.sort(perm[n_val // 2 :])
        fit = np.vstack([Xv[fit_rows], *parts_X[1:]])
    else:
        fit_rows = ref_rows = np.arange(n_val)
        fit = R
    space = _Space.fit(fit, n_components, n_residual, rng)
    Zv = space.project(Xv[ref_rows])
    Zr = space.project(R)
    labels = [v for part in parts_y for v in part.tolist()]
    code: dict[Any, int] = {}
    for v in labels:
        code.setdefault(v, len(code))
    yr = np.fromiter((code[v] for v in labels), dtype=np.int64, count=len(labels))
    yv = yr[ref_rows]
    val_codes, counts = np.unique(yv, return_counts=True)
    val_stats, val_noise = _class_stats(Zv, yv, val_codes)
    mean_v = Zv.mean(axis=0)
    # Median heuristic bandwidth on (at most 500) validation rows.
    sub = Zv[rng.choice(Zv.shape[0], min(500, Zv.shape[0]), replace=False)]
    d2 = _sqdist(sub, sub)[np.triu_indices(sub.shape[0], 1)]
    positive = d2[d2 > 0]
    bandwidth = float(np.sqrt(np.median(positive))) if positive.size else 1.0
    dim = Zv.shape[1]
    rff_w = rng.normal(0.0, 1.0 / bandwidth, size=(dim, n_features_rff))
    rff_b = rng.uniform(0.0, 2 * np.pi, size=n_features_rff)
    return _Reference(
        space=space,
        Zv=Zv,
        yv=yv,
        Zr=Zr,
        Zr32=Zr.astype(np.float32),
        Zr32_m2T=np.ascontiguousarray(-2.0 * Zr.astype(np.float32).T),
        yr=yr,
        code=code,
        val_codes=val_codes,
        val_w=counts / counts.sum(),
        val_stats=val_stats,
        val_noise=val_noise,
        # Twice the total variance = mean squared distance between two validation points.
        penalty=max(2.0 * float(Zv.var(axis=0).sum()), 1e-12),
        mean_v=mean_v,
        rff_w=rff_w,
        rff_b=rff_b,
        rff_w32=rff_w.astype(np.float32),
        rff_b32=rff_b.astype(np.float32),
        rff_mean_v=_rff_mean(Zv, rff_w, rff_b),
        width=width,
    )


def _sqdist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d = (A**2).sum(axis=1)[:, None] + (B**2).sum(axis=1)[None, :] - 2.0 * A @ B.T
    return np.maximum(d, 0.0)


def _rff_mean(Z: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean random Fourier feature vector of the rows of ``Z`` (float32: cos dominates)."""
    arg = Z.astype(np.float32, copy=False) @ w.astype(np.float32, copy=False)
    arg += b.astype(np.float32, copy=False)
    np.cos(arg, out=arg)
    return np.sqrt(2.0 / w.shape[1]) * arg.mean(axis=0, dtype=np.float64)


# --- label optimal transport ----------------------------------------------------------------
@functools.cache
def _pot() -> Any:
    """POT's ``ot`` module, or None (looked up once: a failed import is not cached by Python)."""
    try:
        import ot  # type: ignore[import-not-found]
    except ImportError:
        return None
    return ot


def _small_ot(a: np.ndarray, b: np.ndarray, C: np.ndarray) -> float:
    """Exact optimal transport cost between two small discrete distributions."""
    if a.size == 1:
        return float(C[0] @ b)
    if b.size == 1:
        return float(a @ C[:, 0])
    if (
        a.size == b.size
        and np.allclose(a, b, rtol=1e-12, atol=1e-15)
        and (np.diag(C)[:, None] <= C).all()
    ):
        # Equal marginals and every row's diagonal is its minimum: moving any mass off the
        # diagonal can only cost more, so the diagonal plan is optimal (no LP needed; the
        # common case, since off-diagonal costs carry the label penalty).
        return float(a @ np.diag(C))
    ot = _pot()
    if ot is not None:  # POT's network simplex is much faster than an LP solver here
        return float(ot.emd2(a, b, C))
    from scipy.optimize import linprog

    m, n = C.shape
    A = np.zeros((m + n, m * n))
    for i in range(m):
        A[i, i * n : (i + 1) * n] = 1.0
    for j in range(n):
        A[m + j, j::n] = 1.0
    res = linprog(C.ravel(), A_eq=A, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    if not res.success:  # pragma: no cover - balanced problems are always feasible
        raise ScoreError(f"label transport failed: {res.message}")
    return float(res.fun)


def _label_codes(ref: _Reference, y: np.ndarray) -> np.ndarray:
    """The reference's code of each label; labels it never saw get codes of their own
    (negative, -1, -2, ... in order of first appearance), matching nothing."""
    try:
        # One dictionary look-up per distinct label, not per row.
        uniq, first, inverse = np.unique(y, return_index=True, return_inverse=True, equal_nan=False)
    except TypeError:  # labels that do not sort (mixed types): one look-up per row
        local: dict[Any, int] = {}
        labels = y.tolist()
        codes = np.empty(len(labels), dtype=np.int64)
        for i, v in enumerate(labels):
            c = ref.code.get(v)
            if c is None:
                c = local.setdefault(v, -1 - len(local))
            codes[i] = c
        return codes
    known = [ref.code.get(v) for v in uniq.tolist()]
    unseen = [i for i, c in enumerate(known) if c is None]
    for rank, i in enumerate(sorted(unseen, key=lambda i: first[i])):
        known[i] = -1 - rank
    return np.asarray(known, dtype=np.int64)[inverse.reshape(-1)]


def _label_costs(
    ref: _Reference, Z: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate class weights and the (K_c, K_v) class-to-class cost matrix, from the
    candidate's label codes (:func:`_label_codes`)."""
    classes, counts = np.unique(codes, return_counts=True)
    stats, noise = _class_stats(Z, codes, classes)
    C = _sqdist(stats, ref.val_stats)  # diagonal-Gaussian W2^2 = |dmu|^2 + |dsigma|^2
    # Remove the part that is sampling noise of the estimates (else small candidates and small
    # classes look far even when drawn from the target's own distribution).
    C = np.maximum(C - noise[:, None] - ref.val_noise[None, :], 0.0)
    C += ref.penalty * (classes[:, None] != ref.val_codes[None, :])
    # Class proportions: how often a class occurs is not what the score is about (a model can
    # reweight), so classes both sides have take the validation's proportions. A class only
    # the validation has must be paid for by moving mass from another label; labels only the
    # candidate has keep their share and pay the label penalty wherever they go.
    pos = np.searchsorted(ref.val_codes, classes)
    pos = np.minimum(pos, ref.val_codes.size - 1)
    shared = ref.val_codes[pos] == classes
    a = np.where(shared, 0.0, counts / counts.sum())
    if shared.any():
        w = ref.val_w[pos[shared]]
        a[shared] = (1.0 - a.sum()) * w / w.sum()
    return a, C


# --- the public API --------------------------------------------------------------------------
def _check_which(which: str | Iterable[str] | None) -> tuple[str, ...]:
    if which is None:
        return DEFAULT_SCORES
    names = (which,) if isinstance(which, str) else tuple(which)
    bad = [w for w in names if w not in SCORES]
    if bad:
        raise ScoreError(f"unknown score {bad[0]!r}: use {', '.join(SCORES)}")
    if not names:
        raise ScoreError(f"no score asked for: use some of {', '.join(SCORES)}")
    return tuple(dict.fromkeys(names))


def score_pool(
    pool: Pool,
    *,
    which: str | Iterable[str] | None = None,
    random_state: RandomState = 0,
    n_components: int = 32,
    n_residual: int = 16,
    n_features_rff: int = 256,
    k_neighbors: int = 5,
    max_ot_rows: int = 1000,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Training-free scores of every candidate of a pool with arrays.

    Parameters
    ----------
    pool : Pool
        A pool whose candidates and validation split have arrays (local data is used when
        present). Candidate arrays are read once and not kept in the pool.
    which : str or iterable of str, optional
        Scores to compute, from :data:`SCORES`; default :data:`DEFAULT_SCORES`. ``otdd`` is
        always computed, since ``score_default`` copies it.
    random_state : int, Generator or None
        Fixes the PCA fit subsample, the kernel bandwidth subsample, the random Fourier
        features and the exact-OT row subsample. Same value, same scores.
    n_components : int
        PCA axes of the shared space.
    n_residual : int
        Random directions of the space orthogonal to those axes, also kept.
    n_features_rff : int
        Random Fourier features of the ``mmd`` kernel.
    k_neighbors : int
        Neighbours voting in ``label_quality``.
    max_ot_rows : int
        Rows per side (subsampled above it) in ``otdd_exact``.
    n_jobs : int, optional
        Worker processes scoring candidates at once; default: the CPUs available. Fewer are
        started for a small pool (one per 200 candidates at most: starting one costs about a
        second). Each worker, and the serial loop, runs BLAS single-threaded, so the scores
        are identical whatever ``n_jobs``. Workers receive the candidates' lazy loaders (or
        their in-memory arrays) and read the arrays themselves.

    Returns
    -------
    pandas.DataFrame
        Indexed by dataset id, in pool order. Columns: ``group``, ``n_rows``, ``n_classes``,
        ``score_<name>`` (higher = expected better) for each score, ``dist_<name>`` (the raw
        distance, for the distance scores), ``score_default`` (a copy of ``score_otdd``) and
        ``cost_seconds`` (time spent on that candidate, reading its arrays included).
        ``frame.attrs["cost_seconds"]`` totals the time per score, plus ``"setup"`` (fitting the
        shared space, projecting candidates) and ``"load"`` (reading arrays), summed over
        workers; ``frame.attrs["wall_seconds"]`` is the elapsed time,
        ``frame.attrs["cpu_seconds"]`` the CPU time of this process and its workers' scoring,
        and ``frame.attrs["n_jobs"]`` the workers used. A candidate with no rows has NaN scores.

    Raises
    ------
    ScoreError
        The pool has no arrays (a replay pool), a candidate's features differ in width from
        the validation data's or hold NaN, an unknown score is asked for, or ``n_jobs`` is
        not a positive integer.
    MissingExtraError
        ``otdd_exact`` without POT installed.
    """
    import pandas as pd

    names = _check_which(which)
    if DEFAULT_SCORE not in names:
        names = (*names, DEFAULT_SCORE)
    if not pool.has_arrays:
        raise ScoreError(
            f"pool {pool.name!r} has no arrays (a replay/table pool): training-free scores "
            f"need the candidates' and validation features and labels"
        )
    if min(n_components, n_features_rff, k_neighbors, max_ot_rows) < 1 or n_residual < 0:
        raise ScoreError(
            "n_components, n_features_rff, k_neighbors, max_ot_rows must be >= 1, n_residual >= 0"
        )
    if "otdd_exact" in names:
        from dashsel.errors import require

        require("ot", "ot", "the otdd_exact score")  # fails here, not in a worker
    rng = check_random_state(random_state)
    workers = _check_jobs(n_jobs)
    started, cpu_started = time.perf_counter(), time.process_time()
    ref = _build_reference(pool, n_components, n_residual, n_features_rff, rng)
    job = _Job(
        ref=ref,
        names=names,
        k=min(k_neighbors, ref.Zr.shape[0]),
        ref_sq=(ref.Zr32**2).sum(axis=1),
        max_ot_rows=max_ot_rows,
        ot_seed=int(rng.integers(2**31)),
        blas_threads=_BLAS_THREADS,
    )
    setup = time.perf_counter() - started

    entries = pool.entries
    # Few candidates per worker do not pay for starting the workers.
    workers = max(1, min(workers, len(entries) // _MIN_PER_WORKER))
    # Only what scoring needs travels to a worker: ids, groups, the picklable lazy loader or
    # the in-memory arrays (never the entry's free-form metadata).
    tasks = [(pos, e.id, e.group, e.source, e.data, e.loader) for pos, e in enumerate(entries)]
    if workers > 1 and not _loaders_travel(tasks):
        workers = 1
    if workers == 1:
        parts = [_score_chunk(job, tasks)]
        worker_cpu = 0.0  # counted in this process's own CPU time
    else:
        from joblib import Parallel, delayed

        n_chunks = min(len(tasks), 4 * workers)  # a few chunks per worker balance the load
        bounds = np.linspace(0, len(tasks), n_chunks + 1).astype(int)
        parts = Parallel(n_jobs=workers, backend="loky")(
            delayed(_score_chunk)(job, tasks[lo:hi]) for lo, hi in itertools.pairwise(bounds)
        )
        worker_cpu = sum(part_cost["cpu"] for _, part_cost in parts)
    rows = [row for part_rows, _ in parts for row in part_rows]
    cost = dict.fromkeys(("load", "setup", *names), 0.0)
    for _, part_cost in parts:
        for key, value in part_cost.items():
            if key != "cpu":
                cost[key] += value
    cost["setup"] += setup

    frame = pd.DataFrame(rows).set_index("dataset")
    for name in names:
        if name in _DISTANCES:
            col = f"dist_{name}"
            if col not in frame:
                frame[col] = np.nan
            frame[f"score_{name}"] = -frame[col]
        elif f"score_{name}" not in frame:
            frame[f"score_{name}"] = np.nan
    frame["score_default"] = frame[f"score_{DEFAULT_SCORE}"]
    ordered = (
        ["group", "n_rows", "n_classes"]
        + [f"score_{n}" for n in names]
        + ["score_default"]
        + [f"dist_{n}" for n in names if n in _DISTANCES]
        + ["cost_seconds"]
    )
    frame = frame[ordered]
    cost["total"] = float(sum(cost.values()))
    frame.attrs["cost_seconds"] = cost
    frame.attrs["wall_seconds"] = time.perf_counter() - started
    frame.attrs["cpu_seconds"] = time.process_time() - cpu_started + worker_cpu
    frame.attrs["n_jobs"] = workers
    frame.attrs["pool"] = pool.name
    frame.attrs["random_state"] = random_state if isinstance(random_state, int) else None
    return frame


#: BLAS threads while scoring candidates (per worker); see :func:`_score_chunk`.
_BLAS_THREADS = 1
#: Candidates per worker below which fewer workers are used (starting a worker process costs
#: about a second; a candidate of 10^3 rows is scored in milliseconds).
_MIN_PER_WORKER = 200


def _loaders_travel(tasks: Sequence[_Task]) -> bool:
    """Whether the candidates' loaders can be sent to worker processes (warns if not).

    The manifest's loaders can; a user's closure over, say, an open file cannot, and is then
    run in this process rather than failing with a pickling traceback.
    """
    # The pickler the workers are fed with (cloudpickle where installed, else pickle).
    from joblib.externals.loky.backend.reduction import dumps

    try:
        dumps([task[5] for task in tasks])
    except Exception as exc:  # pickling raises many types; any means "cannot travel"
        warnings.warn(
            f"scoring in one process: the candidates' loaders cannot be sent to worker "
            f"processes ({type(exc).__name__}: {exc})",
            stacklevel=3,
        )
        return False
    return True


def _check_jobs(n_jobs: int | None) -> int:
    from dashsel.executors import available_cpus

    if n_jobs is None:
        return available_cpus()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs < 1:
        raise ScoreError(f"n_jobs must be a positive integer or None, got {n_jobs!r}")
    return int(n_jobs)


@dataclass
class _Job:
    """Everything a worker needs to score candidates (small: the projected reference)."""

    ref: _Reference
    names: tuple[str, ...]
    k: int
    ref_sq: np.ndarray  # squared norms of ref.Zr32's rows
    max_ot_rows: int
    ot_seed: int
    blas_threads: int


_Task = tuple[int, str, str, "str | None", Any, Any]  # pos, id, group, source, data, loader


def _score_chunk(
    job: _Job, tasks: Sequence[_Task]
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows of scores for some candidates, and the time spent per score (in a worker or not).

    BLAS runs single-threaded: one candidate's matrices are too small for threads to pay
    (``benchmarks/scores_scale.py --blas-threads``: two OpenBLAS threads made scoring several
    times slower, CPU and wall, on 2 cores), and parallel workers must not oversubscribe the
    cores. One thread also makes the results identical whatever the number of workers.
    """
    from threadpoolctl import threadpool_limits

    cpu_started = time.process_time()
    ot = _pot() if "otdd_exact" in job.names else None
    ref = job.ref
    cost = dict.fromkeys(("load", "setup", *job.names), 0.0)
    rows: list[dict[str, Any]] = []
    with threadpool_limits(limits=job.blas_threads):
        for pos, did, group, source, data, loader in tasks:
            t_start = time.perf_counter()
            # Read without caching in the entry: 10^4 candidates must not all stay in memory.
            if data is None:
                data = loader()
            what = f"dataset {did!r}" + (f" ({source})" if source else "")
            X = _as_matrix(data.X, ref.width, what)
            y = np.asarray(data.y)
            del data
            t_loaded = time.perf_counter()
            cost["load"] += t_loaded - t_start
            row: dict[str, Any] = {
                "dataset": did,
                "group": group,
                "n_rows": int(X.shape[0]),
                "n_classes": int(np.unique(y).size) if y.size else 0,
            }
            if X.shape[0] == 0:
                rows.append({**row, "cost_seconds": time.perf_counter() - t_start})
                continue
            # The projection and label codes serve every score; count them once, under setup.
            Z = ref.space.project(X)
            Z32 = Z.astype(np.float32)
            codes = _label_codes(ref, y)
            t = time.perf_counter()
            cost["setup"] += t - t_loaded
            for name in job.names:
                if name == "mean":
                    row["dist_mean"] = float(np.linalg.norm(Z.mean(axis=0) - ref.mean_v))
                elif name == "mmd":
                    diff = _rff_mean(Z32, ref.rff_w32, ref.rff_b32) - ref.rff_mean_v
                    row["dist_mmd"] = float(np.linalg.norm(diff))
                elif name == "otdd":
                    a, C = _label_costs(ref, Z, codes)
                    row["dist_otdd"] = float(np.sqrt(max(_small_ot(a, ref.val_w, C), 0.0)))
                elif name == "label_quality":
                    row["score_label_quality"] = _knn_agreement(ref, job.ref_sq, Z32, codes, job.k)
                elif name == "otdd_exact":
                    row["dist_otdd_exact"] = _otdd_exact(
                        ot,
                        ref,
                        Z,
                        codes,
                        job.max_ot_rows,
                        np.random.default_rng([job.ot_seed, pos]),
                    )
                now = time.perf_counter()
                cost[name] += now - t
                t = now
            row["cost_seconds"] = time.perf_counter() - t_start
            rows.append(row)
    cost["cpu"] = time.process_time() - cpu_started
    return rows, cost


def _knn_agreement(
    ref: _Reference, ref_sq: np.ndarray, Z32: np.ndarray, codes: np.ndarray, k: int
) -> float:
    # float32: only the order of distances matters here. The candidate row's own squared norm
    # is the same for every neighbour: it is left out while choosing them, added after.
    e = Z32 @ ref.Zr32_m2T  # -2 z.r (scaling by -2 is exact: same bits as multiplying after)
    e += ref_sq[None, :]
    n = Z32.shape[0]
    if k >= e.shape[1]:
        nn = np.argsort(e, axis=1)
        near_e = np.take_along_axis(e, nn, 1)
    elif k <= 16:
        # A few passes of argmin are several times faster than argpartition for small k.
        rows = np.arange(n)
        nn = np.empty((n, k), dtype=np.intp)
        near_e = np.empty((n, k), dtype=e.dtype)
        for j in range(k):
            nn[:, j] = hit = e.argmin(axis=1)
            near_e[:, j] = e[rows, hit]
            e[rows, hit] = np.inf
    else:
        nn = np.argpartition(e, k - 1, axis=1)[:, :k]
        near_e = np.take_along_axis(e, nn, 1)
    near_e += (Z32**2).sum(axis=1)[:, None]  # the squared distances themselves
    n_codes = len(ref.code)
    cell = (np.arange(n)[:, None] * n_codes + ref.yr[nn]).ravel()  # (row, voted label)
    tally = np.bincount(cell, minlength=n * n_codes).reshape(n, n_codes)
    near = np.bincount(cell, near_e.ravel(), n * n_codes)
    # Ties go to the label whose voters are nearest on average (deterministic, order-free):
    # the tie-break term lies in [0, 0.5], below one vote.
    mean_d = np.where(tally > 0, near.reshape(n, n_codes) / np.maximum(tally, 1), 0.0)
    top = mean_d.max(axis=1, keepdims=True)
    pred = np.argmax(np.where(tally > 0, tally - 0.5 * mean_d / (top + 1e-300), -1.0), axis=1)
    # Labels the reference never saw have negative codes: never predicted.
    return float(np.mean(pred == codes))


def _otdd_exact(
    ot: Any,
    ref: _Reference,
    Z: np.ndarray,
    codes: np.ndarray,
    max_rows: int,
    rng: np.random.Generator,
) -> float:
    _, C = _label_costs(ref, Z, codes)
    classes = np.unique(codes)
    Zv, yv = ref.Zv, ref.yv
    if Z.shape[0] > max_rows:
        keep = np.sort(rng.choice(Z.shape[0], max_rows, replace=False))
        Z, codes = Z[keep], codes[keep]
    if Zv.shape[0] > max_rows:
        keep = np.sort(rng.choice(Zv.shape[0], max_rows, replace=False))
        Zv, yv = Zv[keep], yv[keep]
    ci = np.searchsorted(classes, codes)
    vi = np.searchsorted(ref.val_codes, yv)
    M = _sqdist(Z, Zv) + C[ci[:, None], vi[None, :]]
    a = np.full(Z.shape[0], 1.0 / Z.shape[0])
    b = np.full(Zv.shape[0], 1.0 / Zv.shape[0])
    return float(np.sqrt(max(float(ot.emd2(a, b, M, numItermax=10**7)), 0.0)))


def covariates_from_scores(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> np.ndarray:
    """Standardised covariates (n_datasets, p) from ``score_*`` columns, in the frame's order.

    Each column is centred and divided by its standard deviation (a constant column gives
    zeros), so a prior coefficient per column is on a common scale; a missing value (NaN, e.g.
    a candidate without rows) becomes 0, the average. Works on the frame :func:`score_pool`
    returns and on a replay pool's table of datasets with ``score_*`` columns.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per dataset.
    columns : sequence of str, optional
        Score columns to use; default every ``score_*`` column except ``score_default``.
    """
    if columns is None:
        columns = [c for c in frame.columns if str(c).startswith("score_") and c != "score_default"]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ScoreError(f"no score column {missing[0]!r} (have: {', '.join(map(str, frame))})")
    if not columns:
        return np.zeros((len(frame), 0))
    X = frame[list(columns)].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        mu = np.nanmean(X, axis=0) if len(X) else np.zeros(X.shape[1])
        sd = np.nanstd(X, axis=0) if len(X) else np.ones(X.shape[1])
    mu = np.nan_to_num(mu)
    sd = np.where(np.isfinite(sd) & (sd > 1e-12), sd, np.inf)
    return np.nan_to_num((X - mu) / sd, nan=0.0, posinf=0.0, neginf=0.0)


def pool_covariates(
    pool: Pool,
    *,
    which: Sequence[str] = DEFAULT_COVARIATES,
    random_state: RandomState = 0,
) -> np.ndarray:
    """Prior covariates for an engine: standardised scores, (n_datasets, p), in pool order.

    Column ``j`` is the standardised ``score_<which[j]>`` (higher = expected better), see
    :func:`covariates_from_scores`. Raises :class:`ScoreError` for a pool without arrays.
    """
    frame = score_pool(pool, which=which, random_state=random_state)
    return covariates_from_scores(frame, [f"score_{w}" for w in which])


__all__ = [
    "DEFAULT_COVARIATES",
    "DEFAULT_SCORE",
    "DEFAULT_SCORES",
    "SCORES",
    "ScoreError",
    "covariates_from_scores",
    "pool_covariates",
    "score_pool",
]
