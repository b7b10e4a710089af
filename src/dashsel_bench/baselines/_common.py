"""Input checks and small numeric helpers shared by the instance-level selectors."""

from __future__ import annotations

import numbers

import numpy as np

from dashsel.errors import DashselError

#: Rows per block when a (rows x n) similarity or distance matrix is built in pieces. Bounds
#: the temporary memory to about ``CHUNK * n * 8`` bytes whatever the pool size.
CHUNK = 1024


def check_features(x: object, name: str) -> np.ndarray:
    """A finite, non-empty 2-D float64 array, or a :class:`DashselError` naming ``name``."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DashselError(f"{name} must be a numeric array: {exc}") from exc
    if arr.ndim != 2:
        raise DashselError(
            f"{name} must be a 2-D array (samples x features), got {arr.ndim}-D shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DashselError(f"{name} is empty (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise DashselError(f"{name} holds NaN or infinite values")
    return arr


def check_local(local: object, n_features: int) -> np.ndarray | None:
    """None for no local data (None or zero rows), else checked features of matching width."""
    if local is None:
        return None
    arr = np.asarray(local)
    if arr.ndim == 2 and arr.shape[0] == 0:
        return None
    arr = check_features(arr, "local")
    if arr.shape[1] != n_features:
        raise DashselError(f"local has {arr.shape[1]} features but candidates have {n_features}")
    return arr


def check_budget(budget: object) -> int:
    """A positive int budget (bools and floats are refused: they are always a caller's slip)."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise DashselError(f"budget must be an integer, got {budget!r}")
    if budget < 1:
        raise DashselError(f"budget must be at least 1, got {budget}")
    return int(budget)


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (or >= 0 with ``allow_zero``), else a DashselError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise DashselError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise DashselError(f"{name} must be {bound}, got {value}")
    return float(value)


def check_count(value: object, name: str, minimum: int = 1) -> int:
    """An int >= ``minimum``, else a DashselError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DashselError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows (an empty text document) stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    # Dividing by 1 leaves a zero row at zero instead of producing NaN: such a sample has
    # cosine similarity 0 with everything, which is the natural reading of "no signal".
    return x / np.where(norms > 0, norms, 1.0)


def all_indices(n: int) -> np.ndarray:
    """Every index, for a budget that covers the whole pool."""
    return np.arange(n, dtype=np.intp)


def greedy_distinct_argmax(sim: np.ndarray, taken: np.ndarray, out: list[int]) -> None:
    """For each row of ``sim`` in order, append the best column not yet taken, and take it.

    ``taken`` (bool, one per column) is updated in place. Rows are processed in order so that
    an earlier row wins a contested column, as in the reference ActiveFT code.
    """
    for row in sim:
        j = int(np.argmax(row))
        if taken[j]:
            # Rare path (two parameters nearest to the same sample): mask and retry once.
            row = np.where(taken, -np.inf, row)
            j = int(np.argmax(row))
        taken[j] = True
        out.append(j)
