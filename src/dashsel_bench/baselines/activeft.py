"""ActiveFT: parametric distribution matching on the unit sphere (Xie et al., CVPR 2023)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from dashsel.errors import DashselError
from dashsel.random_state import RandomState, check_random_state
from dashsel_bench.baselines._common import (
    CHUNK,
    all_indices,
    check_budget,
    check_count,
    check_features,
    check_local,
    check_positive,
    greedy_distinct_argmax,
    l2_normalise,
)

# Adam's usual constants (PyTorch defaults, which the reference code runs with).
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8

Objective = Literal["reference", "paper"]


@dataclass(frozen=True)
class ActiveFTFit:
    """Result of optimising the selection parameters.

    Attributes
    ----------
    theta : ndarray of shape (budget, d)
        The optimised parameters, unit rows, in the normalised feature space.
    losses : ndarray of shape (n_iter,)
        The loss at each iteration, on that iteration's mini-batch (before its update).
    """

    theta: np.ndarray
    losses: np.ndarray


def check_activeft_params(
    *,
    temperature: float = 0.07,
    balance: float = 1.0,
    n_iter: int = 300,
    learning_rate: float = 1e-3,
    batch_size: int = 4096,
    objective: Objective = "reference",
    **unknown: object,
) -> dict[str, float | int | str]:
    """ActiveFT's hyperparameters, defaults filled in, checked; DashselError when one is bad."""
    if unknown:
        raise DashselError(
            f"unknown ActiveFT hyperparameter(s) {', '.join(map(repr, sorted(unknown)))}: use "
            "temperature, balance, n_iter, learning_rate, batch_size, objective"
        )
    if objective not in ("reference", "paper"):
        raise DashselError(f"objective must be 'reference' or 'paper', got {objective!r}")
    return {
        "temperature": check_positive(temperature, "temperature"),
        "balance": check_positive(balance, "balance", allow_zero=True),
        "n_iter": check_count(n_iter, "n_iter"),
        "learning_rate": check_positive(learning_rate, "learning_rate"),
        "batch_size": check_count(batch_size, "batch_size"),
        "objective": objective,
    }


def fit_activeft(
    features: np.ndarray,
    n_params: int,
    *,
    rng: np.random.Generator,
    temperature: float = 0.07,
    balance: float = 1.0,
    n_iter: int = 300,
    learning_rate: float = 1e-3,
    batch_size: int = 4096,
    objective: Objective = "reference",
) -> ActiveFTFit:
    """Optimise ActiveFT's continuous selection parameters theta_S.

    The parameters ``theta_j`` (unit vectors in the normalised feature space) are pulled
    towards the samples nearest to them, so that together they match the pool's distribution,
    and pushed apart, so that they stay diverse (Xie et al., CVPR 2023, Sec. 3.2-3.3; the loss
    is :func:`activeft_loss_grad`). As in the reference code, the parameters are stored
    unnormalised, normalised in the forward pass and optimised with Adam; the gradient is
    written out by hand.

    Parameters
    ----------
    features : ndarray of shape (n, d)
        L2-normalised features.
    n_params : int
        Number of parameters B (the budget), 1 <= B <= n.
    rng : numpy Generator
        Draws the initial parameters (B distinct random samples, the reference ``init=random``)
        and the mini-batches.
    temperature, balance, n_iter, learning_rate, batch_size, objective
        See :func:`activeft_select`.
    """
    n, _ = features.shape
    # float32 halves the cost of the two matrix products that dominate each step; the loss is
    # a smooth average, so the lost precision does not change which samples end up chosen.
    f = features.astype(np.float32)
    u = f[rng.choice(n, size=n_params, replace=False)].copy()
    # A zero feature row would give a zero parameter with no defined direction.
    zero = np.linalg.norm(u, axis=1) == 0
    u[zero] = rng.standard_normal((int(zero.sum()), u.shape[1])).astype(np.float32)
    m = np.zeros_like(u)
    v = np.zeros_like(u)
    losses = np.empty(n_iter)
    for t in range(1, n_iter + 1):
        batch = f if n <= batch_size else f[rng.choice(n, size=batch_size, replace=False)]
        losses[t - 1], grad = activeft_loss_grad(u, batch, temperature, balance, objective)
        m = _BETA1 * m + (1 - _BETA1) * grad
        v = _BETA2 * v + (1 - _BETA2) * grad * grad
        m_hat = m / (1 - _BETA1**t)
        v_hat = v / (1 - _BETA2**t)
        u = u - learning_rate * m_hat / (np.sqrt(v_hat) + _EPS)
    return ActiveFTFit(theta=l2_normalise(u.astype(np.float64)), losses=losses)


def activeft_loss_grad(
    u: np.ndarray,
    batch: np.ndarray,
    temperature: float,
    balance: float,
    objective: Objective = "reference",
) -> tuple[float, np.ndarray]:
    """ActiveFT's loss on ``batch`` and its gradient with respect to the raw parameters ``u``.

    ``theta = u / ||u||`` row-wise, ``s_i = sim(f_i, theta_{c_i})`` with ``c_i`` the most
    similar parameter, held fixed within a step (it is piecewise constant, and autograd treats
    an argmax the same way).

    ``objective="reference"`` is the loss of the authors' released code, which produced the
    published numbers: ``-1/M sum_i log(e^{s_i/tau} / (e^{s_i/tau} + lambda C_{c_i}))`` with
    ``C_j = sum_k exp(sim(stopgrad(theta_k), theta_j) / tau)`` (k = j included).
    ``objective="paper"`` is the printed form
    ``-1/M sum_i s_i/tau + lambda/B sum_j log sum_{k != j} exp(sim(theta_j, theta_k)/tau)``.
    Both pull each parameter towards the samples it is nearest to and push parameters apart.
    The difference matters: the printed repulsion is a softmax over the *other* parameters, so
    it keeps full strength however far apart they already are and, with few parameters, drives
    them off the data; in the released form the self term dominates C_j once the neighbours
    are a few tau away, and the repulsion fades.
    """
    n_params = u.shape[0]
    size = batch.shape[0]
    tau = float(temperature)
    norms = np.linalg.norm(u, axis=1, keepdims=True)
    theta = u / norms
    sim = batch @ theta.T  # (M, B)
    nearest = np.argmax(sim, axis=1)
    s = sim[np.arange(size), nearest]
    # Per-cluster sums of (weighted) samples, by sorting on c_i: O(M d), no (M x B) one-hot.
    order = np.argsort(nearest, kind="stable")
    counts = np.bincount(nearest, minlength=n_params)
    owners = np.flatnonzero(counts)
    starts = np.concatenate(([0], np.cumsum(counts[owners])[:-1]))

    def cluster_sum(values: np.ndarray) -> np.ndarray:
        out = np.zeros((n_params, *values.shape[1:]), dtype=values.dtype)
        out[owners] = np.add.reduceat(values[order], starts, axis=0)
        return out

    if objective == "reference":
        # Every similarity is <= 1, so exp((x - 1)/tau) <= 1: scaling numerator and denominator
        # by e^{-1/tau} keeps the ratios exact and cannot overflow for any tau.
        kernel = np.exp((theta @ theta.T - 1.0) / tau)  # (B, B), symmetric
        c_sum = kernel.sum(axis=0)  # C_j e^{-1/tau}
        a = np.exp((s - 1.0) / tau)
        z = a + balance * c_sum[nearest]
        loss = float(-np.mean((s - 1.0) / tau - np.log(z)))
        weight = (1.0 - a / z).astype(batch.dtype)
        grad = cluster_sum(weight[:, None] * batch)
        coef = cluster_sum((balance / z).astype(batch.dtype))
        grad -= coef[:, None] * (kernel @ theta)
        grad *= -1.0 / (size * tau)
    elif objective == "paper":
        grad = cluster_sum(batch) * (-1.0 / (size * tau))
        spread = 0.0
        if n_params > 1:
            logits = (theta @ theta.T) / tau
            np.fill_diagonal(logits, -np.inf)
            top = logits.max(axis=1, keepdims=True)
            expd = np.exp(logits - top)
            total = expd.sum(axis=1, keepdims=True)
            prob = expd / total
            spread = float((np.log(total) + top).mean())
            # d/d theta_j of the log-sum-exp terms: ((P + P^T) theta)_j / (B tau).
            grad += (balance / (n_params * tau)) * ((prob + prob.T) @ theta)
        loss = float(-s.mean() / tau + balance * spread)
    else:
        raise DashselError(f"objective must be 'reference' or 'paper', got {objective!r}")

    # Back through theta = u / ||u||: drop the radial part and scale by 1/||u||.
    grad = (grad - np.sum(grad * theta, axis=1, keepdims=True) * theta) / norms
    return loss, grad.astype(u.dtype, copy=False)


def match_parameters(features: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Map each parameter, in order, to its most similar sample not chosen by an earlier one."""
    taken = np.zeros(features.shape[0], dtype=bool)
    chosen: list[int] = []
    for start in range(0, theta.shape[0], CHUNK):
        greedy_distinct_argmax(theta[start : start + CHUNK] @ features.T, taken, chosen)
    return np.asarray(chosen, dtype=np.intp)


def activeft_select(
    candidates: np.ndarray,
    budget: int,
    *,
    local: np.ndarray | None = None,
    random_state: RandomState = None,
    temperature: float = 0.07,
    balance: float = 1.0,
    n_iter: int = 300,
    learning_rate: float = 1e-3,
    batch_size: int = 4096,
    objective: Objective = "reference",
) -> np.ndarray:
    """Pick samples whose distribution matches the pool's while staying diverse (ActiveFT).

    From Xie et al., "Active Finetuning: Exploiting Annotation Budget in the Pretraining-
    Finetuning Paradigm" (CVPR 2023). Features are L2-normalised; ``budget`` continuous
    parameters, initialised at random samples, are optimised by :func:`fit_activeft`; then each
    parameter, in order, takes its most similar sample not already taken (the reference
    code's rule, which keeps the picks distinct).

    Adaptation: the pool's feature vectors (HOG, hashed term frequencies, ...) stand in for the
    frozen DINO features of the original. ActiveFT is one-shot with no labelled set, so ``local`` is
    checked but not used. The N-term is estimated on a random mini-batch of ``batch_size``
    samples per step when the pool is larger (the reference code uses the whole pool on a GPU).

    Parameters
    ----------
    candidates : ndarray of shape (n, d)
        Feature vectors of the pool's samples.
    budget : int
        Number of samples to pick (>= 1). ``budget >= n`` returns every index.
    local : ndarray of shape (m, d), optional
        Accepted for a common signature; not used (see above).
    random_state : int, Generator, SeedSequence or None
        Seeds the initial parameters and the mini-batches.
    temperature : float, default 0.07
        tau, the softmax temperature (paper's value).
    balance : float, default 1.0
        lambda, the weight of the diversity term (reference default).
    n_iter : int, default 300
        Adam steps (reference default ``max_iter``).
    learning_rate : float, default 1e-3
        Adam learning rate (reference default).
    batch_size : int, default 4096
        Samples per step for the distribution-matching term.
    objective : {"reference", "paper"}, default "reference"
        The released code's loss or the paper's printed one (see :func:`activeft_loss_grad`).
        We default to the released code: it is what the published results were produced with,
        and the printed form pushes few parameters far off the data.

    Returns
    -------
    ndarray of int, shape (min(budget, n),)
        Distinct indices into ``candidates``, in parameter order.

    Notes
    -----
    Time O(n_iter·(min(n, batch_size)·B·d + B²·d)) for the optimisation plus O(n·B·d) for
    the final matching; memory O(batch_size·B + B² + n·d).
    """
    x = check_features(candidates, "candidates")
    budget = check_budget(budget)
    check_local(local, x.shape[1])
    params = check_activeft_params(
        temperature=temperature,
        balance=balance,
        n_iter=n_iter,
        learning_rate=learning_rate,
        batch_size=batch_size,
        objective=objective,
    )
    n = x.shape[0]
    if budget >= n:
        return all_indices(n)
    feats = l2_normalise(x)
    fit = fit_activeft(feats, budget, rng=check_random_state(random_state), **params)
    return match_parameters(feats, fit.theta)
