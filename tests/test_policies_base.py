"""The Policy base class: exclude-aware asks, reward bounds, O(N) recommend, sklearn params."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashsel.errors import DashselError, RewardError, UnknownDatasetError
from dashsel.policies import (
    MAX_ABS_REWARD,
    DaSH,
    FlatTS,
    Policy,
    Posterior,
    available_policies,
    make_policy,
    top_by_mean,
)
from dashsel.policies.base import check_count
from dashsel.testing import drive, toy_hierarchy


class _Legacy(Policy):
    """A policy written before ``exclude``: ``_ask_one(rng, step)`` returning an id."""

    def _reset(self, hierarchy) -> None:
        pass

    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        return self.hierarchy_.dataset_ids[0]

    def _tell(self, index: int, reward: float) -> None:
        pass

    def posterior(self) -> Posterior:
        raise NotImplementedError


def test_legacy_ask_one_still_works_and_ignores_exclude() -> None:
    policy = _Legacy().reset(toy_hierarchy([3]), 0)
    assert policy.ask(exclude=["g0d0"]) == "g0d0"
    assert policy.ask(3) == ["g0d0"] * 3
    assert policy.n_asked_ == 4


def test_huge_rewards_are_refused_and_1e308_twice_keeps_posterior_finite() -> None:
    h = toy_hierarchy([2, 2])
    for name in ("dash", "flat", "ucb"):
        policy = make_policy(name).reset(h, 0)
        for _ in range(2):
            with pytest.raises(RewardError, match="too large"):
                policy.tell("g0d0", 1e308)
        policy.tell("g0d0", MAX_ABS_REWARD)
        policy.tell("g0d0", -MAX_ABS_REWARD)
        post = policy.posterior()
        assert math.isfinite(post.dataset("g0d0").mean)
        beliefs = (*post.datasets, *post.groups)
        assert not any(math.isinf(b.mean) or math.isinf(b.std) for b in beliefs)


@given(
    means=st.lists(
        st.one_of(st.sampled_from([0.1, 0.5, 0.9]), st.just(math.nan), st.floats(0, 1)),
        min_size=1,
        max_size=30,
    ),
    k=st.integers(1, 35),
)
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
def test_top_by_mean_partial_selection_equals_full_sort(means: list[float], k: int) -> None:
    ids = [f"d{i}" for i in range(len(means))]
    key = [(-m if not math.isnan(m) else math.inf, i) for i, m in enumerate(means)]
    expected = [ids[i] for _, i in sorted(key)[:k]]
    assert top_by_mean(ids, np.array(means), k, None) == expected


def test_check_count() -> None:
    assert check_count("n", 3) == 3 and check_count("n", np.int64(2)) == 2
    assert check_count("n", 0, minimum=0) == 0
    for bad in (0, -1, 1.5, True, math.nan, math.inf, "2", None):
        with pytest.raises(DashselError, match="must be a positive integer"):
            check_count("n", bad)


def test_tell_with_unhashable_id_is_one_line_error() -> None:
    policy = DaSH().reset(toy_hierarchy([1]), 0)
    with pytest.raises(UnknownDatasetError, match="must be a string, got list"):
        policy.tell(["d0"], 0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["dash", "flat", "ucb", "egreedy", "roundrobin", "random"])
def test_builtin_recommend_builds_no_posterior_objects(name: str, monkeypatch) -> None:
    """recommend ranks from arrays: the per-dataset Posterior is never built."""
    h = toy_hierarchy([3, 4, 2])
    policy = make_policy(name).reset(h, 1)
    drive(policy, 20)
    expected = policy.recommend(k=4)

    def boom():
        raise AssertionError("posterior() called by recommend")

    monkeypatch.setattr(policy, "posterior", boom)
    assert policy.recommend(k=4) == expected
    assert policy.recommend(percentile=50.0).datasets


def test_flat_ts_vectors_follow_tells_in_place() -> None:
    """FlatTS updates one entry per tell, and the result equals the closed form."""
    h = toy_hierarchy([4, 3])
    policy = FlatTS(mu0=0.4, sigma0=0.3, sigma_r=0.1).reset(h, 0)
    history = drive(policy, 40)
    counts = np.zeros(h.n_datasets)
    sums = np.zeros(h.n_datasets)
    for d, r in history:
        counts[h.index(d)] += 1
        sums[h.index(d)] += r
    var = 1 / (1 / 0.3**2 + counts / 0.1**2)
    np.testing.assert_allclose(policy.std_**2, var, rtol=1e-12)
    np.testing.assert_allclose(policy.mean_, var * (0.4 / 0.3**2 + sums / 0.1**2), rtol=1e-12)


def test_ucb_bonus_vector_follows_tells() -> None:
    h = toy_hierarchy([3])
    policy = make_policy("ucb").reset(h, 0)
    for _ in range(4):
        policy.tell("g0d1", 0.5)
    assert policy.inv_sqrt_n_[1] == 0.5 and math.isinf(policy.inv_sqrt_n_[0])


def test_set_params_validates_and_takes_effect_at_reset() -> None:
    policy = DaSH()
    assert policy.set_params(sigma_r=0.02) is policy and policy.sigma_r == 0.02
    with pytest.raises(DashselError, match="sigma0 must be a positive finite number"):
        policy.set_params(sigma0=-1.0)
    assert policy.sigma0 == 0.25  # refused: unchanged
    with pytest.raises(DashselError, match=r"DaSH has no parameter\(s\) sigma; it takes: mu0"):
        policy.set_params(sigma=1.0)
    policy.sigma0 = -1.0  # set behind its back: caught when bound
    with pytest.raises(DashselError, match="sigma0"):
        policy.reset(toy_hierarchy([2]), 0)


def test_sklearn_clone_of_every_registered_policy() -> None:
    from sklearn.base import clone

    for name, factory in available_policies().items():
        policy = factory()
        twin = clone(policy)
        assert type(twin) is type(policy) and twin.get_params() == policy.get_params(), name


def test_exclude_with_dash_skips_fully_excluded_groups() -> None:
    h = toy_hierarchy([2, 2, 2])
    policy = DaSH().reset(h, 0)
    for _ in range(10):
        policy.tell("g1d0", 0.99)  # group g1 is clearly best
    assert policy.ask() in ("g1d0", "g1d1")
    assert policy.ask(exclude=["g1d0", "g1d1"]) not in ("g1d0", "g1d1")
    assert policy.ask(exclude=["g1d0"]) == "g1d1"


# --- found by tests/test_fuzz_policy_api.py: raw tracebacks before ---------------------------
@pytest.mark.parametrize("seed", [-1, "x", 1.5, True, object()])
def test_reset_refuses_a_bad_seed_with_one_line(seed) -> None:
    with pytest.raises(DashselError, match="random_state") as info:
        make_policy("dash").reset(toy_hierarchy([2, 2]), random_state=seed)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("hierarchy", [None, 5, "g0d0"])
def test_reset_refuses_what_is_not_a_pool(hierarchy) -> None:
    with pytest.raises(DashselError, match="needs a Pool or a Hierarchy"):
        make_policy("flat").reset(hierarchy)


def test_ask_refuses_an_exclude_that_is_not_iterable() -> None:
    policy = make_policy("dash").reset(toy_hierarchy([2, 2]))
    with pytest.raises(DashselError, match="exclude must be an iterable"):
        policy.ask(exclude=1 + 1j)


@pytest.mark.parametrize("history", [np.float64(0.5), [("g0d0",)], [0.5], 3])
def test_replay_refuses_a_malformed_history(history) -> None:
    policy = make_policy("dash").reset(toy_hierarchy([2, 2]))
    with pytest.raises(DashselError, match="replay: history"):
        policy.replay(history)


def test_unknown_parameter_names_stay_on_one_line() -> None:
    with pytest.raises(DashselError) as info:
        make_policy("dash").set_params(**{"a\nb": 1})
    assert "\n" not in str(info.value)
    with pytest.raises(DashselError) as info:
        make_policy("dash", **{"a\rb": 1})
    assert "\r" not in str(info.value)
