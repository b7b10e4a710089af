"""A small synthetic pool whose right answer is known: a miniature of the paper's Digit-Five.

The task is Gaussian classification. One group (the *relevant* one, ``meta["relevant"]``) holds
datasets drawn from the target distribution, the one the local, validation and test data come
from: adding them helps, since the local data are few. Every other group is a shifted source
whose class means are assigned to the wrong labels (a label permutation) and moved by a
group-specific offset: adding them hurts, as other domains do on Digit-Five. Within a group,
datasets vary: each has its own small shift and a different share of noisy labels.

Used by ``make demo`` and by tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dashsel.manifest import save_pool
from dashsel.pool import ArraySplit, DatasetEntry, Pool
from dashsel.random_state import derive_seed
from dashsel.trial import TrialSpec

#: Label-noise share of the j-th dataset in a group (cycled), the within-group variation.
_LABEL_NOISE = (0.0, 0.05, 0.15)
#: Norm of every class mean (noise has unit variance per feature).
_SEPARATION = 2.0
#: Share of samples with permuted labels, from the mildest to the worst non-relevant group.
_SWAP = (0.35, 0.65)
#: Norm of a non-relevant group's feature shift.
_OFFSET = 1.0


def make_toy_pool(
    n_groups: int = 4,
    datasets_per_group: int = 3,
    n_features: int = 10,
    n_per_dataset: int = 60,
    seed: int = 0,
    *,
    n_classes: int = 3,
    n_local: int = 9,
    n_validation: int = 300,
    n_test: int = 300,
    relevant_group: int | None = None,
) -> Pool:
    """Build the toy pool in memory.

    Parameters
    ----------
    n_groups : int
        Number of groups (sources); one of them is relevant. At least 1.
    datasets_per_group : int
        Datasets per group.
    n_features : int
        Feature dimension (at least 2).
    n_per_dataset : int
        Samples per candidate dataset.
    seed : int
        Fixes everything (distributions, samples, which group is relevant).
    n_classes : int
        Number of classes (at least 2).
    n_local, n_validation, n_test : int
        Sizes of the target-distribution splits; ``n_local`` is small on purpose.
    relevant_group : int, optional
        0-based index of the relevant group; drawn from ``seed`` when None.

    Returns
    -------
    Pool
        Groups ``g0``, ``g1``, ...; dataset ids ``g0-0``, ``g0-1``, ...; entries carry
        ``meta = {"relevant", "domain", "subset", "label_noise"}``.
    """
    if n_groups < 1 or datasets_per_group < 1:
        raise ValueError("n_groups and datasets_per_group must be at least 1")
    if n_classes < 2 or n_features < 2:
        raise ValueError("n_classes and n_features must be at least 2")
    if min(n_per_dataset, n_local, n_validation, n_test) < n_classes:
        raise ValueError("every split needs at least n_classes samples")
    rng = np.random.default_rng(seed)
    relevant = int(rng.integers(n_groups)) if relevant_group is None else int(relevant_group)
    if not 0 <= relevant < n_groups:
        raise ValueError(f"relevant_group must be in [0, {n_groups}), got {relevant_group}")

    # Class means far enough apart that the Bayes accuracy is high, close enough that a dozen
    # local samples leave a clear gap to fill.
    means = rng.normal(0.0, 1.0, size=(n_classes, n_features))
    means *= _SEPARATION / np.linalg.norm(means, axis=1, keepdims=True)

    def draw(n: int, offset: np.ndarray, noise: float = 0.0, swap: float = 0.0) -> ArraySplit:
        y = np.arange(n) % n_classes  # balanced, so every split holds every class
        rng.shuffle(y)
        X = means[y] + offset + rng.normal(0.0, 1.0, size=(n, n_features))
        # ``swap``: systematic label permutation (another domain's labelling); ``noise``:
        # uniformly random labels (a sloppier dataset of the same domain).
        y = np.where(rng.random(n) < swap, (y + 1) % n_classes, y)
        y = np.where(rng.random(n) < noise, rng.integers(0, n_classes, size=n), y)
        return ArraySplit(X.astype(np.float64), y.astype(np.int64))

    zero = np.zeros(n_features)
    others = [g for g in range(n_groups) if g != relevant]
    entries = []
    for g in range(n_groups):
        name = f"g{g}"
        if g == relevant:
            swap, offset = 0.0, zero
        else:
            # Sources differ in how much they hurt: a growing share of samples carry permuted
            # labels, and every source is shifted by its own offset.
            rank = others.index(g)
            swap = _SWAP[0] + (_SWAP[1] - _SWAP[0]) * rank / max(1, len(others) - 1)
            direction = rng.normal(size=n_features)
            offset = _OFFSET * direction / np.linalg.norm(direction)
        for j in range(datasets_per_group):
            noise = _LABEL_NOISE[j % len(_LABEL_NOISE)]
            jitter = rng.normal(0.0, 0.15 / np.sqrt(n_features), size=n_features)
            data = draw(n_per_dataset, offset + jitter, noise, swap)
            meta = {"relevant": g == relevant, "domain": name, "subset": j, "label_noise": noise}
            entries.append(DatasetEntry(f"{name}-{j}", name, data=data, meta=meta))
    return Pool(
        entries,
        local=draw(n_local, zero),
        validation=draw(n_validation, zero),
        test=draw(n_test, zero),
        name=f"toy-{seed}",
    )


def write_toy_manifest(
    directory: str | Path, *, evaluator: dict[str, Any] | None = None, **pool_kwargs: Any
) -> Path:
    """Write the toy pool's arrays and a ``manifest.toml`` to ``directory``; return its path.

    ``evaluator`` is the ``[evaluator]`` table (default: logistic); other keyword arguments go
    to :func:`make_toy_pool`. The result works with ``dashsel run``.
    """
    pool = make_toy_pool(**pool_kwargs)
    return save_pool(
        pool,
        directory,
        evaluator=evaluator or {"kind": "logistic"},
        description="dashsel toy pool: groups with meta.relevant = true help, others hurt",
    )


def write_toy_table(
    directory: str | Path, *, n_seeds: int = 3, seed: int = 0, **pool_kwargs: Any
) -> Path:
    """Write a replay table of toy rewards plus a ``kind = "table"`` manifest; return its path.

    The rewards are real: for each dataset, ``n_seeds`` bootstrap trainings of the logistic
    evaluator on the toy pool (row k of a dataset is seed k). The manifest lists datasets
    without array files.
    """
    import pandas as pd

    from dashsel.evaluators.sklearn import LogisticEvaluator
    from dashsel.manifest import write_manifest

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pool = make_toy_pool(seed=seed, **pool_kwargs)
    evaluator = LogisticEvaluator(pool, bootstrap=True)
    rows = []
    for k in range(n_seeds):
        for n, e in enumerate(pool.entries):
            spec = TrialSpec(number=n, dataset_id=e.id, seed=derive_seed(seed, k, n), pull=k)
            rows.append({"dataset": e.id, "reward": evaluator.evaluate(spec), "seed": k})
    pd.DataFrame(rows).to_csv(directory / "rewards.csv", index=False)
    doc = {
        "pool": {"name": f"{pool.name}-table", "description": "dashsel toy pool, replayed"},
        "evaluator": {"kind": "table", "path": "rewards.csv"},
        "datasets": [{"id": e.id, "group": e.group, "meta": dict(e.meta)} for e in pool.entries],
    }
    return write_manifest(directory / "manifest.toml", doc)
