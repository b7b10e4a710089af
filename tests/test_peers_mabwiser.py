"""MABWiser peers (Thompson sampling, UCB1): reproducibility, budget, answers, replay."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from dashsel.errors import DashselError, MissingExtraError
from dashsel.hierarchy import Hierarchy
from dashsel.peers import MabwiserTS, MabwiserUCB1
from dashsel.policies.base import Policy
from dashsel.testing import PolicyConformance

HIER = Hierarchy.from_mapping({"A": ["a1", "a2", "a3"], "B": ["b1", "b2"], "C": ["c1", "c2"]})
# One dataset far better than the rest, so every sane selector ends on it.
UTILITY = {"a1": 0.40, "a2": 0.42, "a3": 0.38, "b1": 0.95, "b2": 0.45, "c1": 0.30, "c2": 0.33}

POLICIES = [
    pytest.param(lambda: MabwiserTS(), id="ts-bernoulli"),
    pytest.param(lambda: MabwiserTS(binarize="median"), id="ts-median"),
    pytest.param(lambda: MabwiserUCB1(alpha=0.5), id="ucb1"),
]


def reward(dataset_id: str, step: int) -> float:
    """True utility plus small noise seeded by the step: the same history every run."""
    return UTILITY[dataset_id] + float(np.random.default_rng([11, step]).normal(0.0, 0.01))


def run(policy: Policy, budget: int, seed: int = 0) -> list[str]:
    policy.reset(HIER, seed)
    asked = []
    for step in range(budget):
        d = policy.ask()
        asked.append(d)
        policy.tell(d, reward(d, step))
    return asked


@pytest.mark.parametrize("make", POLICIES)
def test_same_seed_same_asks(make):
    assert run(make(), 25, seed=2) == run(make(), 25, seed=2)


def test_thompson_sampling_seed_matters():
    assert run(MabwiserTS(), 25, seed=2) != run(MabwiserTS(), 25, seed=3)


@pytest.mark.parametrize("make", POLICIES)
def test_run_is_budget_steps(make):
    policy = make()
    asked = run(policy, 20)
    assert len(asked) == policy.n_asked_ == policy.n_told_ == 20
    assert sum(b.pulls for b in policy.posterior().datasets) == 20
    # MABWiser saw every tell.
    imp = policy.mab_._imp
    told = (
        sum(imp.arm_to_count.values())
        if isinstance(policy, MabwiserUCB1)
        else sum(imp.arm_to_success_count[a] + imp.arm_to_fail_count[a] - 2 for a in imp.arms)
    )
    assert told == 20


@pytest.mark.parametrize("make", POLICIES)
def test_finds_the_obviously_best_dataset(make):
    policy = make()
    asked = run(policy, 40, seed=1)
    assert policy.recommend(k=1).datasets == ("b1",)
    assert policy.recommend(k=1).groups == ("B",)
    assert max(set(asked), key=asked.count) == "b1"


@pytest.mark.parametrize("make", POLICIES)
@pytest.mark.parametrize("n_told", [3, 15])
def test_replay_into_fresh_policy_asks_the_same_next(make, n_told):
    original = make()
    history = [(d, reward(d, i)) for i, d in enumerate(run(original, n_told, seed=5))]
    expected = original.ask(3)

    fresh = make().reset(HIER, 5)
    for d, r in history:
        fresh.tell(d, r)
    fresh.n_asked_ = n_told
    assert fresh.ask(3) == expected


def test_ucb1_pulls_every_dataset_once_first():
    asked = run(MabwiserUCB1(), HIER.n_datasets)
    assert sorted(asked) == sorted(HIER.dataset_ids)


def test_recommend_ranks_by_mean_not_by_ucb_score():
    policy = MabwiserUCB1(alpha=1.0).reset(HIER, 0)
    policy.tell("a1", 0.80)  # one pull: a large exploration bonus
    for _ in range(20):
        policy.tell("b1", 0.85)
    for d in ("a2", "a3", "b2", "c1", "c2"):
        policy.tell(d, 0.1)
    scores = policy.mab_.predict_expectations()
    assert scores["a1"] > scores["b1"]  # UCB prefers a1 ...
    assert policy.recommend(k=1).datasets == ("b1",)  # ... the estimate does not
    assert policy.posterior().dataset("b1").mean == pytest.approx(0.85)


def test_posterior_is_mean_observed_reward_not_beta():
    policy = MabwiserTS().reset(HIER, 0)
    for d, r in [("a1", 0.2), ("a1", 0.4), ("b2", 0.9)]:
        policy.tell(d, r)
    post = policy.posterior()
    assert post.dataset("a1").mean == pytest.approx(0.3)
    assert post.dataset("a1").std == pytest.approx(np.std([0.2, 0.4], ddof=1) / math.sqrt(2))
    assert math.isnan(post.dataset("c1").mean)
    assert post.group("A").mean == pytest.approx(0.3)
    assert policy.recommend(k=2).datasets == ("b2", "a1")


def test_bernoulli_binarisation_matches_reward_on_average():
    policy = MabwiserTS().reset(HIER, 0)
    for _ in range(400):
        policy.tell("a1", 0.25)
    imp = policy.mab_._imp
    successes = imp.arm_to_success_count["a1"] - 1  # Beta(1, 1) prior
    assert successes / 400 == pytest.approx(0.25, abs=0.06)
    assert imp.arm_to_fail_count["a1"] - 1 == 400 - successes


def test_bernoulli_binarisation_clips_with_a_warning():
    policy = MabwiserTS().reset(HIER, 0)
    with pytest.warns(UserWarning, match="binarize='median'"):
        policy.tell("a1", 1.5)
    assert policy.mab_._imp.arm_to_success_count["a1"] == 2  # clipped to 1: always a success


def test_median_binarisation_thresholds_at_running_median():
    policy = MabwiserTS(binarize="median").reset(HIER, 0)
    for d, r in [("a1", -0.05), ("b1", 0.10), ("c1", -0.20), ("b1", 0.30)]:
        policy.tell(d, r)  # gains may be negative: the median rule does not care
    imp = policy.mab_._imp
    # a1: -0.05 >= median(-0.05) -> 1; b1: 0.10 >= 0.025 -> 1; c1: -0.20 < -0.05 -> 0;
    # b1: 0.30 >= 0.025 -> 1.
    assert (imp.arm_to_success_count["a1"], imp.arm_to_fail_count["a1"]) == (2, 1)
    assert (imp.arm_to_success_count["b1"], imp.arm_to_fail_count["b1"]) == (3, 1)
    assert (imp.arm_to_success_count["c1"], imp.arm_to_fail_count["c1"]) == (1, 2)


@pytest.mark.parametrize(
    ("policy", "match"),
    [(MabwiserTS(binarize="sign"), "binarize"), (MabwiserUCB1(alpha=-1), "alpha")],
)
def test_invalid_parameters_are_reported_at_reset(policy, match):
    with pytest.raises(DashselError, match=match):
        policy.reset(HIER, 0)


@pytest.mark.parametrize("cls", [MabwiserTS, MabwiserUCB1])
def test_missing_mabwiser_raises_missing_extra(monkeypatch, cls):
    policy = cls()  # constructing needs no mabwiser
    monkeypatch.setitem(sys.modules, "mabwiser", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'dashsel\[peers\]'"):
        policy.reset(HIER, 0)


class TestMabwiserTSConformance(PolicyConformance):
    make_policy = staticmethod(lambda: MabwiserTS())


class TestMabwiserTSMedianConformance(PolicyConformance):
    make_policy = staticmethod(lambda: MabwiserTS(binarize="median"))


class TestMabwiserUCB1Conformance(PolicyConformance):
    make_policy = staticmethod(lambda: MabwiserUCB1())


@pytest.mark.parametrize("make", POLICIES)
def test_masked_prediction_respects_exclude_and_batches_are_distinct(make):
    policy = make().reset(HIER, 4)
    for step in range(15):
        d = policy.ask()
        policy.tell(d, reward(d, step))
    best = policy.ask()
    assert policy.ask(exclude=[best]) != best
    batch = policy.ask(HIER.n_datasets)
    assert sorted(batch) == sorted(HIER.dataset_ids)
