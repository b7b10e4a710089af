"""Selection policies: dashsel's engine (HiTS, the default), DaSH (the paper's method), the
flat baselines and a trivial heuristic, all with ask/tell, and a name registry.

>>> from dashsel.policies import DEFAULT_POLICY, make_policy
>>> DEFAULT_POLICY
'hits'
>>> policy = make_policy("dash", sigma_r=0.02)
>>> policy.sigma_r
0.02

The registry (:mod:`dashsel.policies.registry`) also holds the peers (``"optuna"``,
``"mabwiser-ts"``, ``"mabwiser-ucb"``), imported only when built.
"""

from __future__ import annotations

from dashsel.policies.base import (
    MAX_ABS_REWARD,
    Belief,
    Policy,
    Posterior,
    Recommendation,
    top_by_mean,
    validate_selection_rule,
)
from dashsel.policies.dash import DaSH, GaussianPrior
from dashsel.policies.engine import HiTS
from dashsel.policies.flat import UCB1, EpsilonGreedy, FlatTS, Random, RoundRobin
from dashsel.policies.heuristic import GroupMean
from dashsel.policies.registry import (
    DEFAULT_POLICY,
    PEER_POLICY_NAMES,
    POLICIES,
    PolicyFactory,
    available_policies,
    make_policy,
    policy_factory,
    register_policy,
)

__all__ = [
    "DEFAULT_POLICY",
    "MAX_ABS_REWARD",
    "PEER_POLICY_NAMES",
    "POLICIES",
    "UCB1",
    "Belief",
    "DaSH",
    "EpsilonGreedy",
    "FlatTS",
    "GaussianPrior",
    "GroupMean",
    "HiTS",
    "Policy",
    "PolicyFactory",
    "Posterior",
    "Random",
    "Recommendation",
    "RoundRobin",
    "available_policies",
    "make_policy",
    "policy_factory",
    "register_policy",
    "top_by_mean",
    "validate_selection_rule",
]
