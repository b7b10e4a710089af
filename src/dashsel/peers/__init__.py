"""Dataset-level peers: what a user would pick instead of DaSH, held to the same rules.

Every peer gets the same budget of evaluations, the same evaluator and the same final rule
(top-k by estimated utility), so a comparison measures the selection method and nothing else.

* :class:`~dashsel.peers.optuna_tpe.OptunaTPE` — Optuna's TPE over a conditional space
  (group, then a dataset of that group), driven by ``study.ask`` / ``study.tell``.
* :class:`~dashsel.peers.mabwiser_bandits.MabwiserTS` and
  :class:`~dashsel.peers.mabwiser_bandits.MabwiserUCB1` — MABWiser's flat Thompson sampling
  (Beta-Bernoulli, so rewards are binarised) and UCB1.
* :func:`~dashsel.peers.pydvl_banzhaf.pydvl_banzhaf_select` — pyDVL's Banzhaf data valuation
  with maximum-sample-reuse (MSR) sampling, each candidate dataset one player. It values
  subsets instead of asking for one dataset at a time, so it is a function, not a policy.

The libraries are optional (extra ``peers``). Importing this package imports none of them: a
policy imports its library in :meth:`~dashsel.policies.base.Policy.reset`, the pyDVL function
when called, and a missing one raises :class:`~dashsel.errors.MissingExtraError` with the
``pip install`` line.

The peer policies are registered in :mod:`dashsel.policies.registry` (by
``"module:attribute"``, imported on first use), so ``make_policy("optuna")`` works without
importing this package first. Their reward statistics are the policies' own
(``dashsel.policies._stats.ArmStats``).
"""

from __future__ import annotations

from dashsel.peers.mabwiser_bandits import MabwiserTS, MabwiserUCB1
from dashsel.peers.optuna_tpe import OptunaTPE
from dashsel.peers.pydvl_banzhaf import PeerSelection, pydvl_banzhaf_select
from dashsel.policies.registry import PEER_POLICY_NAMES, policy_factory

#: Registry names of the ask/tell peers and their classes (a view of the one registry in
#: :mod:`dashsel.policies.registry`; pyDVL is not a policy: see pydvl_banzhaf_select).
PEER_POLICIES: dict[str, type] = {
    name: policy_factory(name)  # type: ignore[misc]
    for name in PEER_POLICY_NAMES
}


def register_peers() -> list[str]:
    """Names of the peer policies, which :mod:`dashsel.policies.registry` always holds.

    Kept for callers written when peers had to be registered by hand: calling it is harmless
    and changes nothing.
    """
    return list(PEER_POLICIES)


__all__ = [
    "PEER_POLICIES",
    "MabwiserTS",
    "MabwiserUCB1",
    "OptunaTPE",
    "PeerSelection",
    "pydvl_banzhaf_select",
    "register_peers",
]
