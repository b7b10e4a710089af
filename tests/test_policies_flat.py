"""Flat baselines (FlatTS, UCB1, epsilon-greedy, round-robin, random) and the policy registry."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashsel.errors import DashselError
from dashsel.policies import (
    POLICIES,
    UCB1,
    DaSH,
    EpsilonGreedy,
    FlatTS,
    Policy,
    Random,
    RoundRobin,
    make_policy,
    register_policy,
)
from dashsel.testing import toy_hierarchy


# --- FlatTS -------------------------------------------------------------------------------------
@given(
    picks=st.lists(st.tuples(st.integers(0, 5), st.floats(-1.0, 2.0)), max_size=30),
    mu0=st.floats(-1.0, 1.0),
    sigma0=st.floats(0.05, 2.0),
    sigma_r=st.floats(0.01, 1.0),
)
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
def test_flat_ts_posterior_is_conjugate_normal(
    picks: list[tuple[int, float]], mu0: float, sigma0: float, sigma_r: float
) -> None:
    h = toy_hierarchy([2, 4])
    policy = FlatTS(mu0=mu0, sigma0=sigma0, sigma_r=sigma_r).reset(h, 0)
    for i, r in picks:
        policy.tell(h.dataset_ids[i], r)
    for b in policy.posterior().datasets:
        rs = [r for i, r in picks if h.dataset_ids[i] == b.id]
        var = 1.0 / (1.0 / sigma0**2 + len(rs) / sigma_r**2)
        mean = var * (mu0 / sigma0**2 + sum(rs) / sigma_r**2)
        assert b.mean == pytest.approx(mean, abs=1e-12, rel=1e-12)
        assert b.std**2 == pytest.approx(var, abs=1e-12, rel=1e-12)


def test_flat_ts_ignores_groups() -> None:
    """Rewards of one dataset do not move a sibling's belief (unlike DaSH)."""
    h = toy_hierarchy([2])
    flat, dash = FlatTS().reset(h, 0), DaSH().reset(h, 0)
    for p in (flat, dash):
        for _ in range(5):
            p.tell("g0d0", 0.9)
    assert flat.posterior().dataset("g0d1").mean == pytest.approx(0.5)
    assert dash.posterior().dataset("g0d1").mean > 0.6


# --- frequentist estimates ------------------------------------------------------------------------
def test_empirical_mean_and_standard_error() -> None:
    h = toy_hierarchy([2, 1])
    policy = Random().reset(h, 0)
    for r in (0.2, 0.4, 0.9):
        policy.tell("g0d0", r)
    policy.tell("g0d1", 0.5)
    post = policy.posterior()
    a, b, c = (post.dataset(d) for d in ("g0d0", "g0d1", "g1d0"))
    assert a.mean == pytest.approx(0.5) and a.pulls == 3
    assert a.std == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1) / math.sqrt(3), abs=1e-14)
    assert b.mean == 0.5 and math.isnan(b.std)  # one pull: no standard error
    assert math.isnan(c.mean) and math.isnan(c.std) and c.pulls == 0
    g0 = post.group("g0")
    assert g0.mean == pytest.approx(0.5) and g0.pulls == 4
    assert g0.std == pytest.approx(np.std([0.2, 0.4, 0.9, 0.5], ddof=1) / 2, abs=1e-14)
    assert math.isnan(post.group("g1").mean)
    # Unpulled datasets rank last.
    assert policy.recommend(k=3).datasets == ("g0d0", "g0d1", "g1d0")


def test_welford_spread_survives_large_offsets() -> None:
    policy = RoundRobin().reset(toy_hierarchy([1]), 0)
    for r in (1e9 + 0.1, 1e9 + 0.2, 1e9 + 0.3):
        policy.tell("g0d0", r)
    assert policy.posterior().dataset("g0d0").std == pytest.approx(0.1 / math.sqrt(3), rel=1e-6)


# --- UCB1 ---------------------------------------------------------------------------------------
def test_ucb_tries_every_arm_once_first_in_random_order() -> None:
    h = toy_hierarchy([3, 3])
    orders = set()
    for seed in range(4):
        policy = UCB1().reset(h, seed)
        first = []
        for _ in range(6):
            d = policy.ask()
            first.append(d)
            policy.tell(d, 0.5)
        assert sorted(first) == sorted(h.dataset_ids)
        orders.add(tuple(first))
    assert len(orders) > 1


def test_ucb_picks_largest_score() -> None:
    h = toy_hierarchy([3])
    policy = UCB1(alpha=0.5).reset(h, 0)
    told = {"g0d0": [0.9] * 6, "g0d1": [0.7], "g0d2": [0.8, 0.8]}
    for d, rs in told.items():
        for r in rs:
            policy.tell(d, r)
    n_total = 9
    score = {
        d: np.mean(rs) + 0.5 * math.sqrt(2 * math.log(n_total) / len(rs)) for d, rs in told.items()
    }
    assert policy.ask() == max(score, key=score.__getitem__) == "g0d1"
    # With no bonus it exploits the best mean.
    greedy = UCB1(alpha=0.0).reset(h, 0)
    for d, rs in told.items():
        for r in rs:
            greedy.tell(d, r)
    assert greedy.ask() == "g0d0"


# --- epsilon-greedy -----------------------------------------------------------------------------
def test_egreedy_exploits_with_zero_epsilon() -> None:
    h = toy_hierarchy([2, 2])
    policy = EpsilonGreedy(epsilon=0.0).reset(h, 0)
    reward = {"g0d0": 0.3, "g0d1": 0.8, "g1d0": 0.5, "g1d1": 0.6}
    asked = []
    for _ in range(12):
        d = policy.ask()
        asked.append(d)
        policy.tell(d, reward[d])
    assert sorted(asked[:4]) == sorted(reward)  # every arm once first
    assert asked[4:] == ["g0d1"] * 8


def test_egreedy_explores_uniformly_with_epsilon_one() -> None:
    h = toy_hierarchy([2, 2])
    policy = EpsilonGreedy(epsilon=1.0).reset(h, 0)
    policy.replay([("g0d1", 0.9)] * 4)
    counts = Counter(policy.ask(400))
    assert set(counts) == set(h.dataset_ids)
    assert min(counts.values()) > 60


# --- round-robin and random ----------------------------------------------------------------
def test_round_robin_cycles_in_pool_order_whatever_the_seed() -> None:
    h = toy_hierarchy([2, 1])
    for seed in (0, 5):
        assert RoundRobin().reset(h, seed).ask(7) == [
            "g0d0",
            "g0d1",
            "g1d0",
            "g0d0",
            "g0d1",
            "g1d0",
            "g0d0",
        ]


def test_random_is_roughly_uniform() -> None:
    h = toy_hierarchy([1, 4])
    counts = Counter(Random().reset(h, 0).ask(500))
    assert set(counts) == set(h.dataset_ids)
    assert max(counts.values()) - min(counts.values()) < 50


# --- parameters ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (FlatTS, {"sigma0": 0.0}),
        (FlatTS, {"sigma_r": -1.0}),
        (FlatTS, {"mu0": math.nan}),
        (UCB1, {"alpha": -0.1}),
        (UCB1, {"alpha": math.inf}),
        (EpsilonGreedy, {"epsilon": 1.5}),
        (EpsilonGreedy, {"epsilon": True}),
    ],
)
def test_bad_parameters_raise(cls: type[Policy], params: dict[str, object]) -> None:
    with pytest.raises(DashselError, match=next(iter(params))):
        cls(**params)


# --- registry -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("dash", DaSH),
        ("flat", FlatTS),
        ("das", FlatTS),
        ("flat_ts", FlatTS),
        ("ucb", UCB1),
        ("egreedy", EpsilonGreedy),
        ("roundrobin", RoundRobin),
        ("random", Random),
        ("DaSH", DaSH),
    ],
)
def test_make_policy_by_name(name: str, cls: type[Policy]) -> None:
    assert type(make_policy(name)) is cls


def test_make_policy_passes_parameters() -> None:
    assert make_policy("ucb", alpha=0.3).alpha == 0.3
    assert make_policy("dash", prior="empirical").prior == "empirical"


def test_make_policy_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(DashselError, match=r"unknown policy 'thompson'.*dash.*roundrobin"):
        make_policy("thompson")


def test_make_policy_unknown_parameter_names_it() -> None:
    with pytest.raises(DashselError, match=r"does not take parameter\(s\) beta; it takes: alpha"):
        make_policy("ucb", beta=1.0)


def test_register_policy() -> None:
    def factory(temperature: float = 1.0) -> Policy:
        return EpsilonGreedy(epsilon=min(1.0, temperature / 10))

    try:
        register_policy("softish", factory)
        register_policy("softish", factory)  # same factory again: fine
        assert make_policy("softish", temperature=5.0).epsilon == 0.5
        with pytest.raises(DashselError, match="already registered"):
            register_policy("softish", Random)
        register_policy("softish", Random, replace=True)
        assert type(make_policy("softish")) is Random
        with pytest.raises(DashselError, match="lower-case"):
            register_policy("Bad Name", Random)
        with pytest.raises(DashselError, match="not callable"):
            register_policy("nothing", 3)  # type: ignore[arg-type]
    finally:
        POLICIES.pop("softish", None)
