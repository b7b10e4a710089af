"""The group-share part of the engine's empirical-Bayes fit (dashsel.policies.hits_model)."""

from __future__ import annotations

import numpy as np

from dashsel.policies.hits_model import HyperPrior, RewardStats, fit_hyper


def _fitted_shares(sigma0: float, n_pools: int = 40, pairs: int = 12) -> np.ndarray:
    """Group share rho = sigma0^2 / (sigma0^2 + sigmahat0^2) fitted on simulated pools of 24
    groups of 8, one evaluation of one member per group plus a second member in ``pairs``
    groups (12: what a run has after about 36 evaluations)."""
    out = []
    for seed in range(n_pools):
        rng = np.random.default_rng(seed)
        group_of = np.repeat(np.arange(24), 8)
        theta_g = 0.7 + sigma0 * rng.standard_normal(24)
        theta = theta_g[group_of] + 0.04 * rng.standard_normal(group_of.size)
        stats = RewardStats(group_of.size)
        for i in [g * 8 for g in range(24)] + [g * 8 + 1 for g in range(pairs)]:
            stats.add(i, float(theta[i] + 0.02 * rng.standard_normal()))
        h = fit_hyper(stats, group_of, None, HyperPrior())
        out.append(h.sigma0**2 / (h.sigma0**2 + h.sigmahat0**2))
    return np.array(out)


def test_group_share_is_decided_by_the_rewards_when_groups_are_uninformative() -> None:
    # With a few within-group pairs the share must be free to reach 0: a pull towards the
    # hyperprior's share (0.5) kept it near 0.12 (median) on uninformative groups, which
    # credits untried members of lucky groups and loses to flat methods at 1/8 of the budget.
    rho = _fitted_shares(0.0)
    assert np.median(rho) < 0.08


def test_group_share_stays_high_when_groups_are_informative() -> None:
    rho = _fitted_shares(0.05)  # true share 0.05^2 / (0.05^2 + 0.04^2) = 0.61
    assert 0.45 < np.median(rho) < 0.8


def test_group_share_stays_at_the_hyperprior_while_it_is_not_identified() -> None:
    # One evaluated dataset per group cannot tell the share: it stays at the medians' share
    # 0.5 instead of drifting to 0, so that a great first reward still makes its group's
    # untried members promising at the smallest budgets.
    rho = _fitted_shares(0.0, n_pools=20, pairs=0)
    assert np.all((rho > 0.4) & (rho < 0.6))
