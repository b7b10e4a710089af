"""The hierarchical Gaussian model of the ``hits`` engine and its empirical-Bayes estimator.

Model, for dataset d in group g(d) with standardised covariates x_d (p of them, maybe none)::

    theta_g             ~ N(mu0, sigma0^2)                        group utility
    theta_d | theta_g   ~ N(theta_g + beta . x_d, sigmahat0^2)    dataset utility
    r | theta_d         ~ N(theta_d, sigma_r^2)                   one evaluation's reward
    beta                ~ N(c tau u, tau^2 I),  tau^2 = sigma0^2 + sigmahat0^2

The covariates are training-free scores oriented **higher = expected better**, so the prior on
their weights is centred on that claim: u is the equal-weight direction (or, with
``score_lean="lead"``, the first covariate's alone, the others centred on no effect), scaled so
that u . x has unit std over the pool, and c (``score_weight``,
default 1) says how much of the utility spread the scores are believed to explain before any
reward (c = 1: as much as groups and datasets together). Before the first reward the engine
therefore ranks by the scores; rewards then move beta anywhere (a useless score ends near 0, a
reversed one negative). c = 0 gives a prior centred on "no effect".

Unlike DaSH's closed forms (paper Eqs. 4-8, which treat a group's pooled rewards as one
dataset's), the posteriors here are the exact ones of this model: a group's evaluated datasets
are separate noisy views of the group utility.

The hyperparameters (sigma0, sigmahat0, sigma_r) maximise the marginal likelihood of the
rewards (type-II maximum likelihood) with mu0 (flat prior) and beta (the prior above)
*integrated out*, i.e. restricted maximum likelihood: profiling them out instead lets a few
rewards be fitted exactly by the coefficients and drives every spread to 0. A weak log-normal
hyperprior on each std keeps one to three rewards sane. Everything is a closed form per group
(the covariance of one group's dataset means is diagonal plus rank one), so one evaluation of
the objective is O(evaluated datasets * p^2).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "SCORE_LEANS",
    "GroupMoments",
    "Hyper",
    "HyperPrior",
    "Moments",
    "RewardStats",
    "TopKDraw",
    "choose_disputed",
    "fit_hyper",
    "group_moments",
    "log_marginal",
    "posterior_moments",
    "prior_direction",
    "sample_joint",
    "share_averaged_means",
    "topk_draw",
]


@dataclass(frozen=True)
class HyperPrior:
    """Weak log-normal hyperprior on the three stds, and their floors.

    Parameters
    ----------
    sigma0, sigmahat0, sigma_r : float
        Prior medians (reward units). The defaults of :class:`~dashsel.policies.engine.HiTS`
        suit accuracy-like rewards in [0, 1].
    width : float
        Std of log(sigma) under the hyperprior: 1.0 lets the data move a std by a factor e
        against the weight of about one observation.
    min_std : float
        Floor of every std, and the noise std assumed for deterministic rewards.
    score_weight : float
        c: prior mean of the covariate weights, in units of the utility spread along the
        lean's direction (see the module docstring); 0 centres them on no effect.
    score_lean : {"lead", "equal"}
        Direction of that prior mean: the first covariate only, or all of them equally
        (:func:`prior_direction`).
    """

    sigma0: float = 0.05
    sigmahat0: float = 0.05
    sigma_r: float = 0.02
    width: float = 1.0
    min_std: float = 1e-3
    score_weight: float = 1.0
    score_lean: str = "equal"


@dataclass(frozen=True)
class Hyper:
    """Hyperparameters in use: group mean and the three stds, and the covariate weights."""

    mu0: float
    sigma0: float
    sigmahat0: float
    sigma_r: float
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    beta_cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    # beta's posterior mean under a prior centred on 0 (same spreads): what the rewards alone
    # say about the scores, which the engine's guard asks before trusting them.
    beta_evidence: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict[str, object]:
        return {
            "mu0": self.mu0,
            "sigma0": self.sigma0,
            "sigmahat0": self.sigmahat0,
            "sigma_r": self.sigma_r,
            "beta": [float(b) for b in self.beta],
        }


class RewardStats:
    """Per-dataset count, sum and Welford sum of squared deviations of the rewards told."""

    def __init__(self, n_datasets: int) -> None:
        self.counts = np.zeros(n_datasets, dtype=np.int64)
        self.sums = np.zeros(n_datasets)
        self.m2 = np.zeros(n_datasets)
        self.total = 0
        # Datasets in order of their first reward: lets the grouped sampler find the
        # evaluated datasets in O(evaluated) rather than scanning every count.
        self._first: list[int] = []
        # counts == 0, kept up to date by ``add`` (O(1)) so that an ask need not compare
        # every count; read-only outside (a view).
        self._untried = np.ones(n_datasets, dtype=bool)

    @property
    def untried(self) -> np.ndarray:
        """Read-only mask of the datasets without a reward (``counts == 0``); O(1)."""
        view = self._untried.view()
        view.flags.writeable = False
        return view

    @property
    def n_untried(self) -> int:
        """Datasets without a reward."""
        return self.counts.size - len(self._first)

    def evaluated(self) -> np.ndarray:
        """Indices of the datasets with at least one reward, ascending; O(E log E)."""
        return np.sort(np.asarray(self._first, dtype=np.intp))

    def add(self, index: int, reward: float) -> None:
        n0 = int(self.counts[index])
        mean0 = float(self.sums[index]) / n0 if n0 else 0.0
        delta = reward - mean0
        if n0 == 0:
            self._first.append(int(index))
            self._untried[index] = False
        self.m2[index] += delta * (reward - (mean0 + delta / (n0 + 1)))
        self.counts[index] = n0 + 1
        self.sums[index] += reward
        self.total += 1


@dataclass
class _Data:
    """The evaluated datasets' sufficient statistics, compacted."""

    ybar: np.ndarray  # mean reward per evaluated dataset
    n: np.ndarray  # rewards per evaluated dataset (float)
    group: np.ndarray  # compact group index (0..n_groups_seen-1)
    n_groups: int
    design: np.ndarray  # (n_eval, 1 + p): intercept then covariates
    ss_within: float  # sum over datasets of squared deviations from their own mean
    dof_within: int  # sum over datasets of (n_d - 1)
    direction: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (p,) c u
    n_paired: int = 0  # groups holding at least two evaluated datasets


#: How the prior on the covariate weights leans (:func:`prior_direction`).
SCORE_LEANS: tuple[str, ...] = ("equal", "lead")


def prior_direction(
    covariates: np.ndarray | None, score_weight: float = 1.0, lean: str = "equal"
) -> np.ndarray:
    """c u: the prior mean of the covariate weights per unit of utility spread.

    ``lean="equal"``: u is the equal-weight direction. ``lean="lead"``: u points along the
    first covariate (the lead score: the default, label-aware score when the engine computes
    the scores) and the others are centred on no effect, so that before any reward the engine
    ranks exactly as "scores only" does and the other scores must earn their weight from
    rewards. Either is scaled so that u . x has unit std over the pool (correlated scores do
    not count several times); a direction with no variance is 0.
    """
    if lean not in SCORE_LEANS:
        raise ValueError(f"lean must be one of {SCORE_LEANS}, got {lean!r}")
    if covariates is None or covariates.shape[1] == 0:
        return np.zeros(0)
    p = covariates.shape[1]
    ones = np.ones(p) if lean == "equal" else np.eye(p)[0]
    var = float(np.var(covariates @ ones))
    if not var > 0:
        return np.zeros(p)
    return float(score_weight) * ones / math.sqrt(var)


def _compact(
    stats: RewardStats,
    group_of: np.ndarray,
    covariates: np.ndarray | None,
    direction: np.ndarray | None = None,
) -> _Data:
    ev = stats.evaluated()  # O(evaluated), not a scan of every count
    n = stats.counts[ev].astype(float)
    _, group = np.unique(group_of[ev], return_inverse=True)
    p = 0 if covariates is None else covariates.shape[1]
    design = np.ones((ev.size, 1 + p))
    if p:
        design[:, 1:] = covariates[ev]
    return _Data(
        ybar=stats.sums[ev] / n,
        n=n,
        group=group,
        n_groups=int(group.max()) + 1 if ev.size else 0,
        design=design,
        ss_within=float(stats.m2[ev].sum()),
        dof_within=int((stats.counts[ev] - 1).sum()),
        direction=np.zeros(p) if direction is None else np.asarray(direction, dtype=float),
        n_paired=int((np.bincount(group) >= 2).sum()) if ev.size else 0,
    )


def _gls(
    data: _Data, s0: float, sh: float, sr: float, need_cov: bool = False
) -> tuple[np.ndarray, np.ndarray | None, float, float, float]:
    """Posterior mode of (mu0, beta) given the stds (GLS with beta's prior as pseudo-data).

    Returns the coefficients, the inverse of the posterior information matrix (if
    ``need_cov``), the quadratic form (residuals plus beta's prior term), the log
    determinant of the marginal covariance plus that of the information matrix and of beta's
    prior covariance (what integrating mu0 and beta out adds), and tau^2.
    """
    w = 1.0 / (sh**2 + sr**2 / data.n)
    g, ng = data.group, data.n_groups
    W = np.bincount(g, weights=w, minlength=ng)
    c = s0**2 / (1.0 + s0**2 * W)  # Sherman-Morrison weight of each group's rank-one term
    wy = w * data.ybar
    uz = np.bincount(g, weights=wy, minlength=ng)
    A = data.design
    p = A.shape[1] - 1
    tau2 = s0**2 + sh**2
    if p == 0:  # intercept only: scalars, no linear algebra
        info = float(w.sum() - (c * W * W).sum())
        coef = np.array([float(wy.sum() - (c * W * uz).sum()) / info])
        cov = np.array([[1.0 / info]]) if need_cov else None
        resid = data.ybar - coef[0]
        logdet_info = math.log(info)
        prior_quad = 0.0
    else:
        b0 = math.sqrt(tau2) * data.direction
        Aw = A * w[:, None]
        U = np.column_stack([np.bincount(g, weights=Aw[:, j], minlength=ng) for j in range(p + 1)])
        Uc = U * c[:, None]
        info = Aw.T @ A - Uc.T @ U
        rhs = Aw.T @ data.ybar - Uc.T @ uz
        info[1:, 1:] += np.eye(p) / tau2
        rhs[1:] += b0 / tau2
        # A tiny ridge keeps the solve defined with a single observation.
        info[0, 0] += 1e-12
        coef = np.linalg.solve(info, rhs)
        cov = np.linalg.inv(info) if need_cov else None
        resid = data.ybar - A @ coef
        sign, logdet_info = np.linalg.slogdet(info)
        logdet_info = float(logdet_info) if sign > 0 else math.inf
        d = coef[1:] - b0
        prior_quad = float(d @ d) / tau2 + p * math.log(tau2)
    gr = np.bincount(g, weights=w * resid, minlength=ng)
    quad = float((w * resid**2).sum() - (c * gr**2).sum()) + prior_quad
    logdet = float(-np.log(w).sum() + np.log1p(s0**2 * W).sum()) + logdet_info
    return coef, cov, quad, logdet, tau2


_SHARE_NUDGE = 0.2  # weight of the hyperprior nudge on the group share
_PAIRED_GROUPS = 3  # groups with two evaluated datasets from which rho may go to 0
_RHO_MIN = 1e-4  # smallest group share s0^2 / (s0^2 + sh^2) the fit considers


def _unpack(x: np.ndarray, prior: HyperPrior, sr_fixed: float | None) -> tuple[float, float, float]:
    """(log total spread, logit group share[, log sigma_r]) -> (sigma0, sigmahat0, sigma_r)."""
    tot = math.exp(x[0])
    rho = _RHO_MIN + (1 - 2 * _RHO_MIN) / (1.0 + math.exp(-x[1]))
    s0 = max(tot * math.sqrt(rho), prior.min_std)
    sh = max(tot * math.sqrt(1.0 - rho), prior.min_std)
    sr = sr_fixed if sr_fixed is not None else max(math.exp(x[2]), prior.min_std)
    return s0, sh, sr


def _pack(s0: float, sh: float, sr: float) -> list[float]:
    tot2 = s0**2 + sh**2
    rho = min(max(s0**2 / tot2, 2 * _RHO_MIN), 1 - 2 * _RHO_MIN)
    q = (rho - _RHO_MIN) / (1 - 2 * _RHO_MIN)
    return [0.5 * math.log(tot2), math.log(q / (1 - q)), math.log(sr)]


def _objective(x: np.ndarray, data: _Data, prior: HyperPrior, sr_fixed: float | None) -> float:
    s0, sh, sr = _unpack(x, prior, sr_fixed)
    _, _, quad, logdet, _ = _gls(data, s0, sh, sr)
    # -log of the rewards' density with mu0 and beta integrated out (restricted likelihood).
    nll = 0.5 * (logdet + quad)
    if sr_fixed is None and data.dof_within:
        nll += 0.5 * (data.dof_within * math.log(sr**2) + data.ss_within / sr**2)
    # Weak hyperprior: log-normal on the total spread and on sigma_r. On the group share
    # rho = s0^2 / (s0^2 + sh^2) a Beta(1 + 0.2 rho0, 1 + 0.2 (1 - rho0)) nudge (mode rho0,
    # the medians' share) only while fewer than _PAIRED_GROUPS groups hold two evaluated
    # datasets: the share is not (or barely) identified yet and rho0 settles it. From then
    # on only the nudge off 1 stays (a few lucky pairs must not make untried members copies
    # of their group) and nothing keeps rho off 0, so the rewards alone decide whether
    # groups are informative (rho -> 0 makes the model flat). The nudge off 0 held rho near
    # 0.1-0.2 on uninformative groups at 1/8 of the budget and lost 0.03 of normalized
    # utility to flat methods there (docs/engine.md, "How the settings were chosen").
    tot0 = 0.5 * math.log(prior.sigma0**2 + prior.sigmahat0**2)
    nll += 0.5 * ((x[0] - tot0) / prior.width) ** 2
    if sr_fixed is None:
        nll += 0.5 * ((x[2] - math.log(prior.sigma_r)) / prior.width) ** 2
    rho = s0**2 / (s0**2 + sh**2)
    rho0 = prior.sigma0**2 / (prior.sigma0**2 + prior.sigmahat0**2)
    off0 = 0.0 if data.n_paired >= _PAIRED_GROUPS else rho0
    nll -= _SHARE_NUDGE * (off0 * math.log(rho) + (1.0 - rho0) * math.log(1.0 - rho))
    return nll


def log_marginal(
    stats: RewardStats,
    group_of: np.ndarray,
    covariates: np.ndarray | None,
    sigma0: float,
    sigmahat0: float,
    sigma_r: float,
) -> float:
    """Log restricted marginal likelihood of the dataset means (mu0 and beta integrated out),
    up to a constant, without the within-dataset and hyperprior terms. For tests."""
    data = _compact(stats, group_of, covariates, prior_direction(covariates))
    _, _, quad, logdet, _ = _gls(data, sigma0, sigmahat0, sigma_r)
    return -0.5 * (logdet + quad)


def fit_hyper(
    stats: RewardStats,
    group_of: np.ndarray,
    covariates: np.ndarray | None,
    prior: HyperPrior,
    *,
    deterministic: bool = False,
    start: Hyper | None = None,
    direction: np.ndarray | None = None,
) -> Hyper:
    """Type-II maximum-likelihood hyperparameters from the rewards told so far.

    Parameters
    ----------
    stats : RewardStats
        Rewards told, per dataset.
    group_of : ndarray of int
        Group index of every dataset.
    covariates : ndarray (n_datasets, p) or None
        Standardised covariates.
    prior : HyperPrior
        Hyperprior medians, width and floors.
    deterministic : bool
        Rewards are noise-free: sigma_r is fixed at ``prior.min_std``.
    start : Hyper, optional
        Warm start (the previous fit). The hyperprior medians are always tried too, and the
        better optimum kept, so that an early fit cannot trap later ones.
    direction : ndarray (p,), optional
        :func:`prior_direction` of the covariates (computed when not given; pass it to avoid
        an O(N p) pass per fit).

    Returns
    -------
    Hyper
        With no reward yet: the hyperprior medians, mu0 = 0 (no information) and beta at its
        prior mean (ranking by the covariates).
    """
    p = 0 if covariates is None else covariates.shape[1]
    sr_fixed = prior.min_std if deterministic else None
    if direction is None:
        direction = prior_direction(covariates, prior.score_weight, prior.score_lean)
    if stats.total == 0:
        tau2 = prior.sigma0**2 + prior.sigmahat0**2
        return Hyper(
            mu0=0.0,
            sigma0=prior.sigma0,
            sigmahat0=prior.sigmahat0,
            sigma_r=sr_fixed if sr_fixed is not None else prior.sigma_r,
            beta=math.sqrt(tau2) * np.asarray(direction, dtype=float).copy(),
            beta_cov=np.eye(p) * tau2,
            beta_evidence=np.zeros(p),
        )
    # Imported here: the optimiser is needed only once rewards arrive, and scipy.optimize
    # costs a sizeable share of a large run's start-up.
    from scipy.optimize import minimize

    data = _compact(stats, group_of, covariates, direction)
    cold = Hyper(0.0, prior.sigma0, prior.sigmahat0, prior.sigma_r)
    # Keep the optimiser in a sane box: spreads between min_std and 1e3, share logit +-12.
    lo_s, hi_s = math.log(prior.min_std), math.log(1e3)
    bounds = [(lo_s, hi_s), (-12.0, 12.0)] + ([] if sr_fixed else [(lo_s, hi_s)])
    best_x, best_f = None, math.inf
    for base in (cold,) if start is None else (start, cold):
        x0 = np.array(_pack(base.sigma0, base.sigmahat0, base.sigma_r)[: 2 if sr_fixed else 3])
        x0 = np.clip(x0, [b[0] for b in bounds], [b[1] for b in bounds])
        res = minimize(
            _objective,
            x0,
            args=(data, prior, sr_fixed),
            # Nelder-Mead: 2-3 parameters, no gradient needed, cheap per step; a 1% precision
            # on each std is plenty.
            method="Nelder-Mead",
            bounds=bounds,
            options={
                "xatol": 0.01,
                "fatol": 1e-4,
                "maxiter": 400,
                "initial_simplex": _simplex(x0),
            },
        )
        x = res.x if np.all(np.isfinite(res.x)) else x0
        f = float(_objective(x, data, prior, sr_fixed))
        if f < best_f or best_x is None:
            best_x, best_f = x, f
    s0, sh, sr = _unpack(best_x, prior, sr_fixed)
    coef, cov, _, _, _ = _gls(data, s0, sh, sr, need_cov=True)
    assert cov is not None
    if p:
        evidence = _gls(dataclasses.replace(data, direction=np.zeros(p)), s0, sh, sr)[0][1:]
    else:
        evidence = np.zeros(0)
    return Hyper(
        mu0=float(coef[0]),
        sigma0=s0,
        sigmahat0=sh,
        sigma_r=sr,
        beta=coef[1:].copy(),
        beta_cov=cov[1:, 1:].copy(),
        beta_evidence=evidence,
    )


def _simplex(x0: np.ndarray) -> np.ndarray:
    # Steps of 0.3 (35% in a std, a notch in the share's logit): enough to move, small
    # enough for a warm start. Step down where a start sits at its upper bound.
    step = np.where(x0 > 11.0, -0.3, 0.3)
    return np.vstack([x0, x0 + np.diag(step)])


@dataclass(frozen=True)
class Moments:
    """Posterior means and variances of every group and dataset, and the pieces a joint draw
    needs (see :func:`sample_joint`).

    ``lam``, ``offset`` and ``gain`` are built on first use from the evaluated datasets'
    values (untried datasets share one ``lam`` and ``gain``): the final ranking and the
    posterior need only ``mean`` and ``var``, so a run on 10^6 datasets does not hold three
    more arrays of N floats (24 MB) for them.
    """

    group_mean: np.ndarray
    group_var: np.ndarray
    group_evaluated: np.ndarray  # bool: the group holds an evaluated dataset
    mean: np.ndarray
    var: np.ndarray
    # What lam/offset/gain are built from: lam of an untried dataset, sigmahat0^2, the evaluated
    # datasets' indices, lam and lam * sum / sr^2, and beta . x (None without covariates).
    lam_untried: float = 0.0
    sh2: float = 1.0  # sigmahat0^2
    evaluated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    ev_lam: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ev_data: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shift: np.ndarray | None = None

    @functools.cached_property
    def lam(self) -> np.ndarray:
        """var(theta_d | theta_g, data) of every dataset."""
        lam = np.full(self.mean.size, self.lam_untried)
        lam[self.evaluated] = self.ev_lam
        return lam

    @functools.cached_property
    def gain(self) -> np.ndarray:
        """lam / sh^2: weight of theta_g in E[theta_d | theta_g, data]."""
        return self.lam / self.sh2

    @functools.cached_property
    def offset(self) -> np.ndarray:
        """lam * (beta.x / sh^2 + sum / sr^2)."""
        offset = self.gain * self.shift if self.shift is not None else np.zeros(self.mean.size)
        offset[self.evaluated] += self.ev_data
        return offset


def _group_posterior(
    s0: float,
    sh: float,
    sr: float,
    mu0: float,
    g_ev: np.ndarray,
    n_e: np.ndarray,
    s_e: np.ndarray,
    bx_e: np.ndarray | float,
    n_groups: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean and variance of every group utility, and each group's summed weight,
    from its evaluated datasets (group ``g_ev``, ``n_e`` rewards summing to ``s_e``,
    covariate shift ``bx_e``): precision 1/sigma0^2 + sum_d w_d, w_d = 1/(sigmahat0^2 +
    sigma_r^2/n_d). Shared by :func:`posterior_moments` and :func:`share_averaged_means`."""
    w_e = 1.0 / (sh**2 + sr**2 / n_e)
    z_e = s_e / n_e - bx_e
    W = np.bincount(g_ev, weights=w_e, minlength=n_groups)
    Z = np.bincount(g_ev, weights=w_e * z_e, minlength=n_groups)
    g_var = 1.0 / (1.0 / s0**2 + W)
    g_mean = g_var * (mu0 / s0**2 + Z)
    return g_mean, g_var, W


def posterior_moments(
    hyper: Hyper,
    stats: RewardStats,
    group_of: np.ndarray,
    n_groups: int,
    covariates: np.ndarray | None,
) -> Moments:
    """Exact Gaussian posteriors of the model given the hyperparameters; O(N) numpy.

    Group g: precision 1/sigma0^2 + sum_d w_d over its evaluated datasets, w_d =
    1/(sigmahat0^2 + sigma_r^2/n_d), mean from mu0 and the datasets' beta-adjusted means.
    Dataset d given theta_g: N(lam (theta_g + beta.x_d)/sigmahat0^2 + lam S_d/sigma_r^2, lam),
    lam = 1/(1/sigmahat0^2 + n_d/sigma_r^2); marginally its mean uses the group's posterior
    mean and its variance adds (lam/sigmahat0^2)^2 times the group's variance.
    """
    s0, sh, sr = hyper.sigma0, hyper.sigmahat0, hyper.sigma_r
    bx = covariates @ hyper.beta if covariates is not None and hyper.beta.size else None
    # Sums over the evaluated datasets only. Untried datasets share lam and gain (no
    # covariates: offset 0), so the N-sized results are two arrays built in place (10^6
    # datasets: 8 MB each), the evaluated entries overwritten; same arithmetic, per entry,
    # as with N-sized lam, gain and offset.
    ev = stats.evaluated()
    n_e = stats.counts[ev].astype(float)
    s_e = stats.sums[ev]
    bx_e = bx[ev] if bx is not None else 0.0
    g_mean, g_var, W = _group_posterior(
        s0, sh, sr, hyper.mu0, group_of[ev], n_e, s_e, bx_e, n_groups
    )
    lam_u = 1.0 / (1.0 / sh**2)
    gain_u = lam_u / sh**2
    lam_e = 1.0 / (1.0 / sh**2 + n_e / sr**2)
    gain_e = lam_e / sh**2
    data_e = lam_e * s_e / sr**2
    g_ev = group_of[ev]
    mean = g_mean[group_of]
    mean *= gain_u
    if bx is not None:
        offset = gain_u * bx
        offset[ev] = gain_e * bx[ev]
        offset[ev] += data_e
        mean[ev] = g_mean[g_ev] * gain_e
        mean += offset
        del offset
    else:
        mean[ev] = g_mean[g_ev] * gain_e + data_e
    var = g_var[group_of]
    var *= gain_u
    var *= gain_u
    var += lam_u
    var[ev] = g_var[g_ev] * gain_e * gain_e + lam_e
    return Moments(
        g_mean,
        g_var,
        W > 0,
        mean,
        var,
        lam_untried=lam_u,
        sh2=sh**2,
        evaluated=ev,
        ev_lam=lam_e,
        ev_data=data_e,
        shift=bx,
    )


def sample_joint(
    m: Moments, group_of: np.ndarray, rng: np.random.Generator, size: int | None = None
) -> np.ndarray:
    """One draw (or ``size`` draws, shape (size, N)) of every dataset's utility from the joint
    posterior: group utilities first, then datasets given their group. O(N) per draw."""
    if size is None:
        tg = m.group_mean + np.sqrt(m.group_var) * rng.standard_normal(m.group_mean.size)
        return m.gain * tg[group_of] + m.offset + np.sqrt(m.lam) * rng.standard_normal(m.lam.size)
    tg = m.group_mean + np.sqrt(m.group_var) * rng.standard_normal((size, m.group_mean.size))
    return (
        m.gain * tg[:, group_of]
        + m.offset
        + np.sqrt(m.lam) * rng.standard_normal((size, m.lam.size))
    )


# --- grouped sampling: O(groups + evaluated datasets) per draw, exact ---------------------------
#
# Without covariates a group's untried datasets are exchangeable: given theta_g each is
# N(theta_g, sigmahat0^2), independently of the others. The top-k set of a joint draw is then
# fully described, in distribution, by which evaluated datasets it holds and HOW MANY untried
# datasets of each group it holds (which ones is a uniform subset, drawn only when needed).
# ``topk_draw`` samples that description exactly without drawing one normal per dataset:
# given the group utilities, the number of a group's untried datasets above a fixed cut t is
# Binomial(m_g, P(X > t)), and given those counts the values between two cuts are iid
# truncated normals. Cuts are placed (from expected counts) so that the k-th largest value
# falls between two of them with high probability; only the few values between those two cuts
# are drawn. The cuts never depend on the untried values, so their placement affects the cost,
# not the distribution.


@dataclass(frozen=True)
class GroupMoments:
    """The posterior without covariates, in O(groups + evaluated datasets).

    ``group_mean``/``group_var``: posterior of each theta_g. Evaluated dataset e (index
    ``evaluated[e]``, group ``ev_group[e]``): theta_e | theta_g ~ N(ev_gain theta_g +
    ev_offset, ev_lam). Each of the ``untried[g]`` untried datasets of group g:
    theta_d | theta_g ~ N(theta_g, untried_std^2), independently.
    """

    group_mean: np.ndarray
    group_var: np.ndarray
    evaluated: np.ndarray
    ev_group: np.ndarray
    ev_gain: np.ndarray
    ev_offset: np.ndarray
    ev_lam: np.ndarray
    untried: np.ndarray
    untried_std: float


def group_moments(
    hyper: Hyper, stats: RewardStats, group_of: np.ndarray, group_sizes: np.ndarray
) -> GroupMoments:
    """:func:`posterior_moments` (no covariates) restricted to what a grouped draw needs;
    O(evaluated datasets + groups). ``group_sizes[g]``: datasets in group g."""
    s0, sh, sr = hyper.sigma0, hyper.sigmahat0, hyper.sigma_r
    ev = stats.evaluated()
    n = stats.counts[ev].astype(float)
    sums = stats.sums[ev]
    g = group_of[ev]
    n_groups = group_sizes.size
    w = 1.0 / (sh**2 + sr**2 / n)
    W = np.bincount(g, weights=w, minlength=n_groups)
    Z = np.bincount(g, weights=w * (sums / n), minlength=n_groups)
    g_var = 1.0 / (1.0 / s0**2 + W)
    g_mean = g_var * (hyper.mu0 / s0**2 + Z)
    lam = 1.0 / (1.0 / sh**2 + n / sr**2)
    return GroupMoments(
        group_mean=g_mean,
        group_var=g_var,
        evaluated=ev,
        ev_group=g,
        ev_gain=lam / sh**2,
        ev_offset=lam * sums / sr**2,
        ev_lam=lam,
        untried=np.asarray(group_sizes, dtype=np.int64) - np.bincount(g, minlength=n_groups),
        untried_std=float(sh),
    )


@dataclass(frozen=True)
class TopKDraw:
    """The top-k set of one joint posterior draw, by groups: ``untried[g]`` of group g's
    untried datasets (a uniform subset of them) and the evaluated datasets where
    ``evaluated`` is True."""

    untried: np.ndarray
    evaluated: np.ndarray


def _mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(a < Z <= b) for a standard normal, accurate in either tail (reflected when a > 0)."""
    from scipy.special import ndtr

    s = np.where(a > 0, -1.0, 1.0)
    return s * (ndtr(s * b) - ndtr(s * a))


def _truncated_normal(
    a: np.ndarray, b: np.ndarray, count: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``count[j]`` standard normals truncated to (a[j], b[j]] for each j, in order
    (inverse CDF, tail-aware; the CDFs are computed once per bound, not per value)."""
    from scipy.special import ndtr, ndtri

    up = a > 0  # upper tail: invert the survival function (no cancellation near 1)
    s = np.where(up, -1.0, 1.0)
    fa, fb = ndtr(s * a), ndtr(s * b)  # reflected where up: then fa > fb
    u = rng.random(int(count.sum()))
    lo_f, width = np.repeat(fa, count), np.repeat(fb - fa, count)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.repeat(s, count) * ndtri(lo_f + width * u)
    return np.clip(x, np.repeat(a, count), np.repeat(b, count))


def _cut(
    mu: np.ndarray,
    inside: np.ndarray,
    sd: float,
    mass: np.ndarray,
    lo: float,
    hi: float,
    ev_vals: np.ndarray,
    target: float,
) -> tuple[float, float]:
    """A value t in (lo, hi) where the expected count above t (the untried values inside,
    normals truncated to (lo, hi], plus the evaluated values) is about ``target``, and the
    count's slope there (values per unit). Safeguarded Newton steps: the cut only needs to
    be near; where it lands changes the cost of :func:`topk_draw`, not its distribution."""
    from scipy.special import ndtri

    n_in = float(inside.sum())
    total = n_in + ev_vals.size
    # Start from a normal approximation of the pooled values.
    m = float((inside * mu).sum() / n_in)
    spread = math.sqrt(sd**2 + float((inside * (mu - m) ** 2).sum() / n_in))
    q = min(max(target / total, 1e-12), 1.0 - 1e-12)
    t = m - spread * float(ndtri(q))
    b = (hi - mu) / sd
    left, right = lo, hi
    slope = n_in / spread
    for _ in range(12):
        if not left < t < right:
            if math.isfinite(left) and math.isfinite(right):
                t = 0.5 * (left + right)
            else:
                t = right - spread if math.isfinite(right) else left + spread
        a = (t - mu) / sd
        above = float((inside * _mass(a, b) / mass).sum()) + float((ev_vals > t).sum())
        with np.errstate(over="ignore"):  # a floored far-tail mass: an infinite slope, no step
            dens = float((inside * np.exp(-0.5 * a * a) / mass).sum())
        dens /= math.sqrt(2 * math.pi) * sd
        slope = max(dens, 1e-300)
        f = above - target
        if abs(f) <= max(1.0, 0.5 * math.sqrt(max(target, 1.0))):
            break
        if f > 0:  # too many above: the cut moves up
            left = t
        else:
            right = t
        t = t + f / slope
    return t, slope


def topk_draw(gm: GroupMoments, k: int, rng: np.random.Generator, *, leaf: int = 4096) -> TopKDraw:
    """Which datasets form the top ``k`` of one joint posterior draw, by groups (exact).

    Draws the group utilities and the evaluated datasets, then locates the k-th largest
    value among all datasets by cutting the value axis (binomial counts per group between
    cuts) until at most ``leaf`` untried values lie in the interval that holds it, and draws
    only those. O(groups + evaluated + leaf) per level, about two levels; the distribution is
    that of ``_topk_mask(sample_joint(...), k)`` in O(N) (checked in the tests).
    """
    n_groups = gm.group_mean.size
    theta = gm.group_mean + np.sqrt(gm.group_var) * rng.standard_normal(n_groups)
    n_ev = gm.evaluated.size
    ev_val = (
        gm.ev_gain * theta[gm.ev_group]
        + gm.ev_offset
        + np.sqrt(gm.ev_lam) * rng.standard_normal(n_ev)
    )
    sd = gm.untried_std
    counts = np.zeros(n_groups, dtype=np.int64)
    ev_in = np.zeros(n_ev, dtype=bool)
    lo, hi = -math.inf, math.inf
    active = np.flatnonzero(gm.untried)  # groups with untried values inside (lo, hi]
    inside = gm.untried[active].astype(np.int64)
    ev_idx = np.arange(n_ev)  # evaluated values inside (lo, hi]
    r = int(k)  # how many of the values inside (lo, hi] belong to the top k
    stalled = False
    while True:
        n_in = int(inside.sum())
        total = n_in + ev_idx.size
        if r >= total:
            counts[active] += inside
            ev_in[ev_idx] = True
            break
        if r <= 0:
            break
        if n_in <= leaf or stalled:
            grp = np.repeat(active, inside)
            mu = theta[active]
            z = _truncated_normal((lo - mu) / sd, (hi - mu) / sd, inside, rng)
            vals = np.repeat(mu, inside) + sd * z
            allv = np.concatenate([vals, ev_val[ev_idx]])
            top = np.argpartition(-allv, r - 1)[:r]
            counts += np.bincount(grp[top[top < n_in]], minlength=n_groups)
            ev_in[ev_idx[top[top >= n_in] - n_in]] = True
            break
        mu = theta[active]
        b = (hi - mu) / sd
        if math.isinf(lo) and math.isinf(hi):
            mass = np.ones(mu.size)
        else:
            mass = _mass((lo - mu) / sd, b)
            mass = np.where(mass > 0, mass, 1e-300)  # numerical guard (far tails)
        ev_v = ev_val[ev_idx]
        t, slope = _cut(mu, inside, sd, mass, lo, hi, ev_v, r)
        # Two cuts around t, about 4 sd of the count above t away on either side.
        half = (4.0 * math.sqrt(r) + 4.0) / slope
        t_hi = min(t + half, hi)
        t_lo = max(t - half, lo)
        p1 = np.clip(_mass((t_hi - mu) / sd, b) / mass, 0.0, 1.0) if t_hi < hi else 0.0
        p12 = np.clip(_mass((t_lo - mu) / sd, b) / mass, 0.0, 1.0) if t_lo > lo else 1.0
        x1 = rng.binomial(inside, p1)
        with np.errstate(divide="ignore", invalid="ignore"):
            p2 = np.where(p1 < 1.0, (p12 - p1) / (1.0 - p1), 0.0)
        x2 = rng.binomial(inside - x1, np.clip(np.nan_to_num(p2), 0.0, 1.0))
        e1 = ev_v > t_hi
        e2 = (ev_v > t_lo) & ~e1
        n1 = int(x1.sum()) + int(e1.sum())
        n2 = int(x2.sum()) + int(e2.sum())
        if n1 >= r:
            lo, new, ev_idx = t_hi, x1, ev_idx[e1]
        elif n1 + n2 >= r:
            counts[active] += x1
            ev_in[ev_idx[e1]] = True
            r -= n1
            lo, hi, new, ev_idx = t_lo, t_hi, x2, ev_idx[e2]
        else:
            counts[active] += x1 + x2
            ev_in[ev_idx[e1 | e2]] = True
            r -= n1 + n2
            hi, new, ev_idx = t_lo, inside - x1 - x2, ev_idx[~(e1 | e2)]
        stalled = int(new.sum()) >= n_in  # no progress: draw the values inside
        keep = new > 0
        active, inside = active[keep], new[keep]
    return TopKDraw(untried=counts, evaluated=ev_in)


def _hypergeometric(
    rng: np.random.Generator, good: np.ndarray, bad: np.ndarray, sample: np.ndarray
) -> np.ndarray:
    """``rng.hypergeometric(good, bad, sample)``, drawn only where the count is random:
    where ``good`` or ``sample`` is 0 the count is 0, and numpy would still spend random
    numbers (and about 0.2 us) on each such group. Same distribution; with nothing
    excluded (``good`` all 0) no draw at all."""
    out = np.zeros(np.shape(sample), dtype=np.int64)
    live = (good > 0) & (sample > 0)
    if live.any():
        out[live] = rng.hypergeometric(good[live], bad[live], sample[live])
    return out


def choose_disputed(
    gm: GroupMoments,
    k: int,
    rng: np.random.Generator,
    *,
    top_two: float,
    untried_blocked: np.ndarray,
    evaluated_allowed: np.ndarray,
    pick_untried: Callable[[int], int],
    redraws: int = 20,
) -> int | None:
    """HiTS's top-two choice from two grouped top-k draws (the logic of ``HiTS._choose``
    on masks, by counts): draw a leader's and a challenger's top-k until they differ, take
    the challenger's side with probability ``top_two`` (the other side when that one holds
    no allowed dataset), and return a dataset of it uniformly, untried ones first.

    Which untried datasets each draw holds is a uniform subset of the group's untried
    datasets, independently per draw; only the sizes of the overlaps matter, and those are
    hypergeometric: |A & K| (K: a group's untried datasets not allowed), |B & A| and the
    split of B by K. ``pick_untried(g)`` returns a uniform allowed untried dataset of group g.

    Returns None when the draws never differ or the disputed datasets are none allowed (the
    caller then takes its settled path).
    """
    m = gm.untried
    kap = np.minimum(untried_blocked, m)
    s1 = topk_draw(gm, k, rng)
    a = s1.untried
    x = _hypergeometric(rng, kap, m - kap, a)  # leader's untried datasets not allowed
    for _ in range(redraws):
        s2 = topk_draw(gm, k, rng)
        b = s2.untried
        y_a = _hypergeometric(rng, a, m - a, b)  # challenger's untried also in the leader's
        y_ak = _hypergeometric(rng, x, a - x, y_a)  # ... of which not allowed
        y_nk = _hypergeometric(rng, kap - x, m - a - kap + x, b - y_a)  # only B's, not allowed
        e1, e2 = s1.evaluated, s2.evaluated
        if not ((e1 != e2).any() or (a != b).any() or (y_a < a).any()):
            continue
        leader = ((a - x) - (y_a - y_ak), e1 & ~e2 & evaluated_allowed)
        challenger = ((b - y_a) - y_nk, e2 & ~e1 & evaluated_allowed)
        first, second = (challenger, leader) if rng.random() < top_two else (leader, challenger)
        cand = first if (first[0].any() or first[1].any()) else second
        if cand[0].any():  # untried first: uniformly over them (group by its count)
            cum = np.cumsum(cand[0])
            g = int(np.searchsorted(cum, rng.integers(int(cum[-1])), side="right"))
            return pick_untried(g)
        if cand[1].any():
            idx = np.flatnonzero(cand[1])
            return int(gm.evaluated[idx[rng.integers(idx.size)]])
        return None
    return None


# --- the final ranking under the group share's uncertainty ---------------------------------

_SHARE_GRID = 33  # points of the share grid (uniform in logit, rho from 1.2e-4 to 1 - 1.2e-4)


def share_averaged_means(
    hyper: Hyper,
    stats: RewardStats,
    group_of: np.ndarray,
    n_groups: int,
    covariates: np.ndarray | None,
    prior: HyperPrior,
    *,
    p_flat: float,
    direction: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Posterior mean of every dataset averaged over the group share's uncertainty.

    The plug-in fit keeps one group share rho = sigma0^2 / (sigma0^2 + sigmahat0^2); with
    a few lucky pairs in groups that carry no information it can sit at 0.3-0.6, and the
    untried members of those groups then outrank evaluated datasets that are truly good.
    Here rho gets a posterior instead, the total spread, sigma_r and the covariates' prior
    staying at the fit: a prior mass ``p_flat`` on "groups carry no information" (rho at
    its floor) and the rest spread as the fit's own hyperprior on the share (the Beta nudge
    of ``_objective``), times the restricted likelihood of the rewards (mu0 and beta
    integrated out), on a grid of ``_SHARE_GRID`` shares. Like the fit, the flat hypothesis
    gets its mass only once ``_PAIRED_GROUPS`` groups hold two evaluated datasets: before
    that the share is not identified, the rewards cannot tell it from 0, and the hyperprior
    alone decides (a mass at 0 there only halved the credit of promising groups at 12
    evaluations). The result is the posterior mean
    of each dataset under that mixture, which is what a set of the highest expected
    utility is ranked by.

    Returns the means (pool order) and the posterior probability of the flat hypothesis.
    O(grid x (evaluated datasets x p^2 + groups)) plus one O(N p) pass.
    """
    if stats.total == 0:
        m = posterior_moments(hyper, stats, group_of, n_groups, covariates)
        return m.mean.copy(), float(p_flat)
    if direction is None:
        direction = prior_direction(covariates, prior.score_weight, prior.score_lean)
    data = _compact(stats, group_of, covariates, direction)
    tot = math.hypot(hyper.sigma0, hyper.sigmahat0)
    sr = hyper.sigma_r
    logit = np.linspace(-9.0, 9.0, _SHARE_GRID)
    rho = 1.0 / (1.0 + np.exp(-logit))
    ev = stats.evaluated()
    g_ev = group_of[ev]
    n_e = stats.counts[ev].astype(float)
    s_e = stats.sums[ev]
    x_e = covariates[ev] if covariates is not None else None
    p = 0 if covariates is None else covariates.shape[1]

    def at(s0: float, sh: float) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        # Restricted log likelihood, and the group means, beta and evaluated datasets'
        # means of posterior_moments at these spreads (without its O(N) arrays).
        coef, _, quad, logdet, _ = _gls(data, s0, sh, sr)
        beta = coef[1:]
        bx = x_e @ beta if p else 0.0
        g_mean, _, _ = _group_posterior(s0, sh, sr, float(coef[0]), g_ev, n_e, s_e, bx, n_groups)
        lam = 1.0 / (1.0 / sh**2 + n_e / sr**2)
        m_e = lam * ((g_mean[g_ev] + bx) / sh**2 + s_e / sr**2)
        return -0.5 * (logdet + quad), g_mean, beta, m_e

    def spreads(r: float) -> tuple[float, float]:
        return max(tot * math.sqrt(r), prior.min_std), max(tot * math.sqrt(1.0 - r), prior.min_std)

    rows = [at(*spreads(float(r))) for r in rho]
    ll = np.array([r[0] for r in rows])
    # The slab: the fit's hyperprior on the share (Beta(1 + 0.2 rho0, 1 + 0.2 (1 - rho0))
    # while fewer than _PAIRED_GROUPS groups hold two evaluated datasets, then only its
    # half off 1), as a density in rho, summed over the logit grid (Jacobian rho (1 - rho)).
    rho0 = prior.sigma0**2 / (prior.sigma0**2 + prior.sigmahat0**2)
    a = 1.0 + _SHARE_NUDGE * (rho0 if data.n_paired < _PAIRED_GROUPS else 0.0)
    b = 1.0 + _SHARE_NUDGE * (1.0 - rho0)
    log_beta_fn = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    lw = (
        ll
        + (a - 1.0) * np.log(rho)
        + (b - 1.0) * np.log1p(-rho)
        - log_beta_fn
        + np.log(rho * (1.0 - rho))
        + math.log(logit[1] - logit[0])
    )
    top = float(lw.max())
    log_slab = top + math.log(float(np.exp(lw - top).sum()))
    w = np.exp(lw - log_slab)
    flat = at(prior.min_std, max(tot, prior.min_std))
    if p_flat <= 0.0 or data.n_paired < _PAIRED_GROUPS:
        pf = 0.0
    elif p_flat >= 1.0:
        pf = 1.0
    else:
        logit_pf = math.log(p_flat) - math.log1p(-p_flat) + flat[0] - log_slab
        pf = 1.0 / (1.0 + math.exp(-logit_pf)) if logit_pf > -700 else 0.0
    g_mean = pf * flat[1] + (1.0 - pf) * sum(wi * r[1] for wi, r in zip(w, rows, strict=True))
    m_e = pf * flat[3] + (1.0 - pf) * sum(wi * r[3] for wi, r in zip(w, rows, strict=True))
    mean = g_mean[group_of]
    if p:
        beta = pf * flat[2] + (1.0 - pf) * sum(wi * r[2] for wi, r in zip(w, rows, strict=True))
        mean = mean + covariates @ beta
    mean[ev] = m_e
    return mean, pf
