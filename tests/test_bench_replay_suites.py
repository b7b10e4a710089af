"""Replay pools with known truth: layout per kind, reproducibility, rewards, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from dashsel.errors import DashselError
from dashsel_bench.replay_suites import KINDS, make_replay_pool, normalized_utility


@pytest.mark.parametrize(
    ("kind", "n", "n_groups"),
    [
        ("informative", 200, 24),
        ("uninformative", 200, 24),
        ("mixed", 200, 25),
        ("deterministic", 200, 24),
        ("large", 2000, 100),
    ],
)
def test_layout(kind: str, n: int, n_groups: int) -> None:
    pool = make_replay_pool(kind, 3)
    assert pool.n_datasets == n and pool.hierarchy.n_groups == n_groups
    assert pool.utility.shape == (n,) and pool.scores.shape == (n,)
    assert pool.deterministic == (kind == "deterministic")


def test_same_seed_same_pool_other_seed_differs() -> None:
    a, b, c = (make_replay_pool("informative", s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.utility, b.utility)
    assert a.hierarchy == b.hierarchy
    assert not np.array_equal(a.utility, c.utility)


def test_uninformative_shuffles_groups_of_the_same_datasets() -> None:
    inf, unf = make_replay_pool("informative", 2), make_replay_pool("uninformative", 2)
    np.testing.assert_array_equal(inf.utility, unf.utility)
    assert sorted(inf.hierarchy.groups) == sorted(unf.hierarchy.groups)
    assert inf.hierarchy.groups != unf.hierarchy.groups

    def between_share(pool) -> float:
        g = np.array(pool.hierarchy.groups)
        means = {k: pool.utility[g == k].mean() for k in set(g)}
        fitted = np.array([means[k] for k in g])
        return float(fitted.var() / pool.utility.var())

    # Groups explain much of the spread when informative, little when shuffled.
    assert between_share(inf) > 0.5 > 0.25 > between_share(unf)


def test_mixed_groups_have_eight_members() -> None:
    pool = make_replay_pool("mixed", 0)
    _, sizes = np.unique(pool.hierarchy.groups, return_counts=True)
    assert np.all(sizes == 8)


def test_rewards_noisy_or_deterministic() -> None:
    rng = np.random.default_rng(0)
    noisy = make_replay_pool("informative", 1)
    r = [noisy.reward(5, rng) for _ in range(400)]
    assert np.mean(r) == pytest.approx(noisy.utility[5], abs=0.005)
    assert np.std(r) == pytest.approx(0.02, rel=0.2)
    det = make_replay_pool("deterministic", 1)
    assert {det.reward(5, rng) for _ in range(5)} == {float(det.utility[5])}


def test_normalized_utility() -> None:
    u = np.array([0.1, 0.2, 0.3, 0.4, 1.0])
    assert normalized_utility(u, np.array([4]), 1) == pytest.approx(1.0)
    assert normalized_utility(u, np.arange(5), 1) == pytest.approx(0.0)
    assert normalized_utility(u, np.array([0]), 1) < 0
    pool = make_replay_pool("informative", 0)
    best = np.argsort(pool.utility)[-10:]
    ids = [pool.hierarchy.dataset_ids[i] for i in best]
    assert pool.normalized_utility(ids, 10) == pytest.approx(1.0)
    with pytest.raises(DashselError):
        normalized_utility(u, np.array([], dtype=int), 1)


def test_unknown_kind() -> None:
    with pytest.raises(DashselError, match="unknown replay kind"):
        make_replay_pool("nope", 0)
    assert len(KINDS) == 5
