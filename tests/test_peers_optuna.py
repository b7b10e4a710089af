"""OptunaTPE peer: reproducibility, budget, the obvious answer, replay, missing extra."""

from __future__ import annotations

import importlib
import math
import sys

import numpy as np
import pytest

from dashsel.errors import DashselError, MissingExtraError
from dashsel.hierarchy import Hierarchy
from dashsel.peers import PEER_POLICIES, MabwiserTS, MabwiserUCB1, OptunaTPE, register_peers
from dashsel.testing import PolicyConformance

HIER = Hierarchy.from_mapping({"A": ["a1", "a2", "a3"], "B": ["b1", "b2"], "C": ["c1", "c2", "c3"]})
# One dataset far better than the rest, so every sane selector ends on it.
UTILITY = {"a1": 0.40, "a2": 0.42, "a3": 0.38, "b1": 0.95, "b2": 0.45, "c1": 0.30,
           "c2": 0.33, "c3": 0.31}  # fmt: skip


def reward(dataset_id: str, step: int) -> float:
    """True utility plus small noise seeded by the step: the same history every run."""
    noise = np.random.default_rng([7, step]).normal(0.0, 0.01)
    return UTILITY[dataset_id] + float(noise)


def run(policy: OptunaTPE, budget: int, seed: int = 0) -> list[str]:
    policy.reset(HIER, seed)
    asked = []
    for step in range(budget):
        d = policy.ask()
        asked.append(d)
        policy.tell(d, reward(d, step))
    return asked


def test_same_seed_same_asks_and_seed_matters():
    a = run(OptunaTPE(n_startup_trials=4), 15, seed=3)
    b = run(OptunaTPE(n_startup_trials=4), 15, seed=3)
    c = run(OptunaTPE(n_startup_trials=4), 15, seed=4)
    assert a == b
    assert a != c


def test_run_is_budget_steps_of_completed_trials():
    policy = OptunaTPE(n_startup_trials=3)
    asked = run(policy, 12)
    assert len(asked) == policy.n_asked_ == policy.n_told_ == 12
    trials = policy.study_.trials
    assert len(trials) == 12
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert [t.value for t in trials] == [reward(d, i) for i, d in enumerate(asked)]


@pytest.mark.parametrize("conditional", [True, False])
def test_finds_the_obviously_best_dataset(conditional):
    policy = OptunaTPE(n_startup_trials=8, conditional=conditional)
    asked = run(policy, 30, seed=1)
    assert policy.recommend(k=1).datasets == ("b1",)
    assert policy.recommend(k=1).groups == ("B",)
    # TPE exploits: after the random start-up phase the best dataset is asked most.
    assert max(set(asked[8:]), key=asked[8:].count) == "b1"


def test_conditional_search_space():
    policy = OptunaTPE(n_startup_trials=2)
    run(policy, 6)
    for t in policy.study_.trials:
        group = t.params["group"]
        assert set(t.params) == {"group", f"dataset@{group}"}
        assert HIER.group_of(t.params[f"dataset@{group}"]) == group
    flat = OptunaTPE(n_startup_trials=2, conditional=False)
    run(flat, 4)
    assert all(set(t.params) == {"dataset"} for t in flat.study_.trials)


@pytest.mark.parametrize("n_told", [2, 9])  # inside and after the random start-up phase
def test_replay_into_fresh_policy_asks_the_same_next(n_told):
    original = OptunaTPE(n_startup_trials=4)
    history = [(d, reward(d, i)) for i, d in enumerate(run(original, n_told, seed=5))]
    expected = original.ask(3)

    fresh = OptunaTPE(n_startup_trials=4).reset(HIER, 5)
    for d, r in history:
        fresh.tell(d, r)  # no pending asks: added with study.add_trial
    fresh.n_asked_ = n_told
    assert fresh.ask(3) == expected


def test_batch_tells_complete_the_asked_trials():
    policy = OptunaTPE(n_startup_trials=2).reset(HIER, 0)
    batch = policy.ask(3)
    for i, d in enumerate(batch):
        policy.tell(d, reward(d, i))
    trials = policy.study_.trials
    assert [(t.state.name, t.params) for t in trials] == [
        ("COMPLETE", policy._params(d)) for d in batch
    ]


def test_out_of_order_tells_keep_completed_trials_in_tell_order():
    policy = OptunaTPE(n_startup_trials=2).reset(HIER, 0)
    batch = policy.ask(3)
    told = [(d, reward(d, i)) for i, d in enumerate(reversed(batch))]
    for d, r in told:
        policy.tell(d, r)
    complete = [t for t in policy.study_.trials if t.state.name == "COMPLETE"]
    assert [t.value for t in complete] == [r for _, r in told]
    assert [t.number for t in complete] == sorted(t.number for t in complete)
    assert sum(t.state.name == "FAIL" for t in policy.study_.trials) == 2
    # ... so the study holds what a replay of the same tells holds, and asks alike.
    fresh = OptunaTPE(n_startup_trials=2).reset(HIER, 0).replay(told, n_asked=3)
    assert fresh.ask(4) == policy.ask(4)


def test_posterior_is_mean_observed_reward():
    policy = OptunaTPE().reset(HIER, 0)
    for d, r in [("a1", 0.2), ("a1", 0.4), ("b2", 0.9)]:
        policy.tell(d, r)
    post = policy.posterior()
    a1 = post.dataset("a1")
    assert a1.mean == pytest.approx(0.3)
    assert a1.std == pytest.approx(np.std([0.2, 0.4], ddof=1) / math.sqrt(2))
    assert a1.pulls == 2
    assert math.isnan(post.dataset("c1").mean) and post.dataset("c1").pulls == 0
    assert post.dataset("b2").mean == pytest.approx(0.9) and math.isnan(post.dataset("b2").std)
    assert post.group("A").mean == pytest.approx(0.3) and post.group("A").pulls == 2
    assert math.isnan(post.group("C").mean)
    # Unpulled datasets rank last.
    assert policy.recommend(k=2).datasets == ("b2", "a1")


def test_invalid_parameter_is_reported_at_reset():
    with pytest.raises(DashselError, match="n_startup_trials"):
        OptunaTPE(n_startup_trials=-1).reset(HIER, 0)


def test_missing_optuna_raises_missing_extra(monkeypatch):
    policy = OptunaTPE()  # constructing needs no optuna
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'dashsel\[peers\]'"):
        policy.reset(HIER, 0)


def test_importing_peers_imports_no_peer_library(monkeypatch):
    import dashsel

    # Block the three libraries, then import dashsel.peers afresh: any import of them at
    # module level would fail here.
    for lib in ("optuna", "mabwiser", "pydvl"):
        monkeypatch.setitem(sys.modules, lib, None)
    for name in [m for m in sys.modules if m == "dashsel.peers" or m.startswith("dashsel.peers.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setattr(dashsel, "peers", dashsel.peers)  # the re-import rebinds it
    fresh = importlib.import_module("dashsel.peers")
    assert set(fresh.PEER_POLICIES) == {"optuna", "mabwiser-ts", "mabwiser-ucb"}
    with pytest.raises(MissingExtraError, match="optuna"):
        fresh.OptunaTPE().reset(HIER, 0)


def test_peer_registry_names_and_registration(monkeypatch):
    import dashsel.policies as policies

    expected = {"optuna": OptunaTPE, "mabwiser-ts": MabwiserTS, "mabwiser-ucb": MabwiserUCB1}
    assert dict(PEER_POLICIES) == expected
    monkeypatch.setattr(policies, "POLICIES", dict(policies.POLICIES))  # leave no trace
    assert register_peers() == list(expected)
    assert register_peers() == list(expected)  # registering again is harmless
    policy = policies.make_policy("optuna", n_startup_trials=3, conditional=False)
    assert isinstance(policy, OptunaTPE) and policy.get_params()["n_startup_trials"] == 3


class TestOptunaTPEConformance(PolicyConformance):
    make_policy = staticmethod(lambda: OptunaTPE(n_startup_trials=3))


class TestOptunaTPEFlatConformance(PolicyConformance):
    make_policy = staticmethod(lambda: OptunaTPE(n_startup_trials=3, conditional=False))


def test_runs_in_select_on_the_toy_pool():
    """End to end: dashsel.select with a real (logistic) evaluator finds the relevant group.

    (One peer only, to keep the suite fast: the MABWiser policies go through the same
    Policy interface, which the conformance suites check.)"""
    from dashsel.evaluators.sklearn import LogisticEvaluator
    from dashsel.run import select
    from dashsel.toy import make_toy_pool

    pool = make_toy_pool(
        n_groups=3, datasets_per_group=2, relevant_group=1, seed=0, n_validation=120
    )
    policy = OptunaTPE(n_startup_trials=4)
    result = select(pool, policy, LogisticEvaluator(pool), 10, seed=0, score_final=False)
    assert result.n_evaluations == len(result.trials) == 10
    assert result.selected_groups == ("g1",)


def test_excluded_suggestion_is_failed_and_substituted_in_its_group():
    import optuna

    policy = OptunaTPE(n_startup_trials=100).reset(HIER, 0)
    first = policy.ask()
    policy2 = OptunaTPE(n_startup_trials=100).reset(HIER, 0)
    sub = policy2.ask(exclude=[first])
    assert sub != first
    group = HIER.group_of(first)
    if len(HIER.members(group)) > 1:
        assert HIER.group_of(sub) == group
    states = [t.state for t in policy2.study_.get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.FAIL]
    policy2.tell(sub, 0.5)  # no pending trial: added as a completed one
    assert policy2.posterior().dataset(sub).pulls == 1
    assert len(policy2.study_.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 1
