"""The group-mean heuristic: random order without repeats, group-mean ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dashsel.errors import UnknownDatasetError
from dashsel.policies.heuristic import GroupMean
from dashsel.testing import PolicyConformance, toy_hierarchy


class TestGroupMean(PolicyConformance):
    make_policy = staticmethod(lambda: GroupMean())


def test_every_dataset_once_before_any_repeat() -> None:
    h = toy_hierarchy([3, 4, 2])
    policy = GroupMean().reset(h, 4)
    first = []
    for _ in range(h.n_datasets):
        d = policy.ask()
        first.append(d)
        policy.tell(d, 0.5)
    assert sorted(first) == sorted(h.dataset_ids)
    second = policy.ask()
    assert second in h


def test_order_depends_on_seed_only() -> None:
    h = toy_hierarchy([5, 5])
    orders = []
    for seed in (0, 0, 1):
        policy = GroupMean().reset(h, seed)
        orders.append(policy.ask(10))
    assert orders[0] == orders[1] and orders[0] != orders[2]
    assert len(set(orders[0])) == 10


def test_unevaluated_ranked_by_group_mean_and_untried_groups_last() -> None:
    h = toy_hierarchy([3, 3, 2])
    policy = GroupMean().reset(h, 0)
    policy.tell("g0d0", 0.9)
    policy.tell("g0d1", 0.7)
    policy.tell("g1d0", 0.75)
    policy.tell("g1d0", 0.85)
    mean, se = policy.estimates()
    assert mean[h.index("g0d2")] == pytest.approx(0.8)  # mean of g0's evaluated datasets
    assert mean[h.index("g1d1")] == pytest.approx(0.8)
    assert math.isnan(mean[h.index("g2d0")])
    assert se[h.index("g1d0")] == pytest.approx(np.std([0.75, 0.85], ddof=1) / math.sqrt(2))
    rec = policy.recommend(k=8).datasets
    assert rec[0] == "g0d0"
    assert set(rec[-2:]) == {"g2d0", "g2d1"}
    assert policy.posterior().group("g0").mean == pytest.approx(0.8)


def test_exclude_and_batch_distinct() -> None:
    h = toy_hierarchy([3, 3])
    policy = GroupMean().reset(h, 0)
    batch = policy.ask(4, exclude=["g0d0", "g1d1"])
    assert len(set(batch)) == 4 and not {"g0d0", "g1d1"} & set(batch)
    assert policy.ask(exclude=h.dataset_ids) in h
    with pytest.raises(UnknownDatasetError):
        policy.ask(exclude=["nope"])
