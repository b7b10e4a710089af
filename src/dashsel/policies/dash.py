"""DaSH: hierarchical Gaussian Thompson sampling over groups, then datasets (paper §2).

Model (paper Eq. 2, shared priors)::

    theta_i            ~ N(mu0, sigma0^2)           group utility
    theta_ij | theta_i ~ N(theta_i, sigmahat0^2)    dataset utility
    r | theta_ij       ~ N(theta_ij, sigma_r^2)     one trial's reward

Each step draws once from every group posterior and keeps the largest draw, then draws once
from every dataset posterior of that group and keeps the largest: O(n_groups + group size).
A ``tell`` updates sums and counts and recomputes one group's posterior: O(1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from dashsel.errors import DashselError
from dashsel.hierarchy import Hierarchy
from dashsel.policies._stats import (
    ArmStats,
    check_finite,
    check_std,
    group_posterior,
    masked_argmax,
    normal_posterior,
    posterior_of,
)
from dashsel.policies.base import (
    Policy,
    Posterior,
    Recommendation,
    top_by_mean,
    validate_selection_rule,
)

__all__ = ["DaSH", "GaussianPrior"]


@dataclass(frozen=True)
class GaussianPrior:
    """The hyperparameters DaSH uses: group prior N(mu0, sigma0^2), dataset spread
    sigmahat0 around the group utility (prior mean theta0 when fixed), reward noise sigma_r."""

    mu0: float
    sigma0: float
    theta0: float
    sigmahat0: float
    sigma_r: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


class DaSH(Policy):
    """Dataset selection via hierarchies: two-level Gaussian Thompson sampling.

    Group posterior (paper Eqs. 4-5), with n_i rewards in group i averaging sbar_i::

        lambda_i^2 = (1/sigma0^2 + 1/(sigmahat0^2 + sigma_r^2/n_i))^-1
        mean_i     = lambda_i^2 (mu0/sigma0^2 + sbar_i/(sigmahat0^2 + sigma_r^2/n_i))

    (the prior N(mu0, sigma0^2) when n_i = 0). Dataset posterior (Eqs. 7-8), with n_ij
    rewards of dataset ij averaging sbar_ij::

        lambda_ij^2 = (1/sigmahat0^2 + n_ij/sigma_r^2)^-1
        mean_ij     = lambda_ij^2 (theta_i/sigmahat0^2 + n_ij sbar_ij/sigma_r^2)

    The paper leaves open which value of theta_i enters Eq. 7. By default it is the group's
    *current posterior mean* (``dataset_prior_mean="group_posterior"``), so what is learnt
    about a group moves the beliefs about its untried datasets - the point of the hierarchy.
    ``"theta0"`` uses the fixed prior mean theta0 instead (datasets then share nothing but the
    group choice).

    Parameters
    ----------
    mu0 : float, default 0.5
        Prior mean of a group's utility. The defaults assume rewards are accuracies in [0, 1]:
        0.5 is the middle of that range.
    sigma0 : float, default 0.25
        Prior std of a group's utility: mu0 +- 2 sigma0 spans [0, 1].
    theta0 : float, optional
        Fixed dataset prior mean, used with ``dataset_prior_mean="theta0"``. Default: mu0.
    sigmahat0 : float, default 0.1
        Std of dataset utilities around their group's: datasets of one source differ by about
        +-10 accuracy points. It also floors the group posterior std at
        (1/sigma0^2 + 1/sigmahat0^2)^-1/2 (0.093 by default), so groups never stop being
        explored entirely.
    sigma_r : float, default 0.05
        Reward noise std: the seed-to-seed spread of one trial's accuracy (a few points for a
        small model on a small test split). Smaller values make the search greedier.
    prior : {"fixed", "empirical"}, default "fixed"
        ``"empirical"``: empirical Bayes. The fixed values above are used until
        ``eb_observations`` rewards have been told; then all five hyperparameters are
        estimated from those rewards and frozen (so the closed forms stay exact):

        * mu0 = theta0 = mean of the rewards;
        * sigma0 = std (ddof=1) of the per-group reward means, over groups with a reward;
        * sigmahat0 = pooled within-group std of dataset means: sqrt(sum over groups of the
          squared deviations of its pulled datasets' means from their average / sum(m_i - 1)),
          over groups with m_i >= 2 pulled datasets;
        * sigma_r = pooled within-dataset std of repeated rewards: sqrt(sum over datasets of
          the squared deviations from the dataset mean / sum(n_ij - 1)), over datasets with
          n_ij >= 2.

        Each std is floored at ``eb_min_std``; one that cannot be estimated (too few groups,
        datasets or repeats) keeps its fixed value.
    eb_observations : int, optional
        Rewards to collect before the empirical fit. Default: 2 x the number of groups.
    eb_min_std : float, default 0.01
        Floor of the fitted stds (one accuracy point); scale it with your rewards.
    dataset_prior_mean : {"group_posterior", "theta0"}, default "group_posterior"
        Value of theta_i in the dataset posterior (see above).

    Attributes
    ----------
    prior_ : GaussianPrior
        Hyperparameters in use now.
    prior_fitted_ : bool
        True once the empirical-Bayes fit has replaced the fixed values.
    eb_observations_ : int
        Resolved ``eb_observations``.
    stats_ : ArmStats
        Counts and sums of the rewards told.
    """

    name = "dash"

    def __init__(
        self,
        mu0: float = 0.5,
        sigma0: float = 0.25,
        theta0: float | None = None,
        sigmahat0: float = 0.1,
        sigma_r: float = 0.05,
        prior: Literal["fixed", "empirical"] = "fixed",
        eb_observations: int | None = None,
        eb_min_std: float = 0.01,
        dataset_prior_mean: Literal["group_posterior", "theta0"] = "group_posterior",
    ) -> None:
        self.mu0 = mu0
        self.sigma0 = sigma0
        self.theta0 = theta0
        self.sigmahat0 = sigmahat0
        self.sigma_r = sigma_r
        self.prior = prior
        self.eb_observations = eb_observations
        self.eb_min_std = eb_min_std
        self.dataset_prior_mean = dataset_prior_mean
        self._validate()

    # --- configuration ---------------------------------------------------------------------
    def _validate(self) -> None:
        check_finite("DaSH", mu0=self.mu0)
        if self.theta0 is not None:
            check_finite("DaSH", theta0=self.theta0)
        check_std(
            "DaSH",
            sigma0=self.sigma0,
            sigmahat0=self.sigmahat0,
            sigma_r=self.sigma_r,
            eb_min_std=self.eb_min_std,
        )
        if self.prior not in ("fixed", "empirical"):
            raise DashselError(f"DaSH: prior must be 'fixed' or 'empirical', got {self.prior!r}")
        if self.dataset_prior_mean not in ("group_posterior", "theta0"):
            raise DashselError(
                "DaSH: dataset_prior_mean must be 'group_posterior' or 'theta0', "
                f"got {self.dataset_prior_mean!r}"
            )
        eb = self.eb_observations
        if eb is not None and (isinstance(eb, bool) or int(eb) != eb or eb < 1):
            raise DashselError(f"DaSH: eb_observations must be a positive integer, got {eb!r}")

    def _fixed_prior(self) -> GaussianPrior:
        return GaussianPrior(
            mu0=float(self.mu0),
            sigma0=float(self.sigma0),
            theta0=float(self.mu0 if self.theta0 is None else self.theta0),
            sigmahat0=float(self.sigmahat0),
            sigma_r=float(self.sigma_r),
        )

    # --- state -----------------------------------------------------------------------------
    def _reset(self, hierarchy: Hierarchy) -> None:
        self.stats_ = ArmStats(hierarchy)
        self.prior_ = self._fixed_prior()
        self.prior_fitted_ = False
        n_groups = self.hierarchy_.n_groups
        self.eb_observations_ = (
            2 * n_groups if self.eb_observations is None else int(self.eb_observations)
        )
        self._group_mean = np.empty(n_groups)
        self._group_var = np.empty(n_groups)
        self._refresh_groups()

    def _refresh_groups(self, g: int | slice = slice(None)) -> None:
        """Recompute the posterior of group ``g`` (default: every group)."""
        s = self.stats_
        self._group_mean[g], self._group_var[g] = group_posterior(
            s.group_counts[g], s.group_means[g], self.prior_
        )

    def _tell(self, index: int, reward: float) -> None:
        g = self.stats_.add(index, reward)
        if (
            self.prior == "empirical"
            and not self.prior_fitted_
            and self.stats_.total >= self.eb_observations_
        ):
            self.prior_ = self._fit_prior()
            self.prior_fitted_ = True
            self._refresh_groups()
            return
        # Only group g changed: O(1) update of its posterior.
        self._refresh_groups(g)

    def _fit_prior(self) -> GaussianPrior:
        """Empirical-Bayes estimates from the rewards told so far (see the class docstring)."""
        s, fixed, floor = self.stats_, self._fixed_prior(), float(self.eb_min_std)
        mu = float(np.dot(s.counts, s.means) / s.total)

        pulled_g = s.group_counts > 0
        if pulled_g.sum() >= 2:
            sigma0 = float(np.std(s.group_means[pulled_g], ddof=1))
        else:
            sigma0 = fixed.sigma0

        pulled = np.flatnonzero(s.counts > 0)
        d_mean = s.means[pulled]
        g_of = s.group_of[pulled]
        n_g = np.bincount(g_of, minlength=s.sizes.size)
        dof_hat = int(np.maximum(n_g - 1, 0).sum())
        if dof_hat > 0:
            avg = np.bincount(g_of, weights=d_mean, minlength=n_g.size) / np.maximum(n_g, 1)
            ss_hat = float(((d_mean - avg[g_of]) ** 2).sum())  # singleton groups add 0
            sigmahat0 = math.sqrt(ss_hat / dof_hat)
        else:
            sigmahat0 = fixed.sigmahat0

        dof_r = int(np.maximum(s.counts - 1, 0).sum())
        sigma_r = math.sqrt(float(s.m2.sum()) / dof_r) if dof_r > 0 else fixed.sigma_r

        return GaussianPrior(
            mu0=mu,
            sigma0=max(sigma0, floor),
            theta0=mu,
            sigmahat0=max(sigmahat0, floor),
            sigma_r=max(sigma_r, floor),
        )

    # --- posteriors ------------------------------------------------------------------------
    def _dataset_posterior(self, idx: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance (Eqs. 7-8) of the datasets at positions ``idx``."""
        s, p = self.stats_, self.prior_
        if self.dataset_prior_mean == "group_posterior":
            theta = self._group_mean[s.group_of[idx]]
        else:
            theta = p.theta0
        return normal_posterior(s.counts[idx], s.means[idx], theta, p.sigmahat0**2, p.sigma_r**2)

    def _ask_one(
        self, rng: np.random.Generator, step: int, excluded: np.ndarray | None = None
    ) -> int:
        s = self.stats_
        g_draw = self._group_mean + np.sqrt(self._group_var) * rng.standard_normal(
            self._group_mean.size
        )
        # Groups whose datasets are all excluded cannot be chosen; excluded datasets of the
        # chosen group are masked in its draw. The draws themselves are the same either way.
        full = None if excluded is None else s.excluded_groups(excluded)
        members = s.members[masked_argmax(g_draw, full)]
        mean, var = self._dataset_posterior(members)
        d_draw = mean + np.sqrt(var) * rng.standard_normal(members.size)
        return int(members[masked_argmax(d_draw, None if excluded is None else excluded[members])])

    def _dataset_means(self) -> np.ndarray:
        return self._dataset_posterior(slice(None))[0]

    def posterior(self) -> Posterior:
        """Group posteriors (Eqs. 4-5) and dataset posteriors (Eqs. 7-8); std = sqrt(var)."""
        self._check_reset()
        mean, var = self._dataset_posterior(slice(None))
        return posterior_of(
            self.hierarchy_,
            self.stats_,
            dataset=(mean, np.sqrt(var)),
            group=(self._group_mean.copy(), np.sqrt(self._group_var)),
        )

    # --- final choice ----------------------------------------------------------------------
    def recommend(self, k: int | None = None, percentile: float | None = None) -> Recommendation:
        """Hierarchical final choice by posterior means: groups first, then datasets.

        * ``percentile=x``: keep the groups whose mean is >= the x-th percentile of group
          means; among their datasets keep those whose mean is >= the x-th percentile of those
          datasets' means.
        * ``k``: rank groups by mean, take the shortest prefix holding >= k datasets, and
          return the k datasets of those groups with the largest means (all of them if the
          pool holds fewer than k).
        * neither: ``k=1``, the best dataset of the best group.

        Returns datasets best first (ties in pool order) and the groups that hold them, best
        group first.
        """
        self._check_reset()
        validate_selection_rule(k, percentile)
        s, h = self.stats_, self.hierarchy_
        positions = list(range(len(s.members)))
        if percentile is not None:
            kept = top_by_mean(positions, self._group_mean, None, percentile)
        else:
            k = 1 if k is None else int(k)
            ranked = top_by_mean(positions, self._group_mean, len(positions), None)
            # The shortest prefix of groups, best first, holding at least k datasets.
            held = np.cumsum(s.sizes[ranked])
            kept = ranked[: int(np.searchsorted(held, k)) + 1]
        # Candidates in pool order, so equal means keep pool order.
        cand = np.sort(np.concatenate([s.members[g] for g in kept]))
        mean, _ = self._dataset_posterior(cand)
        chosen = top_by_mean(cand.tolist(), mean, k, percentile)
        held_groups = set(s.group_of[chosen].tolist())
        return Recommendation(
            tuple(h.dataset_ids[c] for c in chosen),
            tuple(h.groups[int(s.members[g][0])] for g in kept if g in held_groups),
        )
