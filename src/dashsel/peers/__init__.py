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
"""

from __future__ import annotations

import math

import numpy as np

from dashsel.hierarchy import Hierarchy
from dashsel.policies.base import Belief, Posterior


class EmpiricalRewards:
    """Running sums of told rewards per dataset, and the frequentist "posterior" they give.

    Shared by the ask/tell peers: none of the libraries keeps a posterior on the scale of the
    rewards (TPE keeps densities over the search space, MABWiser's Thompson sampling keeps
    Beta counts of *binarised* rewards, UCB1 keeps an exploration score), so the estimate used
    by :meth:`~dashsel.policies.base.Policy.recommend` is the empirical mean reward, as the
    same final rule demands for every method.

    Defined here, before the peer modules are imported below, because they import it from
    this package.
    """

    def __init__(self, hierarchy: Hierarchy) -> None:
        self.hierarchy = hierarchy
        n = hierarchy.n_datasets
        self.count = np.zeros(n, dtype=np.int64)
        self.total = np.zeros(n)
        self.total_sq = np.zeros(n)

    def add(self, index: int, reward: float) -> None:
        self.count[index] += 1
        self.total[index] += reward
        self.total_sq[index] += reward * reward

    def means(self) -> np.ndarray:
        """Mean reward per dataset (pool order); NaN where nothing was told."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.total / np.maximum(self.count, 1), np.nan)

    def posterior(self) -> Posterior:
        """Beliefs with mean = empirical mean and std = its standard error.

        A group's belief pools the rewards of all its datasets. The standard error is NaN
        below two observations (one reward says nothing about the spread).
        """
        h = self.hierarchy
        datasets = tuple(
            Belief(d, g, *_mean_se(self.count[k], self.total[k], self.total_sq[k]))
            for k, (d, g) in enumerate(zip(h.dataset_ids, h.groups, strict=True))
        )
        groups_arr = np.asarray(h.groups)
        groups = []
        for g in h.group_ids:
            mask = groups_arr == g
            groups.append(
                Belief(
                    g,
                    None,
                    *_mean_se(
                        int(self.count[mask].sum()),
                        float(self.total[mask].sum()),
                        float(self.total_sq[mask].sum()),
                    ),
                )
            )
        return Posterior(datasets, tuple(groups))


def _mean_se(n: int, total: float, total_sq: float) -> tuple[float, float, int]:
    n = int(n)
    if n == 0:
        return math.nan, math.nan, 0
    mean = total / n
    if n < 2:
        return mean, math.nan, n
    # Sample variance from running sums; clipped at 0 against rounding.
    var = max(total_sq - n * mean * mean, 0.0) / (n - 1)
    return mean, math.sqrt(var / n), n


# The peer modules import their libraries lazily, so these imports stay cheap.
from dashsel.peers.mabwiser_bandits import MabwiserTS, MabwiserUCB1  # noqa: E402
from dashsel.peers.optuna_tpe import OptunaTPE  # noqa: E402
from dashsel.peers.pydvl_banzhaf import PeerSelection, pydvl_banzhaf_select  # noqa: E402

#: Registry names of the ask/tell peers (pyDVL is not a policy: see pydvl_banzhaf_select).
PEER_POLICIES: dict[str, type] = {
    "optuna": OptunaTPE,
    "mabwiser-ts": MabwiserTS,
    "mabwiser-ucb": MabwiserUCB1,
}


def register_peers() -> list[str]:
    """Register the peer policies with :mod:`dashsel.policies`, where it has a registry.

    Returns
    -------
    list of str
        Names registered (empty when ``dashsel.policies.register_policy`` does not exist).
    """
    from dashsel import policies

    register = getattr(policies, "register_policy", None)
    if register is None:
        return []
    for name, cls in PEER_POLICIES.items():
        register(name, cls)
    return list(PEER_POLICIES)


__all__ = [
    "PEER_POLICIES",
    "EmpiricalRewards",
    "MabwiserTS",
    "MabwiserUCB1",
    "OptunaTPE",
    "PeerSelection",
    "pydvl_banzhaf_select",
    "register_peers",
]
