"""Pools: the task's classes, candidates that bring a class the local data lacks, label rows
outside the task dropped with one warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dashsel import select
from dashsel.errors import DataError, LabelWarning
from dashsel.evaluators import LogisticEvaluator
from dashsel.pool import Pool
from dashsel.trial import TrialSpec

CENTRES = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])


def blobs(classes: list[int], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points per class around well separated centres."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array(classes), n)
    return CENTRES[y] + rng.normal(scale=0.5, size=(len(y), 2)), y


def pool_without_class_2_locally(**extra: tuple[np.ndarray, np.ndarray]) -> Pool:
    datasets = {"with2": blobs([2], 20, 1), "without2": blobs([0, 1], 10, 2), **extra}
    return Pool.from_arrays(
        datasets,
        {d: "g" for d in datasets},
        local=blobs([0, 1], 10, 3),
        validation=blobs([0, 1, 2], 10, 4),
        test=blobs([0, 1, 2], 10, 5),
    )


def test_classes_are_those_of_local_validation_and_test() -> None:
    pool = pool_without_class_2_locally()
    assert pool.classes == {0, 1, 2}
    assert Pool.from_arrays({"a": blobs([0], 2, 0)}, {"a": "g"}).classes is None


def test_a_class_missing_locally_is_learnt_from_a_candidate() -> None:
    pool = pool_without_class_2_locally()
    ev = LogisticEvaluator(pool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no row is outside the task here
        gain = ev.evaluate(TrialSpec(0, "with2", 0, 0))
        plain = ev.evaluate(TrialSpec(1, "without2", 0, 0))
    # Local data alone can never predict class 2 (a third of validation); with2 teaches it.
    assert plain <= 2 / 3 + 1e-9
    assert gain > 0.95
    result = select(pool, "roundrobin", ev, budget=4, seed=0)
    assert result.selected == ("with2",)
    assert result.test_accuracy is not None and result.test_accuracy > result.local_accuracy


def test_rows_outside_the_task_are_dropped_with_one_warning() -> None:
    X, y = blobs([0, 1], 5, 6)
    y[:3] = 9
    pool = pool_without_class_2_locally(odd=(X, y))
    with pytest.warns(LabelWarning, match=r"dataset 'odd'.*dropped 3 of 10 rows.*\[9\]"):
        data = pool.dataset("odd")
    assert len(data) == 7 and 9 not in data.y
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pool.dataset("odd") is data  # warned once, kept


def test_a_candidate_with_no_task_rows_is_an_error_naming_it() -> None:
    pool = pool_without_class_2_locally(alien=blobs([0], 4, 7))
    pool.dataset("alien")  # class 0 is the task's
    X, _ = blobs([0], 4, 7)
    pool = pool_without_class_2_locally(alien=(X, np.full(4, 7)))
    with pytest.raises(DataError, match=r"dataset 'alien' has no rows left.*\[7\]"):
        pool.check_labels()
