"""The hierarchical Gaussian model of the ``hits`` engine and its empirical-Bayes estimator.

Model, for dataset d in group g(d) with standardised covariates x_d (p of them, maybe none)::

    theta_g             ~ N(mu0, sigma0^2)                        group utility
    theta_d | theta_g   ~ N(theta_g + beta . x_d, sigmahat0^2)    dataset utility
    r | theta_d         ~ N(theta_d, sigma_r^2)                   one evaluation's reward
    beta                ~ N(0, tau^2 I),  tau^2 = sigma0^2 + sigmahat0^2   (shrinkage prior)

Unlike DaSH's closed forms (paper Eqs. 4-8, which treat a group's pooled rewards as one
dataset's), the posteriors here are the exact ones of this model: a group's evaluated datasets
are separate noisy views of the group utility.

The hyperparameters (sigma0, sigmahat0, sigma_r) maximise the marginal likelihood of the
rewards (type-II maximum likelihood), with mu0 and beta profiled out by (penalised) generalised
least squares, and a weak log-normal hyperprior on each std so that one to three rewards give
sane values. Everything is a closed form per group (the covariance of one group's dataset means
is diagonal plus rank one), so one evaluation of the objective is O(evaluated datasets * p^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

__all__ = [
    "Hyper",
    "HyperPrior",
    "Moments",
    "RewardStats",
    "fit_hyper",
    "log_marginal",
    "posterior_moments",
    "sample_joint",
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
    """

    sigma0: float = 0.05
    sigmahat0: float = 0.05
    sigma_r: float = 0.02
    width: float = 1.0
    min_std: float = 1e-3


@dataclass(frozen=True)
class Hyper:
    """Hyperparameters in use: group mean and the three stds, and the covariate weights."""

    mu0: float
    sigma0: float
    sigmahat0: float
    sigma_r: float
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    beta_cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

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

    def add(self, index: int, reward: float) -> None:
        n0 = int(self.counts[index])
        mean0 = float(self.sums[index]) / n0 if n0 else 0.0
        delta = reward - mean0
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
    n_paired: int = 0  # groups holding at least two evaluated datasets


def _compact(stats: RewardStats, group_of: np.ndarray, covariates: np.ndarray | None) -> _Data:
    ev = np.flatnonzero(stats.counts > 0)
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
        n_paired=int((np.bincount(group) >= 2).sum()) if ev.size else 0,
    )


def _gls(
    data: _Data, s0: float, sh: float, sr: float, need_cov: bool = False
) -> tuple[np.ndarray, np.ndarray | None, float, float, float]:
    """Penalised GLS of (mu0, beta) given the stds.

    Returns the coefficients, the inverse of the penalised information matrix (if
    ``need_cov``), the quadratic form of the residuals, log det of the marginal covariance,
    and tau^2.
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
    else:
        Aw = A * w[:, None]
        U = np.column_stack([np.bincount(g, weights=Aw[:, j], minlength=ng) for j in range(p + 1)])
        Uc = U * c[:, None]
        info = Aw.T @ A - Uc.T @ U
        rhs = Aw.T @ data.ybar - Uc.T @ uz
        info[1:, 1:] += np.eye(p) / tau2
        # A tiny ridge keeps the solve defined with a single observation.
        info[0, 0] += 1e-12
        coef = np.linalg.solve(info, rhs)
        cov = np.linalg.inv(info) if need_cov else None
        resid = data.ybar - A @ coef
    gr = np.bincount(g, weights=w * resid, minlength=ng)
    quad = float((w * resid**2).sum() - (c * gr**2).sum())
    logdet = float(-np.log(w).sum() + np.log1p(s0**2 * W).sum())
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
    coef, _, quad, logdet, tau2 = _gls(data, s0, sh, sr)
    nll = 0.5 * (logdet + quad)
    if sr_fixed is None and data.dof_within:
        nll += 0.5 * (data.dof_within * math.log(sr**2) + data.ss_within / sr**2)
    beta = coef[1:]
    if beta.size:
        nll += 0.5 * (float(beta @ beta) / tau2 + beta.size * math.log(tau2))
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
    """Log marginal likelihood of the dataset means (mu0, beta at their penalised GLS values),
    up to a constant, without the within-dataset and hyperprior terms. For tests."""
    data = _compact(stats, group_of, covariates)
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
        Warm start (the previous fit).

    Returns
    -------
    Hyper
        With no reward yet: the hyperprior medians, mu0 = 0 (no information) and beta = 0.
    """
    p = 0 if covariates is None else covariates.shape[1]
    sr_fixed = prior.min_std if deterministic else None
    if stats.total == 0:
        return Hyper(
            mu0=0.0,
            sigma0=prior.sigma0,
            sigmahat0=prior.sigmahat0,
            sigma_r=sr_fixed if sr_fixed is not None else prior.sigma_r,
            beta=np.zeros(p),
            beta_cov=np.eye(p) * (prior.sigma0**2 + prior.sigmahat0**2),
        )
    data = _compact(stats, group_of, covariates)
    base = start if start is not None else Hyper(0.0, prior.sigma0, prior.sigmahat0, prior.sigma_r)
    x0 = np.array(_pack(base.sigma0, base.sigmahat0, base.sigma_r)[: 2 if sr_fixed else 3])
    # Keep the optimiser in a sane box: spreads between min_std and 1e3, share logit +-12.
    lo_s, hi_s = math.log(prior.min_std), math.log(1e3)
    bounds = [(lo_s, hi_s), (-12.0, 12.0)] + ([] if sr_fixed else [(lo_s, hi_s)])
    x0 = np.clip(x0, [b[0] for b in bounds], [b[1] for b in bounds])
    res = minimize(
        _objective,
        x0,
        args=(data, prior, sr_fixed),
        # Nelder-Mead: 2-3 parameters, no gradient needed, cheap per step; a 1% precision on
        # each std is plenty.
        method="Nelder-Mead",
        bounds=bounds,
        options={"xatol": 0.01, "fatol": 1e-4, "maxiter": 400, "initial_simplex": _simplex(x0)},
    )
    xs = res.x if np.all(np.isfinite(res.x)) else x0
    s0, sh, sr = _unpack(xs, prior, sr_fixed)
    coef, cov, _, _, _ = _gls(data, s0, sh, sr, need_cov=True)
    assert cov is not None
    return Hyper(
        mu0=float(coef[0]),
        sigma0=s0,
        sigmahat0=sh,
        sigma_r=sr,
        beta=coef[1:].copy(),
        beta_cov=cov[1:, 1:].copy(),
    )


def _simplex(x0: np.ndarray) -> np.ndarray:
    # Steps of 0.3 (35% in a std, a notch in the share's logit): enough to move, small
    # enough for a warm start. Step down where a start sits at its upper bound.
    step = np.where(x0 > 11.0, -0.3, 0.3)
    return np.vstack([x0, x0 + np.diag(step)])


@dataclass(frozen=True)
class Moments:
    """Posterior means and variances of every group and dataset, and the pieces a joint draw
    needs (see :func:`sample_joint`)."""

    group_mean: np.ndarray
    group_var: np.ndarray
    group_evaluated: np.ndarray  # bool: the group holds an evaluated dataset
    mean: np.ndarray
    var: np.ndarray
    lam: np.ndarray  # var(theta_d | theta_g, data)
    offset: np.ndarray  # lam * (beta.x / sh^2 + sum / sr^2)
    gain: np.ndarray  # lam / sh^2: weight of theta_g in E[theta_d | theta_g, data]


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
    n = stats.counts.astype(float)
    bx = covariates @ hyper.beta if covariates is not None and hyper.beta.size else 0.0
    ev = n > 0
    n_safe = np.where(ev, n, 1.0)
    w = np.where(ev, 1.0 / (sh**2 + sr**2 / n_safe), 0.0)
    z = np.where(ev, stats.sums / n_safe - bx, 0.0)
    W = np.bincount(group_of, weights=w, minlength=n_groups)
    Z = np.bincount(group_of, weights=w * z, minlength=n_groups)
    g_var = 1.0 / (1.0 / s0**2 + W)
    g_mean = g_var * (hyper.mu0 / s0**2 + Z)
    lam = 1.0 / (1.0 / sh**2 + n / sr**2)
    gain = lam / sh**2
    offset = gain * bx + lam * stats.sums / sr**2
    mean = gain * g_mean[group_of] + offset
    var = lam + gain**2 * g_var[group_of]
    return Moments(g_mean, g_var, W > 0, mean, var, lam, offset, gain)


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
