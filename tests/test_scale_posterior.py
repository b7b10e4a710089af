"""The columnar Posterior: arrays, lazy beliefs, look-ups, frames, and the end of a large run."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from dashsel.errors import DashselError
from dashsel.evaluators.base import Evaluator
from dashsel.hierarchy import Hierarchy
from dashsel.policies import DaSH, FlatTS, make_policy
from dashsel.policies.base import Belief, BeliefSequence, Posterior, top_positions
from dashsel.run import select
from dashsel.trial import TrialSpec


def small() -> Posterior:
    h = Hierarchy(["a0", "a1", "b0"], ["a", "a", "b"])
    return Posterior.from_arrays(
        h,
        mean=[0.2, np.nan, 0.9],
        std=[0.1, 0.2, 0.3],
        pulls=[1, 0, 2],
        group_mean=[0.2, 0.9],
        group_std=[0.05, np.inf],
        group_pulls=[1, 2],
    )


def test_arrays_and_lazy_beliefs() -> None:
    p = small()
    assert p.n_datasets == 3 and p.n_groups == 2
    assert p.group_ids == ("a", "b") and p.group_index.tolist() == [0, 0, 1]
    assert p.mean.dtype == np.float64 and p.pulls.dtype == np.int64
    assert isinstance(p.datasets, BeliefSequence) and len(p.datasets) == 3
    assert p.datasets[-1] == Belief("b0", "b", 0.9, 0.3, 2)
    assert [b.id for b in p.datasets] == ["a0", "a1", "b0"]
    assert list(p.groups)[1] == Belief("b", None, 0.9, math.inf, 2)
    assert p.datasets[::2] == (p.dataset("a0"), p.dataset("b0"))
    assert p.group("a").pulls == 1
    with pytest.raises(IndexError):
        p.datasets[3]
    with pytest.raises(KeyError):
        p.dataset("zz")
    with pytest.raises(KeyError):
        p.group("zz")


def test_arrays_are_read_only_snapshots() -> None:
    h = Hierarchy(["a", "b"], ["g", "g"])
    mean = np.array([0.1, 0.2])
    p = Posterior.from_arrays(
        h, mean=mean, std=[1, 1], pulls=[0, 0], group_mean=[0], group_std=[1], group_pulls=[0]
    )
    with pytest.raises(ValueError):
        p.mean[0] = 5.0
    mean[0] = 9.0  # the caller's array stays writable (a view was frozen, not theirs)
    assert mean.flags.writeable


def test_wrong_lengths_are_named() -> None:
    h = Hierarchy(["a", "b"], ["g", "g"])
    with pytest.raises(DashselError, match=r"group_std has shape \(2,\), expected \(1,\)"):
        Posterior.from_arrays(
            h, mean=[0, 0], std=[1, 1], pulls=[0, 0], group_mean=[0], group_std=[1, 1],
            group_pulls=[0],
        )  # fmt: skip


def test_frame_records_and_equality() -> None:
    p = small()
    f = p.to_frame()
    assert list(f.columns) == ["id", "group", "mean", "std", "pulls"]
    assert f["id"].tolist() == ["a0", "a1", "b0"] and f["group"].tolist() == ["a", "a", "b"]
    g = p.to_frame("groups")
    assert g["group"].isna().all() and g["pulls"].tolist() == [1, 2]
    with pytest.raises(DashselError, match="level"):
        p.to_frame("arms")
    rec = p.records()
    assert rec[1] == {"id": "a1", "group": "a", "mean": None, "std": 0.2, "pulls": 0}
    assert p.records("groups")[1]["std"] is None
    # The legacy constructor (beliefs) gives an equal posterior (NaN equals NaN).
    legacy = Posterior(tuple(p.datasets), tuple(p.groups))
    assert legacy == p and legacy.dataset("b0") == p.dataset("b0")
    pd.testing.assert_frame_equal(legacy.to_frame(), f)
    assert Posterior(p.datasets[:2], p.groups[:1]) != p


def test_legacy_constructor_fills_missing_groups() -> None:
    p = Posterior([Belief("x", "g", 0.5, 0.1, 1)], [])
    assert p.group_ids == ("g",) and math.isnan(p.group("g").mean)


@pytest.mark.parametrize("n", [0, 1, 3, 7, 10])
def test_top_positions_match_a_full_sort(n) -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4, 10).astype(float)  # many ties
    values[[2, 5]] = np.nan
    key = np.where(np.isnan(values), -np.inf, values)
    expected = np.argsort(-key, kind="stable")[:n]
    assert top_positions(values, n).tolist() == expected.tolist()


@pytest.mark.parametrize("block", [-1.0, 0.0, 1.0])
@pytest.mark.parametrize("n", [1, 25, 400, 60_000])
def test_top_positions_with_a_large_block_of_ties(block, n) -> None:
    # Large enough for the sampled threshold (and its full-sort fallback): most values
    # equal (a posterior's shared prior mean), the block below, inside or above the top n.
    rng = np.random.default_rng(1)
    values = np.full(100_000, block)
    few = rng.choice(values.size, 500, replace=False)
    values[few] = rng.normal(0.0, 1.0, few.size).round(1)  # ties among the few too
    values[few[:20]] = np.nan
    key = np.where(np.isnan(values), -np.inf, values)
    expected = np.argsort(-key, kind="stable")[:n]
    assert top_positions(values, n).tolist() == expected.tolist()


@pytest.mark.parametrize("name", ["dash", "flat", "ucb", "random", "egreedy", "roundrobin"])
def test_policy_posteriors_are_columnar_and_consistent(name) -> None:
    h = Hierarchy([f"d{i}" for i in range(40)], [f"g{i % 5}" for i in range(40)])
    policy = make_policy(name).reset(h, random_state=3)
    for t in range(30):
        d = policy.ask()
        policy.tell(d, 0.1 * (t % 7))
    post = policy.posterior()
    assert post.pulls.sum() == 30 and post.group_pulls.sum() == 30
    np.testing.assert_array_equal(post.mean, policy._dataset_means())
    # A snapshot: later tells do not change it.
    before = post.to_frame()
    policy.tell("d0", 0.9)
    pd.testing.assert_frame_equal(post.to_frame(), before)


class Constant(Evaluator):
    can_train = False

    def evaluate(self, spec: TrialSpec) -> float:
        return 0.5 + 0.001 * (spec.number % 11)

    def describe(self) -> dict:
        return {"kind": "constant"}


@pytest.mark.parametrize("policy", [DaSH(), FlatTS()])
def test_end_of_a_large_run_is_array_work(policy) -> None:
    """At 2*10^5 datasets the time after the last trial (recommend + posterior + result) is
    a few array passes; it was seconds when it built one object per dataset."""
    n = 200_000
    h = Hierarchy([f"d{i}" for i in range(n)], [f"g{i % 500}" for i in range(n)])
    h.fingerprint()  # pool set-up, not the end of the run
    last: list[float] = []
    result = select(h, policy, Constant(), 20, callback=lambda o: last.append(time.perf_counter()))
    after = time.perf_counter() - last[-1]
    assert result.posterior.n_datasets == n and len(result.selected) == 1
    assert after < 1.0, f"{after:.2f} s after the last trial"
