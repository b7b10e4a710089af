"""Shared arm statistics and posterior formulas (dashsel.policies._stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashsel.errors import DashselError
from dashsel.policies import GaussianPrior
from dashsel.policies._stats import (
    ArmStats,
    check_range,
    empirical,
    group_posterior,
    masked_argmax,
    normal_posterior,
)
from dashsel.testing import toy_hierarchy

_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None)


@given(picks=st.lists(st.tuples(st.integers(0, 4), st.floats(-1e6, 1e6)), min_size=1, max_size=40))
@_SETTINGS
def test_arm_stats_match_numpy(picks: list[tuple[int, float]]) -> None:
    h = toy_hierarchy([2, 3])
    s = ArmStats(h)
    for i, r in picks:
        s.add(i, r)
    assert s.total == len(picks)
    for i in range(h.n_datasets):
        rs = np.array([r for j, r in picks if j == i])
        assert s.counts[i] == rs.size
        if rs.size:
            assert s.means[i] == pytest.approx(rs.mean(), rel=1e-9, abs=1e-6)
            assert s.sums[i] == pytest.approx(rs.sum(), rel=1e-9, abs=1e-6)
            assert s.m2[i] == pytest.approx(((rs - rs.mean()) ** 2).sum(), rel=1e-6, abs=1e-3)
    for g, members in enumerate(s.members):
        rs = np.array([r for j, r in picks if j in set(members.tolist())])
        assert s.group_counts[g] == rs.size
        if rs.size:
            assert s.group_means[g] == pytest.approx(rs.mean(), rel=1e-9, abs=1e-6)


def test_welford_keeps_spread_of_close_rewards() -> None:
    """Rewards 1e8 + {0, 1, 2}: a naive sum of squares loses the spread, Welford does not."""
    s = ArmStats(toy_hierarchy([1]))
    for r in (1e8, 1e8 + 1, 1e8 + 2) * 10:
        s.add(0, r)
    mean, se = empirical(s.counts, s.means, s.m2)
    assert mean[0] == pytest.approx(1e8 + 1)
    assert se[0] == pytest.approx(math.sqrt(np.var([0, 1, 2] * 10, ddof=1) / 30), rel=1e-9)


def test_empirical_nan_where_undefined() -> None:
    mean, se = empirical(np.array([0, 1, 2]), np.array([0.0, 0.5, 0.5]), np.array([0, 0, 0.02]))
    assert math.isnan(mean[0]) and mean[1] == 0.5 and math.isnan(se[1])
    assert se[2] == pytest.approx(math.sqrt(0.02 / 1 / 2))


@given(
    n=st.integers(0, 50),
    mean=st.floats(-2, 2),
    m0=st.floats(-1, 1),
    v0=st.floats(0.01, 4),
    vr=st.floats(1e-4, 1),
)
@_SETTINGS
def test_normal_posterior_is_the_conjugate_update(
    n: int, mean: float, m0: float, v0: float, vr: float
) -> None:
    m, v = normal_posterior(n, mean, m0, v0, vr)
    var = 1.0 / (1.0 / v0 + n / vr)
    assert float(v) == pytest.approx(var, rel=1e-12)
    assert float(m) == pytest.approx(var * (m0 / v0 + n * mean / vr), rel=1e-9, abs=1e-12)


def test_group_posterior_eqs_4_5() -> None:
    p = GaussianPrior(mu0=0.5, sigma0=0.25, theta0=0.5, sigmahat0=0.1, sigma_r=0.05)
    mean, var = group_posterior(np.array([0, 4]), np.array([0.0, 0.8]), p)
    assert mean[0] == 0.5 and var[0] == pytest.approx(0.25**2)
    obs = 0.1**2 + 0.05**2 / 4
    v = 1 / (1 / 0.25**2 + 1 / obs)
    assert var[1] == pytest.approx(v) and mean[1] == pytest.approx(v * (0.5 / 0.25**2 + 0.8 / obs))


def test_normal_posterior_of_huge_rewards_is_finite() -> None:
    m, v = normal_posterior(10**6, 1e100, 0.5, 0.27**2, 1e-8)
    assert math.isfinite(float(m)) and math.isfinite(float(v))


def test_excluded_groups_and_masked_argmax() -> None:
    s = ArmStats(toy_hierarchy([2, 1, 3]))
    mask = np.zeros(6, dtype=bool)
    mask[[0, 1, 3]] = True
    assert s.excluded_groups(mask).tolist() == [True, False, False]
    score = np.array([9.0, 8.0, 1.0, 7.0, 2.0, 3.0])
    assert masked_argmax(score, None) == 0
    assert masked_argmax(score, mask) == 5


def test_check_range_one_line() -> None:
    check_range("P", "x", 0.5, 0.0, 1.0)
    for bad in (-0.1, 1.1, math.nan, True, "0.5"):
        with pytest.raises(DashselError, match=r"^P: x must be") as info:
            check_range("P", "x", bad, 0.0, 1.0)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
