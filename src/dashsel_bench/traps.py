"""Trap datasets in the target's own look, shared by the suites' ``make_pool(traps=True)``.

Training-free scores that only ask "does this candidate look like the target?" rank such
datasets on top; the traps check whether a method lets its evaluations overrule them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dashsel.pool import ArraySplit, DatasetEntry

__all__ = ["TRAP_CLASSES", "TRAP_KINDS", "TRAP_NOISE", "TRAP_WRONG", "make_traps"]

#: Trap datasets in the target's own look (``make_pool(traps=True)``).
TRAP_KINDS: tuple[str, ...] = ("mislabelled", "fewclass", "duplicate")
#: Share of a mislabelled trap's labels replaced by a wrong class.
TRAP_WRONG = 0.7
#: Classes a few-class trap keeps.
TRAP_CLASSES = 3
#: Std of the feature noise of a near-duplicate, relative to each feature's std.
TRAP_NOISE = 0.05


def make_traps(
    entries: Sequence[DatasetEntry],
    target: str,
    X: np.ndarray,
    y: np.ndarray,
    *,
    n_subsets: int,
    size: int,
    domains: Sequence[str],
    n_classes: int,
    seed: int,
    source: str,
    extra: Mapping[str, object] | None = None,
) -> list[DatasetEntry]:
    """Trap datasets in the target's own look, for a suite's ``make_pool(traps=True)``.

    Three kinds, ``max(2, n_subsets // 2)`` datasets each, ``size`` rows each:

    * ``mislabelled``: rows of the target's candidate data (``X``, ``y``) with
      :data:`TRAP_WRONG` of the labels replaced by another class: they look exactly like the
      target, and a label-free score cannot tell them apart;
    * ``fewclass``: target rows of a few classes only (:data:`TRAP_CLASSES`, at most
      ``n_classes - 1``: one class of a two-class task), labels correct;
    * ``duplicate``: a near-copy of one of the target's honest candidates in ``entries``
      (features plus Gaussian noise of :data:`TRAP_NOISE` times each feature's std): as good
      alone as the original, but adds nothing next to it.

    The first half (rounded up) of each kind forms a group of its own, ``trap-<kind>``; the
    others are mixed into the honest groups (``meta["host"]``, cycling over ``domains``),
    so a group's evaluated members do not vouch for all of it. Seeded by ``seed``.
    """
    rng = np.random.default_rng([seed, 9191])
    extra = dict(extra or {})
    honest_target = [e for e in entries if e.meta.get("domain") == target]
    n_each = max(2, n_subsets // 2)
    n_own = (n_each + 1) // 2
    sd = X.std(axis=0) if len(X) else np.zeros(X.shape[1:])
    out: list[DatasetEntry] = []
    for ki, kind in enumerate(TRAP_KINDS):
        for j in range(n_each):
            host = None if j < n_own else domains[(ki + j - n_own) % len(domains)]
            meta: dict[str, object] = {
                "domain": f"trap-{kind}",
                "subset": j,
                "relevant": False,
                "n": size,
                "trap": kind,
                **extra,
            }
            if kind == "mislabelled":
                idx = rng.choice(len(y), size=size, replace=size > len(y))
                Xi, yi = X[idx], y[idx].copy()
                wrong = rng.random(size) < TRAP_WRONG
                shift = rng.integers(1, n_classes, size=int(wrong.sum()))
                yi[wrong] = (yi[wrong] + shift) % n_classes  # always another class
            elif kind == "fewclass":
                n_keep = max(1, min(TRAP_CLASSES, n_classes - 1))
                keep = rng.choice(n_classes, size=n_keep, replace=False)
                pool_idx = np.flatnonzero(np.isin(y, keep))
                idx = rng.choice(pool_idx, size=size, replace=size > pool_idx.size)
                Xi, yi = X[idx], y[idx].copy()
                meta["classes"] = sorted(int(c) for c in keep)
            else:
                original = honest_target[j % len(honest_target)]
                data = original.load()
                noise = rng.normal(size=data.X.shape) * (TRAP_NOISE * sd)
                Xi = (data.X + noise).astype(data.X.dtype, copy=False)
                yi = np.asarray(data.y).copy()
                meta["n"] = len(yi)
                meta["copy_of"] = original.id
            if host is not None:
                meta["host"] = host
            out.append(
                DatasetEntry(
                    f"trap-{kind}{j}",
                    host if host is not None else f"trap-{kind}",
                    data=ArraySplit(Xi, yi),
                    source=f"{source} (trap: {kind})",
                    meta=meta,
                )
            )
    return out
