"""The one registry of policy names: built-in policies and peers, by name, to factories.

Built-in policies are registered as classes. The peers (Optuna, MABWiser) are registered by
``"module:attribute"`` strings, resolved on first use, so neither their libraries nor their
adapter modules are imported until such a policy is built (and :mod:`dashsel.peers` imports
this module, never the reverse: no import cycle).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from functools import partial

from dashsel.errors import DashselError, one_line
from dashsel.policies.base import Policy
from dashsel.policies.dash import DaSH
from dashsel.policies.engine import HiTS
from dashsel.policies.flat import UCB1, EpsilonGreedy, FlatTS, Random, RoundRobin
from dashsel.policies.heuristic import GroupMean

__all__ = [
    "DEFAULT_POLICY",
    "PEER_POLICY_NAMES",
    "POLICIES",
    "PolicyFactory",
    "available_policies",
    "make_policy",
    "policy_factory",
    "register_policy",
]

#: A policy class, or any callable that takes keyword parameters and returns a Policy.
PolicyFactory = Callable[..., Policy]

#: The peers' registry entries: resolved (imported) only when first needed.
_PEERS: dict[str, str] = {
    "optuna": "dashsel.peers.optuna_tpe:OptunaTPE",
    "mabwiser-ts": "dashsel.peers.mabwiser_bandits:MabwiserTS",
    "mabwiser-ucb": "dashsel.peers.mabwiser_bandits:MabwiserUCB1",
}

#: Names of the ask/tell peer policies (pyDVL is a function, not a policy).
PEER_POLICY_NAMES: tuple[str, ...] = tuple(_PEERS)

#: The policy of ``dashsel run``, :func:`dashsel.select` and the studies when none is named:
#: dashsel's own engine (:class:`~dashsel.policies.engine.HiTS`). ``"dash"`` is the paper's
#: method, kept as the reproduction.
DEFAULT_POLICY = "hits"

#: Policy names (as used by the CLI and result files) to factories, or to the
#: ``"module:attribute"`` of a factory not imported yet. Extend with :func:`register_policy`.
#: The default comes first (``dashsel policies`` lists them in this order).
POLICIES: dict[str, PolicyFactory | str] = {
    DEFAULT_POLICY: HiTS,
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
    # The trivial baseline: random order without repeats, rank by group means.
    "group-mean": GroupMean,
    **_PEERS,
}


def register_policy(name: str, factory: PolicyFactory | str, *, replace: bool = False) -> None:
    """Make ``factory`` available to :func:`make_policy` (and the CLI) as ``name``.

    Parameters
    ----------
    name : str
        Lower-case name, e.g. ``"optuna_tpe"``.
    factory : callable or str
        A :class:`Policy` subclass, a function returning a Policy from keyword parameters,
        or ``"package.module:attribute"`` naming one (imported when first built).
    replace : bool, default False
        Allow rebinding a name already registered to a different factory. Registering the
        same factory twice is always allowed (so an adapter module may be imported again).
    """
    if not isinstance(name, str) or not name or name != name.strip().lower():
        raise DashselError(f"policy name must be a non-empty lower-case string, got {name!r}")
    if isinstance(factory, str):
        if factory.count(":") != 1 or not all(factory.split(":")):
            raise DashselError(
                f"policy {name!r}: a factory path must read 'module:attribute', got {factory!r}"
            )
    elif not callable(factory):
        raise DashselError(f"policy {name!r}: factory is not callable: {factory!r}")
    old = POLICIES.get(name)
    if old is not None and old is not factory and old != factory and not replace:
        raise DashselError(f"policy name {name!r} is already registered to {old!r}")
    POLICIES[name] = factory


def _resolve(name: str, entry: PolicyFactory | str) -> PolicyFactory:
    if not isinstance(entry, str):
        return entry
    module, attr = entry.split(":")
    factory = getattr(importlib.import_module(module), attr)
    POLICIES[name] = factory  # resolved once
    return factory


def policy_factory(name: str) -> PolicyFactory:
    """The factory registered as ``name`` (case-insensitive), importing it if needed.

    Raises
    ------
    DashselError
        For an unknown name: the message suggests the closest one and lists them all.
    """
    key = str(name).strip().lower()
    entry = POLICIES.get(key)
    if entry is None:
        near = difflib.get_close_matches(key, list(POLICIES), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise DashselError(
            f"unknown policy {name!r}{hint} (use one of {', '.join(sorted(POLICIES))})"
        )
    return _resolve(key, entry)


def make_policy(name: str, **params: object) -> Policy:
    """Build a registered policy by name (case-insensitive) with keyword parameters.

    Raises
    ------
    DashselError
        For an unknown name (the message suggests the closest and lists the valid ones) or a
        parameter the policy does not take (the message lists the ones it does).
    """
    key = str(name).strip().lower()
    factory = policy_factory(key)
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
                one_line(  # a name may hold a newline
                    f"policy {key!r} does not take parameter(s) {', '.join(bad)}; "
                    f"it takes: {', '.join(valid) or 'none'}"
                )
            ) from None
    return factory(**params)


def available_policies() -> dict[str, PolicyFactory]:
    """Every registered policy name and its factory, the peers (Optuna, MABWiser) included.

    Resolving a peer imports its adapter module, not its library.
    """
    return {name: _resolve(name, entry) for name, entry in list(POLICIES.items())}
