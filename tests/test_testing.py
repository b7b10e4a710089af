"""The conformance suite on every registered built-in policy, and proof that it can fail."""

from __future__ import annotations

import numpy as np
import pytest

from dashsel.policies import POLICIES, Random, RoundRobin, make_policy
from dashsel.policies.base import Recommendation
from dashsel.testing import PolicyConformance, drive, toy_hierarchy

BUILTIN = ["dash", "flat", "ucb", "egreedy", "roundrobin", "random"]


class TestDaSHConformance(PolicyConformance):
    make_policy = staticmethod(lambda: make_policy("dash"))


class TestDaSHEmpiricalConformance(PolicyConformance):
    make_policy = staticmethod(lambda: make_policy("dash", prior="empirical", eb_observations=5))


class TestDaSHTheta0Conformance(PolicyConformance):
    make_policy = staticmethod(lambda: make_policy("dash", dataset_prior_mean="theta0"))


class TestFlatTSConformance(PolicyConformance):
    make_policy = staticmethod(lambda: make_policy("flat"))


class TestUCB1Conformance(PolicyConformance):
    make_policy = staticmethod(lambda: make_policy("ucb"))


class TestEpsilonGreedyConformance(PolicyConformance):
    make_policy = staticmethod(lambda: make_policy("egreedy", epsilon=0.3))


class TestRoundRobinConformance(PolicyConformance):
    make_policy = staticmethod(lambda: make_policy("roundrobin"))
    deterministic = True


class TestRandomConformance(PolicyConformance):
    make_policy = staticmethod(lambda: make_policy("random"))


def test_every_builtin_is_covered() -> None:
    covered = {type(cls.make_policy()) for cls in PolicyConformance.__subclasses__()}
    assert {POLICIES[name] for name in BUILTIN} <= covered


# --- the suite catches broken policies ------------------------------------------------------
class _LeakyRandom(Random):
    """Draws from a generator that advances across calls instead of the step's generator."""

    def _reset(self, hierarchy) -> None:
        super()._reset(hierarchy)
        self._leak = np.random.default_rng(self.seed_)

    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        ids = self.hierarchy_.dataset_ids
        return ids[int(self._leak.integers(len(ids)))]


class _RecommendsByCount(RoundRobin):
    """Ranks the final choice by an exploration-style score (fewest pulls first)."""

    def recommend(self, k=None, percentile=None):
        post = self.posterior()
        order = sorted(post.datasets, key=lambda b: b.pulls)[: k or 1]
        return Recommendation(tuple(b.id for b in order), tuple({b.group: 0 for b in order}))


class _LeakySuite(PolicyConformance):
    make_policy = staticmethod(_LeakyRandom)


class _BadRecommendSuite(PolicyConformance):
    make_policy = staticmethod(_RecommendsByCount)
    deterministic = True


def test_suite_catches_a_policy_that_ignores_the_step_generator() -> None:
    suite = _LeakySuite()
    suite.test_same_seed_same_sequence()  # seeded, so plain reproduction still holds
    # The undecorated test body on one concrete case (hypothesis's shrinking would be slow).
    replay = PolicyConformance.test_replay_reproduces_next_asks.hypothesis.inner_test
    with pytest.raises(AssertionError):
        replay(suite, sizes=[3, 3], steps=10, batch=2, pending=1, seed=0, rewards=[0.5] * 30)


def test_suite_catches_ranking_by_exploration_score() -> None:
    with pytest.raises(AssertionError):
        _BadRecommendSuite().test_recommend_ranks_by_mean_not_exploration()


def test_drive_returns_told_history() -> None:
    policy = make_policy("roundrobin").reset(toy_hierarchy([2, 1]), 0)
    history = drive(policy, 5, batch=2)
    assert [d for d, _ in history] == ["g0d0", "g0d1", "g1d0", "g0d0", "g0d1"]
    assert policy.n_told_ == 5
