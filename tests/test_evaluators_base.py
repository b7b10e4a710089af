"""Evaluator attributes the run and the engine rely on: reward_range and deterministic."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier

from dashsel.errors import ManifestError
from dashsel.evaluators import make_evaluator
from dashsel.evaluators.base import Evaluator
from dashsel.evaluators.sklearn import LogisticEvaluator, SklearnEvaluator
from dashsel.evaluators.table import TableEvaluator
from dashsel.hierarchy import Hierarchy
from dashsel.pool import Pool
from dashsel.toy import make_toy_pool


@pytest.fixture(scope="module")
def pool() -> Pool:
    return make_toy_pool(n_groups=2, datasets_per_group=2, n_per_dataset=20, seed=0)


def test_accuracy_evaluators_declare_zero_to_one(pool) -> None:
    assert LogisticEvaluator(pool).reward_range == (0.0, 1.0)
    assert SklearnEvaluator(pool, KNeighborsClassifier()).reward_range == (0.0, 1.0)
    table = TableEvaluator(pd.DataFrame({"dataset": ["a"], "reward": [7.0]}))
    assert table.reward_range is None  # replayed rewards: any finite number


def test_deterministic_defaults(pool) -> None:
    assert LogisticEvaluator(pool).deterministic is True
    assert LogisticEvaluator(pool, bootstrap=True).deterministic is False
    assert SklearnEvaluator(pool, KNeighborsClassifier()).deterministic is True
    # A seeded estimator gets each trial's seed: its rewards vary with the trial.
    assert SklearnEvaluator(pool, RandomForestClassifier()).deterministic is False
    one = TableEvaluator(pd.DataFrame({"dataset": ["a", "b"], "reward": [0.1, 0.2]}))
    several = TableEvaluator(pd.DataFrame({"dataset": ["a", "a"], "reward": [0.1, 0.2]}))
    assert one.deterministic is True and several.deterministic is False

    class Custom(Evaluator):
        def evaluate(self, spec):
            return 0.0

        def describe(self):
            return {}

    assert Custom().deterministic is False

    class Declared(Custom):
        deterministic = True

    assert Declared().deterministic is True


def test_manifest_overrides_deterministic(pool, tmp_path) -> None:
    ev = make_evaluator({"kind": "logistic", "deterministic": False}, pool, tmp_path)
    assert ev.deterministic is False
    (tmp_path / "r.csv").write_text("dataset,reward\nd0,0.1\nd0,0.2\n")
    replay = Pool.replay_only(Hierarchy.from_mapping({"g": ["d0"]}))
    table = make_evaluator(
        {"kind": "table", "path": "r.csv", "deterministic": True}, replay, tmp_path
    )
    assert table.deterministic is True
    assert (
        make_evaluator({"kind": "table", "path": "r.csv"}, replay, tmp_path).deterministic is False
    )
    with pytest.raises(ManifestError, match="deterministic"):
        make_evaluator({"kind": "logistic", "deterministic": "yes"}, pool, tmp_path)


def test_evaluate_set_trains_on_the_whole_set(pool, tmp_path) -> None:
    from dashsel.evaluators.cache import CachedEvaluator
    from dashsel.sets import SetError

    ev = LogisticEvaluator(pool)
    ids = list(pool.dataset_ids[:3])
    assert ev.evaluate_set(ids, 3) == ev.score(ids, 3, "validation")
    cached = CachedEvaluator(ev, tmp_path / "c.sqlite")
    assert cached.evaluate_set(ids, 3) == ev.evaluate_set(ids, 3)
    table = TableEvaluator(pd.DataFrame({"dataset": ["a"], "reward": [0.5]}))
    with pytest.raises(SetError, match="cannot evaluate a set"):
        table.evaluate_set(["a"], 0)
