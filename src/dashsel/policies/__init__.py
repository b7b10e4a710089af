"""Selection policies: DaSH and the flat baselines, all with ask/tell, and a name registry.

>>> from dashsel.policies import make_policy
>>> policy = make_policy("dash", sigma_r=0.02)
>>> policy.sigma_r
0.02
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

from dashsel.errors import DashselError
from dashsel.policies.base import Belief, Policy, Posterior, Recommendation
from dashsel.policies.dash import DaSH, GaussianPrior
from dashsel.policies.flat import UCB1, EpsilonGreedy, FlatTS, Random, RoundRobin

__all__ = [
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
    "register_policy",
]

#: A policy class, or any callable that takes keyword parameters and returns a Policy.
PolicyFactory = Callable[..., Policy]

#: Policy names (as used by the CLI and result files) to factories. Extend with
#: :func:`register_policy`.
POLICIES: dict[str, PolicyFactory] = {
    "dash": DaSH,
    # DaSH with its priors set by empirical Bayes from the first observations.
    "dash-eb": partial(DaSH, prior="empirical"),
    "flat": FlatTS,
    "das": FlatTS,
    "flat_ts": FlatTS,
    "ucb": UCB1,
    "egreedy": EpsilonGreedy,
    "roundrobin": RoundRobin,
    "random": Random,
}


def register_policy(name: str, factory: PolicyFactory, *, replace: bool = False) -> None:
    """Make ``factory`` available to :func:`make_policy` (and the CLI) as ``name``.

    Parameters
    ----------
    name : str
        Lower-case name, e.g. ``"optuna_tpe"``.
    factory : callable
        A :class:`Policy` subclass or a function returning a Policy from keyword parameters.
    replace : bool, default False
        Allow rebinding a name already registered to a different factory. Registering the
        same factory twice is always allowed (so an adapter module may be imported again).
    """
    if not isinstance(name, str) or not name or name != name.strip().lower():
        raise DashselError(f"policy name must be a non-empty lower-case string, got {name!r}")
    if not callable(factory):
        raise DashselError(f"policy {name!r}: factory is not callable: {factory!r}")
    old = POLICIES.get(name)
    if old is not None and old is not factory and not replace:
        raise DashselError(f"policy name {name!r} is already registered to {old!r}")
    POLICIES[name] = factory


def make_policy(name: str, **params: object) -> Policy:
    """Build a registered policy by name (case-insensitive) with keyword parameters.

    Raises
    ------
    DashselError
        For an unknown name (the message lists the valid ones) or a parameter the policy does
        not take (the message lists the ones it does).
    """
    key = str(name).strip().lower()
    factory = POLICIES.get(key)
    if factory is None:
        # Registered on first need: importing dashsel.peers from here at import time would
        # be circular (the peers subclass dashsel.policies.base.Policy).
        _register_builtin_peers()
        factory = POLICIES.get(key)
    if factory is None:
        raise DashselError(f"unknown policy {name!r}: use one of {', '.join(sorted(POLICIES))}")
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins/C callables have no signature
        sig = None
    if sig is not None:
        try:
            sig.bind(**params)
        except TypeError:
            valid = [
                p.name
                for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
            bad = sorted(set(params) - set(valid)) or sorted(params)
            raise DashselError(
                f"policy {key!r} does not take parameter(s) {', '.join(bad)}; "
                f"it takes: {', '.join(valid) or 'none'}"
            ) from None
    return factory(**params)


def _register_builtin_peers() -> None:
    # The peer adapters (Optuna, MABWiser) import their libraries only when used, so
    # registering them here costs nothing and makes "optuna", "mabwiser-ts", "mabwiser-ucb"
    # valid names everywhere (CLI, harness) without an extra step.
    from dashsel.peers import PEER_POLICIES

    for peer_name, factory in PEER_POLICIES.items():
        if peer_name not in POLICIES:
            register_policy(peer_name, factory)


def available_policies() -> dict[str, PolicyFactory]:
    """Every registered policy name, the built-in peers (Optuna, MABWiser) included."""
    _register_builtin_peers()
    return dict(POLICIES)
