"""Instance-level selection baselines: pick single samples from the union of the candidates.

The DaSH paper (Zhou et al., arXiv 2512.10952, §4) compares its dataset-level selection with
instance-level, label-free selectors adapted to the pool: each picks individual samples from
the union of all candidate datasets, and the local model is then trained on its local data plus
the picked samples. Every selector here has the signature::

    selector(candidates, budget, *, local=None, random_state=None, **hyperparameters)
        -> ndarray of distinct indices into candidates, of length min(budget, len(candidates))

where ``candidates`` holds the pool's feature vectors (one row per sample). The budget is set by
the caller; the study harness gives each selector as many samples as the datasets DaSH chose
hold (see docs/baselines.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from dashsel.errors import DashselError
from dashsel.random_state import RandomState
from dashsel_bench.baselines.activeft import activeft_select
from dashsel_bench.baselines.bilaf import bilaf_select
from dashsel_bench.baselines.coresets import coresets_select
from dashsel_bench.baselines.freesel import freesel_select
from dashsel_bench.baselines.random_samples import random_select

SampleSelector = Callable[..., np.ndarray]

#: Every selector by the name the CLI and the study harness use.
SAMPLE_SELECTORS: dict[str, SampleSelector] = {
    "coresets": coresets_select,
    "activeft": activeft_select,
    "bilaf": bilaf_select,
    "freesel": freesel_select,
    "random-samples": random_select,
}

_COMMON = frozenset({"candidates", "budget", "local", "random_state"})


def hyperparameters(method: str) -> dict[str, Any]:
    """A selector's own hyperparameters and their defaults, e.g. for a config file or ``--help``."""
    fn = _lookup(method)
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if name not in _COMMON
    }


def select_samples(
    method: str,
    candidates: np.ndarray,
    budget: int,
    *,
    local: np.ndarray | None = None,
    random_state: RandomState = None,
    **params: Any,
) -> np.ndarray:
    """Run the selector named ``method`` (a key of :data:`SAMPLE_SELECTORS`).

    Parameters
    ----------
    method : str
        ``"coresets"``, ``"activeft"``, ``"bilaf"``, ``"freesel"`` or ``"random-samples"``.
    candidates : ndarray of shape (n, d)
        Feature vectors of the pool's samples (finite, 2-D).
    budget : int
        Number of samples to pick, >= 1.
    local : ndarray of shape (m, d), optional
        Feature vectors of the local training data; used by the selectors whose original has
        a labelled or initial set (core-sets, FreeSel), checked and ignored by the others.
    random_state : int, Generator, SeedSequence or None
        Same seed, same input: same selection.
    **params
        The selector's hyperparameters (see :func:`hyperparameters`).

    Returns
    -------
    ndarray of int, shape (min(budget, n),)
        Distinct indices into ``candidates``.

    Raises
    ------
    DashselError
        Unknown method or hyperparameter, budget < 1, features that are not a finite 2-D
        array, or a hyperparameter out of range.
    """
    fn = _lookup(method)
    allowed = hyperparameters(method)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise DashselError(
            f"{method} has no hyperparameter {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(allowed) or 'none'}"
        )
    return fn(candidates, budget, local=local, random_state=random_state, **params)


def _lookup(method: str) -> SampleSelector:
    try:
        return SAMPLE_SELECTORS[method]
    except KeyError:
        raise DashselError(
            f"unknown sample selector {method!r}: use one of {', '.join(SAMPLE_SELECTORS)}"
        ) from None


__all__ = [
    "SAMPLE_SELECTORS",
    "SampleSelector",
    "activeft_select",
    "bilaf_select",
    "coresets_select",
    "freesel_select",
    "hyperparameters",
    "random_select",
    "select_samples",
]
