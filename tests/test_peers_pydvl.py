"""pyDVL Banzhaf peer: the budget is a hard cap, values are reproducible and sensible."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import pytest

from dashsel.errors import DashselError, MissingExtraError
from dashsel.hierarchy import Hierarchy
from dashsel.peers import PeerSelection, pydvl_banzhaf_select

HIER = Hierarchy.from_mapping({"A": ["a1", "a2"], "B": ["b1", "b2"], "C": ["c1", "c2"]})
LOCAL = 0.5
# Additive utility: local accuracy plus each added dataset's effect. b1 is obviously best,
# c2 hurts.
EFFECT = {"a1": 0.02, "a2": 0.03, "b1": 0.30, "b2": 0.01, "c1": 0.04, "c2": -0.10}


class AdditiveEvaluator:
    """Stand-in for a trainable evaluator: score(S) = local + sum of effects (+ seeded noise).

    Records every call so tests can count real evaluations.
    """

    can_train = True

    def __init__(self, effect: dict[str, float] = EFFECT, noise: float = 0.005) -> None:
        self.effect = effect
        self.noise = noise
        self.calls: list[tuple[tuple[str, ...], int, str]] = []

    def score(self, dataset_ids: Sequence[str], seed: int, split: str = "test") -> float:
        self.calls.append((tuple(dataset_ids), seed, split))
        noise = np.random.default_rng(seed).normal(0.0, self.noise) if self.noise else 0.0
        return LOCAL + sum(self.effect[d] for d in dataset_ids) + float(noise)


@pytest.mark.parametrize("budget", [1, 2, 7, 25])
def test_never_more_evaluations_than_budget(budget):
    ev = AdditiveEvaluator()
    sel = pydvl_banzhaf_select(HIER, ev, budget, seed=0)
    assert sel.n_evaluations == len(ev.calls) <= budget
    # Every evaluation is used: the sampler stops at the budget, not before.
    assert sel.n_evaluations == budget
    assert {split for _, _, split in ev.calls} == {"validation"}
    assert len({seed for _, seed, _ in ev.calls}) == budget  # each evaluation its own seed


def test_same_seed_same_values_and_seed_matters():
    a = pydvl_banzhaf_select(HIER, AdditiveEvaluator(), 30, seed=4)
    b = pydvl_banzhaf_select(HIER, AdditiveEvaluator(), 30, seed=4)
    c = pydvl_banzhaf_select(HIER, AdditiveEvaluator(), 30, seed=5)
    assert a.values == b.values and a.selected == b.selected
    assert a.values != c.values


def test_finds_the_obviously_best_dataset():
    sel = pydvl_banzhaf_select(HIER, AdditiveEvaluator(), 40, k=1, seed=1)
    assert isinstance(sel, PeerSelection)
    assert sel.selected == ("b1",)
    assert sel.groups == ("B",)
    assert list(sel.values) == list(HIER.dataset_ids)
    # For an additive utility the Banzhaf value of a dataset is its effect.
    assert sel.values["b1"] == pytest.approx(0.30, abs=0.08)
    assert min(sel.values, key=sel.values.get) == "c2"


def test_local_data_is_in_every_coalition():
    # One candidate: the subsets are {} and {d}. Its value is U({d}) - U({}) = its effect,
    # which holds only if the empty coalition is scored as the local data alone.
    single = Hierarchy(["d"], ["G"])
    ev = AdditiveEvaluator({"d": 0.2}, noise=0.0)
    sel = pydvl_banzhaf_select(single, ev, 12, seed=0)
    subsets = {ids for ids, _, _ in ev.calls}
    assert subsets == {(), ("d",)}
    assert sel.values["d"] == pytest.approx(0.2)


def test_selection_rules():
    sel = pydvl_banzhaf_select(HIER, AdditiveEvaluator(), 30, k=3, seed=2)
    ranked = sorted(sel.values, key=lambda d: -sel.values[d])
    assert sel.selected == tuple(ranked[:3])
    top = pydvl_banzhaf_select(HIER, AdditiveEvaluator(), 30, percentile=50, seed=2)
    cut = np.percentile(list(top.values.values()), 50)
    assert set(top.selected) == {d for d, v in top.values.items() if v >= cut}
    assert pydvl_banzhaf_select(HIER, AdditiveEvaluator(), 30, seed=2).selected == (ranked[0],)


def test_reports_time_spent():
    sel = pydvl_banzhaf_select(HIER, AdditiveEvaluator(), 5, seed=0)
    assert sel.evaluation_seconds >= 0.0
    assert sel.overhead_seconds >= 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"budget": 0}, "budget"),
        ({"budget": 2.5}, "budget"),
        ({"budget": "ten"}, "budget"),
        ({"budget": float("nan")}, "budget"),
        ({"budget": 5, "k": 2, "percentile": 50}, "either k"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(DashselError, match=match):
        pydvl_banzhaf_select(HIER, AdditiveEvaluator(), **kwargs)


def test_evaluator_that_cannot_train_is_refused():
    ev = AdditiveEvaluator()
    ev.can_train = False
    with pytest.raises(DashselError, match="cannot train"):
        pydvl_banzhaf_select(HIER, ev, 5)
    assert ev.calls == []


def test_accepts_a_pool_like_object():
    class PoolLike:
        hierarchy = HIER

    sel = pydvl_banzhaf_select(PoolLike(), AdditiveEvaluator(), 3, seed=0)
    assert sel.n_evaluations == 3


def test_missing_pydvl_raises_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydvl", None)
    ev = AdditiveEvaluator()
    with pytest.raises(MissingExtraError, match=r"pip install 'dashsel\[peers\]'"):
        pydvl_banzhaf_select(HIER, ev, 5)
    assert ev.calls == []


def test_toy_pool_with_logistic_evaluator_values_the_relevant_group_highest():
    from dashsel.evaluators.sklearn import LogisticEvaluator
    from dashsel.toy import make_toy_pool

    pool = make_toy_pool(
        n_groups=3, datasets_per_group=2, relevant_group=1, seed=0, n_validation=120
    )
    sel = pydvl_banzhaf_select(pool, LogisticEvaluator(pool), 10, k=2, seed=0)
    assert sel.n_evaluations == 10
    assert sel.groups == ("g1",)
