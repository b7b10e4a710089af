"""Selection policies: DaSH and the flat baselines, all with ask/tell, and a name registry.

>>> from dashsel.policies import make_policy
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
from dashsel.policies.flat import UCB1, EpsilonGreedy, FlatTS, Random, RoundRobin
from dashsel.policies.registry import (
    PEER_POLICY_NAMES,
    POLICIES,
    PolicyFactory,
    available_policies,
    make_policy,
    policy_factory,
    register_policy,
)

__all__ = [
    "MAX_ABS_REWARD",
    "PEER_POLICY_NAMES",
    "POLICIES",
    "UCB1",
    "Belief",
    "DaSH",
    "EpsilonGreedy",
    "FlatTS",
    "GaussianPrior",
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
