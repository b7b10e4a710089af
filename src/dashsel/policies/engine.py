"""HiTS, dashsel's own selection engine: hierarchical top-two Thompson sampling with
empirical Bayes, for identifying the best k datasets (or the best percentile).

What it changes with respect to :class:`~dashsel.policies.dash.DaSH` (the paper's method,
kept as the reproduction), and why:

* **Hyperparameters learned from the run.** The group spread sigma0, the within-group spread
  sigmahat0, the reward noise sigma_r, the prior mean mu0 and the covariate weights beta are
  refitted by marginal likelihood (:func:`~dashsel.policies.hits_model.fit_hyper`) as rewards
  arrive. When groups carry no information sigma0 falls towards 0 and the model becomes a flat
  one with a shared, learnt prior; when they do, an untried dataset inherits its group's
  evidence as in DaSH.
* **Exact hierarchical posterior** (:func:`~dashsel.policies.hits_model.posterior_moments`)
  instead of the paper's pooled approximation.
* **Identification, not regret.** Each ask draws two joint posterior samples until their
  top-k sets differ and evaluates a dataset on which they disagree (the leader's or, with
  probability ``top_two``, the challenger's), an untried one if any is disputed: a top-k
  version of top-two Thompson sampling. Evaluations go to the top-k boundary and to untried
  members of promising groups, not to the current favourite again and again. While the
  groups are at least as likely to carry no information as some, an untried dataset that its
  group's credit alone puts into the recommended set is evaluated before it is recommended
  (look before crediting).
* **No repeated deterministic evaluations.** With ``deterministic=True`` the engine never asks
  for an evaluated dataset while an unevaluated one remains, and treats its reward as exact.
* **Datasets, not groups, are selected.** :meth:`HiTS.recommend` ranks every dataset by
  posterior mean across groups (averaged over the group share's uncertainty), with a guard:
  datasets of a group with no evaluation are only recommended when nothing else is left,
  unless the covariates have been shown trustworthy (some weight clearly positive).
* **Optional stopping**: :meth:`HiTS.should_stop` when the posterior probability that the
  recommended top-k is the true top-k reaches 1 - delta.
* **Training-free scores as covariates** (``reset(..., covariates=X)``): the prior mean of
  dataset d is theta_g + beta . x_d with beta learnt with the rest, shrunk towards 0, so
  uninformative or reversed scores lose their weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Self, overload

import numpy as np

from dashsel.errors import DashselError
from dashsel.hierarchy import Hierarchy
from dashsel.policies.base import (
    Policy,
    Posterior,
    Recommendation,
    check_count,
    validate_selection_rule,
)
from dashsel.policies.hits_model import (
    SCORE_LEANS,
    Hyper,
    HyperPrior,
    Moments,
    RewardStats,
    choose_disputed,
    fit_hyper,
    group_moments,
    posterior_moments,
    prior_direction,
    sample_joint,
    share_averaged_means,
)
from dashsel.random_state import RandomState, step_generator

__all__ = ["HiTS", "rank_top", "standardize_covariates"]

# Refit the hyperparameters after every reward up to this many rewards, then whenever the
# number of rewards has grown by REFIT_GROWTH since the last fit (O(log T) fits in all).
REFIT_EVERY_UNTIL = 30
REFIT_GROWTH = 1.15
# Pools at least this large and without covariates draw by groups (hits_model.topk_draw:
# O(groups + evaluated) per draw, same distribution) instead of one normal per dataset.
GROUPED_MIN_DATASETS = 20_000
# Prior probability, in the final ranking, that the groups carry no information at all (the
# group share is 0): even odds against "some share, as the fit's hyperprior says". The
# ranking averages the posterior means over the share's posterior under that prior (see
# HiTS.selection_means); the plug-in fit alone let a few lucky pairs of uninformative groups
# rank untried members above evaluated datasets (docs/engine.md, "Selection").
P_FLAT_GROUPS = 0.5
# Look before crediting: while the flat hypothesis (groups carry no information) has at
# least this posterior probability, an untried dataset that its group's credit alone puts into
# the recommended set, in place of an evaluated one, is evaluated next (HiTS._credited_untried).
# Above it the groups are trusted and the top-two draws decide. 1.0 turns the rule off.
VERIFY_FLAT = 0.5


def standardize_covariates(covariates: Any, n_datasets: int) -> np.ndarray | None:
    """Covariates as a float (n_datasets, p) array with zero mean and unit std per column.

    A 1-D array is one covariate. A constant column becomes 0 (it carries no information).
    Raises :class:`DashselError` for a wrong shape or a non-finite value.
    """
    if covariates is None:
        return None
    try:
        x = np.asarray(covariates, dtype=float)
    except (TypeError, ValueError):
        raise DashselError("covariates must be a numeric array (n_datasets, p)") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] != n_datasets:
        raise DashselError(
            f"covariates must have shape (n_datasets={n_datasets}, p), got {x.shape}"
        )
    if x.shape[1] == 0:
        return None
    if not np.all(np.isfinite(x)):
        raise DashselError("covariates hold NaN or infinite values: impute or drop them first")
    sd = x.std(axis=0)
    safe = np.where(sd > 0, sd, 1.0)
    return np.where(sd > 0, (x - x.mean(axis=0)) / safe, 0.0)


def rank_top(key: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values of ``key``, best first, ties in position order.

    O(N) (a partition) plus O(k log k); ``key`` must not hold NaN.
    """
    n = key.size
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, dtype=np.intp)
    v = -np.partition(-key, k - 1)[k - 1]  # the k-th largest value
    gt = np.flatnonzero(key > v)
    eq = np.flatnonzero(key == v)[: k - gt.size]
    sel = np.concatenate([gt, eq])
    return sel[np.lexsort((sel, -key[sel]))]


def _topk_mask(values: np.ndarray, k: int) -> np.ndarray:
    mask = np.zeros(values.size, dtype=bool)
    mask[np.argpartition(-values, k - 1)[:k]] = True
    return mask


class HiTS(Policy):
    """Hierarchical top-two Thompson sampling with empirical Bayes (dashsel's engine).

    Model (see :mod:`dashsel.policies.hits_model`)::

        theta_g           ~ N(mu0, sigma0^2)
        theta_d | theta_g ~ N(theta_g + beta . x_d, sigmahat0^2)
        r | theta_d       ~ N(theta_d, sigma_r^2)

    mu0, sigma0, sigmahat0, sigma_r and beta are estimated from the rewards by marginal
    likelihood after every reward (then on a geometric schedule, warm-started). The module
    docstring lists what this changes with respect to ``dash`` and why.

    Parameters
    ----------
    k : int, optional
        Size of the set the allocation identifies and :meth:`should_stop` checks (the run
        passes its ``--top-k``; give the same rule to :meth:`recommend`).
    percentile : float, optional
        Identify the datasets above this percentile instead (k = the matching count).
        Default (neither): the allocation targets the top 10% of the pool (at least one
        dataset).
    deterministic : bool, default False
        Repeating an evaluation returns the same reward (a table with one reward per
        dataset, training without bootstrap). The engine then never asks for an evaluated
        dataset while an unevaluated one remains, and treats rewards as exact (noise std
        ``min_std``).
    sigma0, sigmahat0, sigma_r : float, default 0.05, 0.05, 0.02
        Medians of the weak hyperprior on the group spread, the within-group spread and the
        reward noise (reward units; the defaults suit accuracies in [0, 1]). They matter only
        for the first few rewards.
    hyperprior_width : float, default 1.0
        Std of log(sigma) under the hyperprior.
    min_std : float, default 1e-3
        Floor of every std; the noise std of deterministic rewards.
    top_two : float, default 0.5
        Probability of evaluating the challenger's side of a disagreement rather than the
        leader's (the top-two parameter).
    delta : float, default 0.05
        :meth:`should_stop` answers True once P(recommended top-k is correct) >= 1 - delta.
    trust_z : float, default 2.58
        Covariates are trusted (so that groups without an evaluation may be recommended on
        their scores) once the rewards show their combined weight positive by at least this
        many posterior standard errors (under a prior centred on no effect: one-sided 99.5%).
    score_weight : float, default 1.0
        Prior mean of the covariate weights, in units of the utility spread along the
        ``score_lean`` direction (covariates are oriented higher = better): before any reward
        the engine ranks by the scores. 0 centres the prior on "no effect" (the scores must
        earn their weight from rewards alone).
    score_lean : {"equal", "lead"}, default "equal"
        Which scores that prior leans on. ``"equal"``: every covariate alike.
        ``"lead"``: the first covariate only (the default label-aware score, ``otdd``, when
        the run computes the scores; a table's first ``score_*`` column), the others centred
        on no effect: before any reward the engine ranks exactly as "scores only" does, and a
        label-free score that target-looking datasets with wrong labels fool gains weight
        only from rewards. Measured trade-off (docs/benchmarks/score-lean-lead/): better with
        mislabelled look-alikes in the pool, worse when the scores are reversed.

    Attributes
    ----------
    hyper_ : Hyper
        Hyperparameters in use (mu0, sigma0, sigmahat0, sigma_r, beta).
    stats_ : RewardStats
        Counts and sums of rewards per dataset.
    covariates_ : ndarray or None
        The standardised covariates given to :meth:`reset`.
    n_fits_ : int
        Hyperparameter fits so far.
    stop_reason_ : str or None
        Why :meth:`should_stop` last answered True.

    Notes
    -----
    ``ask`` is O(N) numpy per decision (two or a few joint posterior draws and a partition);
    on pools of at least ``GROUPED_MIN_DATASETS`` without covariates the draws are made by
    groups (:func:`~dashsel.policies.hits_model.topk_draw`, O(groups + evaluated datasets),
    same distribution), leaving one O(N) test of the exclusion mask (the mask of untried
    datasets is kept up to date by ``tell``);
    ``tell`` is O(1) plus a fit on the schedule above (O(evaluated datasets) per objective
    evaluation); :meth:`recommend` is O(N) numpy. :meth:`posterior` builds one Python object
    per dataset (the :class:`Posterior` API); :meth:`estimates` gives the same numbers as
    arrays.
    """

    name = "hits"

    def __init__(
        self,
        k: int | None = None,
        percentile: float | None = None,
        deterministic: bool = False,
        sigma0: float = 0.05,
        sigmahat0: float = 0.05,
        sigma_r: float = 0.02,
        hyperprior_width: float = 1.0,
        min_std: float = 1e-3,
        top_two: float = 0.5,
        delta: float = 0.05,
        trust_z: float = 2.58,
        score_weight: float = 1.0,
        score_lean: str = "equal",
    ) -> None:
        self.k = k
        self.percentile = percentile
        self.deterministic = deterministic
        self.sigma0 = sigma0
        self.sigmahat0 = sigmahat0
        self.sigma_r = sigma_r
        self.hyperprior_width = hyperprior_width
        self.min_std = min_std
        self.top_two = top_two
        self.delta = delta
        self.trust_z = trust_z
        self.score_weight = score_weight
        self.score_lean = score_lean
        self._validate()

    def _validate(self) -> None:
        validate_selection_rule(self.k, self.percentile)
        for name in ("sigma0", "sigmahat0", "sigma_r", "hyperprior_width", "min_std"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not (math.isfinite(v) and v > 0)
            ):
                raise DashselError(f"HiTS: {name} must be a positive finite number, got {v!r}")
        for name in ("top_two", "delta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                raise DashselError(f"HiTS: {name} must be in [0, 1], got {v!r}")
        if not isinstance(self.deterministic, bool):
            raise DashselError(
                f"HiTS: deterministic must be True or False, got {self.deterministic!r}"
            )
        if isinstance(self.trust_z, bool) or not isinstance(self.trust_z, int | float):
            raise DashselError(f"HiTS: trust_z must be a number, got {self.trust_z!r}")
        v = self.score_weight
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise DashselError(f"HiTS: score_weight must be a finite number >= 0, got {v!r}")
        if self.score_lean not in SCORE_LEANS:
            raise DashselError(
                f"HiTS: score_lean must be one of {', '.join(SCORE_LEANS)}, got {self.score_lean!r}"
            )

    # --- lifecycle -------------------------------------------------------------------------
    def reset(
        self,
        hierarchy: Hierarchy | Any,
        random_state: RandomState = 0,
        *,
        covariates: Any = None,
    ) -> Self:
        """Bind to a pool and start from the prior.

        Parameters
        ----------
        hierarchy : Hierarchy or pool
            The pool's hierarchy (or anything with ``.hierarchy``).
        random_state : int, Generator, SeedSequence or None
            Seed of every decision.
        covariates : array-like (n_datasets, p) or (n_datasets,), optional
            Training-free scores of each dataset, in pool order, **higher = expected better**
            (standardised internally). They shift each dataset's prior mean by beta . x_d,
            with beta learnt from the rewards (a reversed or useless score ends with a weight
            near 0 or negative).
        """
        self._covariates_in = covariates
        return super().reset(hierarchy, random_state)  # checks the pool and the seed

    def _reset(self, hierarchy: Hierarchy) -> None:
        self._validate()
        n = hierarchy.n_datasets
        self.covariates_ = standardize_covariates(getattr(self, "_covariates_in", None), n)
        self._covariates_in = None
        # The hierarchy's group codes (order of first appearance, as group_ids): no pass over
        # the group labels in Python.
        self._group_of = np.asarray(hierarchy.group_index, dtype=np.intp)
        self._n_groups = hierarchy.n_groups
        self.stats_ = RewardStats(n)
        self._all = np.ones(n, dtype=bool)  # "every dataset allowed", shared read-only
        self._all.flags.writeable = False
        self._untried_off: tuple[np.ndarray, np.ndarray] | None = None
        self._prior = HyperPrior(
            sigma0=float(self.sigma0),
            sigmahat0=float(self.sigmahat0),
            sigma_r=float(self.sigma_r),
            width=float(self.hyperprior_width),
            min_std=float(self.min_std),
            score_weight=float(self.score_weight),
            score_lean=str(self.score_lean),
        )
        self._direction = prior_direction(
            self.covariates_, float(self.score_weight), str(self.score_lean)
        )
        self.hyper_ = fit_hyper(
            self.stats_,
            self._group_of,
            self.covariates_,
            self._prior,
            deterministic=self.deterministic,
            direction=self._direction,
        )
        self.n_fits_ = 0
        self._next_fit = 1
        self._moments: Moments | None = None
        self.stop_reason_: str | None = None

    def _tell(self, index: int, reward: float) -> None:
        self.stats_.add(index, reward)
        total = self.stats_.total
        if total <= REFIT_EVERY_UNTIL or total >= self._next_fit:
            self.refit()
        self._moments = None

    def refit(self) -> Hyper:
        """Refit the hyperparameters now (``tell`` does it on its schedule), warm-started."""
        self._check_reset()
        self.hyper_ = fit_hyper(
            self.stats_,
            self._group_of,
            self.covariates_,
            self._prior,
            deterministic=self.deterministic,
            start=self.hyper_ if self.n_fits_ else None,
            direction=self._direction,
        )
        self.n_fits_ += 1
        self._next_fit = max(self.stats_.total + 1, math.ceil(self.stats_.total * REFIT_GROWTH))
        self._moments = None
        return self.hyper_

    def moments(self) -> Moments:
        """Posterior moments under the current hyperparameters (cached until the next tell)."""
        self._check_reset()
        if self._moments is None:
            self._moments = posterior_moments(
                self.hyper_, self.stats_, self._group_of, self._n_groups, self.covariates_
            )
        return self._moments

    # --- ask -------------------------------------------------------------------------------
    def target_k(self) -> int:
        """Size of the set the allocation tries to identify."""
        self._check_reset()
        n = self.hierarchy_.n_datasets
        if self.k is not None:
            return min(int(self.k), n)
        if self.percentile is not None:
            return max(1, min(n, math.ceil(n * (1.0 - float(self.percentile) / 100.0))))
        return max(1, math.ceil(0.1 * n))

    @overload
    def ask(self, *, exclude: Iterable[str] = ()) -> str: ...
    @overload
    def ask(self, n: int, *, exclude: Iterable[str] = ()) -> list[str]: ...
    def ask(self, n: int | None = None, *, exclude: Iterable[str] = ()) -> str | list[str]:
        """The next dataset to evaluate, or a batch of ``n`` distinct ones.

        ``exclude`` (e.g. datasets whose evaluation is pending) is never returned while another
        dataset remains; a batch holds distinct datasets while the pool allows.
        """
        self._check_reset()
        h = self.hierarchy_
        # The base class's checks: ids must be strings of the pool, a lone str is one id.
        mask = self._exclusion_mask(exclude)
        blocked = np.zeros(h.n_datasets, dtype=bool) if mask is None else mask
        if n is None:  # id_at: the run's look-up of the id needs no index of the pool
            return h.id_at(self._next_index(blocked))
        n = check_count("ask(n): n", n)
        out: list[str] = []
        for _ in range(n):
            i = self._next_index(blocked)
            blocked[i] = True
            out.append(h.id_at(i))
        return out

    def _next_index(self, blocked: np.ndarray) -> int:
        rng = step_generator(self.seed_, self.n_asked_)
        i = self._choose(rng, blocked)
        self.n_asked_ += 1
        return i

    def _ask_one(self, rng: np.random.Generator, step: int) -> str:
        blocked = np.zeros(self.hierarchy_.n_datasets, dtype=bool)
        return self.hierarchy_.dataset_ids[self._choose(rng, blocked)]

    def _allowed(self, blocked: np.ndarray) -> np.ndarray:
        """Datasets an ask may return (read-only). Without anything blocked this is a mask
        kept up to date by ``tell`` (no O(N) pass; the untried datasets when deterministic),
        and the untried datasets it leaves out are remembered for the grouped path."""
        untried = self.stats_.untried  # counts == 0, maintained in O(1) per tell
        if not blocked.any():
            # Nothing blocked: no untried dataset is left out (all allowed, or the untried).
            allowed = untried if self.deterministic and self.stats_.n_untried else self._all
            self._untried_off = (allowed, np.zeros(0, dtype=np.intp))
            return allowed
        allowed = ~blocked
        if not allowed.any():
            allowed = np.ones_like(blocked)
        if self.deterministic:
            fresh = allowed & untried
            if fresh.any():
                allowed = fresh
        return allowed

    def _choose(self, rng: np.random.Generator, blocked: np.ndarray) -> int:
        allowed = self._allowed(blocked)
        n, k = self.hierarchy_.n_datasets, self.target_k()
        grouped = k < n and self.covariates_ is None and n >= GROUPED_MIN_DATASETS
        if grouped:
            i = self._choose_grouped(rng, allowed, k)
            if i is not None:
                return i
        m = self.moments()
        if self.covariates_ is not None and k < n:
            # Verify before searching the boundary: when the scores alone rank datasets of a
            # group nobody has evaluated into the top k, evaluate one of them first. Left to
            # the draws, a group far ahead on its scores looks settled, the boundary below it
            # gets every evaluation, and a score slope fitted among the others can sink it
            # without one look (measured on spam: 45 evaluations, the target's own group never
            # tried).
            top = rank_top(m.mean, k)
            unverified = top[~m.group_evaluated[self._group_of[top]] & allowed[top]]
            if unverified.size:
                return self._verification(unverified, rng)
        if k < n:
            credited = self._credited_untried(allowed, k)
            if credited is not None:
                return credited
        if k < n and not grouped:
            draw = self._draw_function(m, rng)
            draw1 = draw()
            s1 = _topk_mask(draw1, k)
            for _ in range(20):  # a few redraws until the challenger's top-k differs
                s2 = _topk_mask(draw(), k)
                if (s1 != s2).any():
                    leader, challenger = s1 & ~s2 & allowed, s2 & ~s1 & allowed
                    first, second = (
                        (challenger, leader)
                        if rng.random() < self.top_two
                        else (leader, challenger)
                    )
                    cand = first if first.any() else second
                    if cand.any():
                        # Uniformly among the disputed datasets, untried ones first: while an
                        # untried dataset is in dispute, a repeat teaches less than a new view.
                        idx = np.flatnonzero(cand)
                        fresh = idx[self.stats_.counts[idx] == 0]
                        if fresh.size:
                            idx = fresh
                        return int(idx[rng.integers(idx.size)])
                    break
        # Settled (or k >= N): the allowed dataset most ambiguous about the top-k boundary.
        if k < n:
            top = rank_top(m.mean, k + 1)
            c = 0.5 * (m.mean[top[k - 1]] + m.mean[top[k]])
        else:
            c = -np.inf
        with np.errstate(divide="ignore", invalid="ignore"):
            score = -np.abs(m.mean - c) / np.sqrt(m.var) if k < n else m.var.copy()
        score = np.where(allowed, score, -np.inf)
        best = np.flatnonzero(score == score.max())
        return int(best[0]) if best.size == 1 else int(rng.choice(best))

    def _verification(self, unverified: np.ndarray, rng: np.random.Generator) -> int:
        """Which unverified top-k dataset to evaluate: one drawn uniformly among those of the
        group that holds the most of them (ties: the group of the best-ranked one).

        The look is meant for the group: its answer decides how far the group's untried
        members are believed. The group that brings the most datasets into the top k
        comes first, before a group that is there through one member only (a near-copy or
        a foreign dataset mixed into a source, unlike its group-mates, whose reward then
        credited the whole group: digits5-100 with traps, docs/engine.md). A uniform member
        rather than the best-scored one: the best-scored member is the same in every run,
        and when it happens to be a weak one, every run misjudges the group the same way.
        """
        g = self._group_of[unverified]  # rank order, best first
        held = np.bincount(g, minlength=self._n_groups)[g]
        first = int(np.flatnonzero(held == held.max())[0])
        members = unverified[g == g[first]]
        return int(members[rng.integers(members.size)])

    def _draw_function(self, m: Moments, rng: np.random.Generator) -> Callable[[], np.ndarray]:
        """Joint posterior draws of every dataset's utility for the top-two choice, with the
        covariate weights drawn too.

        The moments hold the weights at their posterior mean; drawing them from their
        posterior instead lets a draw disagree with the scores as much as the rewards allow.
        With the weights held fixed, scores that the rewards have not confirmed still ruled
        every draw, and a group nobody had evaluated, ranked low by reversed scores, was
        never disputed and never tried (digits5-100, reversed scores: 1 of 30 runs ended
        at 42% with the target's own group untried after 30 evaluations).

        A weight change delta moves a dataset's mean by delta . (x_d - xbar_g), xbar_g the
        mean covariates of its group's evaluated datasets (0 for a group nobody evaluated):
        an evaluated group's level is held by its rewards, an untried group's is not. This
        is the first-order shift of the exact conditional posterior; O(N p) per draw.
        """
        x, h = self.covariates_, self.hyper_
        if x is None or h.beta.size == 0 or self.stats_.total == 0:
            return lambda: sample_joint(m, self._group_of, rng)
        ev = self.stats_.evaluated()
        g_ev = self._group_of[ev]
        per_group = np.bincount(g_ev, minlength=self._n_groups).astype(float)
        ng = self._n_groups
        sums = [np.bincount(g_ev, weights=x[ev, j], minlength=ng) for j in range(x.shape[1])]
        xbar = np.column_stack(sums) / np.maximum(per_group, 1.0)[:, None]
        rel = x - xbar[self._group_of]
        p = h.beta.size
        chol = np.linalg.cholesky(h.beta_cov + 1e-15 * np.eye(p))

        def draw() -> np.ndarray:
            return sample_joint(m, self._group_of, rng) + rel @ (chol @ rng.standard_normal(p))

        return draw

    def _credited_untried(self, allowed: np.ndarray, k: int) -> int | None:
        """Look before crediting: while the groups are at least ``VERIFY_FLAT`` likely to carry
        no information, the best allowed untried dataset of the recommended top k when it
        stands there in place of an evaluated dataset (only its group's credit can put it
        there), else None.

        Why: with few pairs per group the share of the spread that groups explain is poorly
        determined, and on groups that carry nothing the credit of a few lucky rewards put
        untried members into the final set in place of evaluated datasets that were truly
        good (the whole of the loss to flat methods at 1/8 of the budget, docs/engine.md). One
        evaluation replaces the guess by a reward; where groups carry nothing, any untried
        dataset is a random draw, so looking at this one costs nothing. O(N) per call.
        """
        if not self.stats_.total or self.flat_probability() < VERIFY_FLAT:
            return None
        rec = self._recommend_indices(k, None)
        counts = self.stats_.counts
        untried = rec[(counts[rec] == 0) & allowed[rec]]
        if not untried.size:
            return None
        in_rec = np.zeros(counts.size, dtype=bool)
        in_rec[rec] = True
        if in_rec[self.stats_.evaluated()].all():
            return None  # nothing evaluated is displaced: the set is filling, not crediting
        return int(untried[0])

    def _choose_grouped(self, rng: np.random.Generator, allowed: np.ndarray, k: int) -> int | None:
        """The top-two choice above, by groups (no per-dataset draw; same distribution)."""
        cached = self.__dict__.get("_group_sizes")  # (group_of it was counted from, sizes)
        if cached is None or cached[0] is not self._group_of:
            cached = (self._group_of, np.bincount(self._group_of, minlength=self._n_groups))
            self._group_sizes = cached
        sizes = cached[1]
        gm = group_moments(self.hyper_, self.stats_, self._group_of, sizes)
        counts = self.stats_.counts
        hint = self.__dict__.get("_untried_off")  # (allowed, its untried left out) of _allowed
        if hint is not None and hint[0] is allowed:
            off = hint[1]
        else:
            off = np.flatnonzero(~allowed)
            off = off[counts[off] == 0]  # untried datasets not allowed
        untried_blocked = np.bincount(self._group_of[off], minlength=self._n_groups)

        def pick_untried(g: int) -> int:
            # Uniform over the allowed untried datasets of group g, by rejection from the
            # whole pool (about N / members tries); a scan of the group after a few rounds.
            for _ in range(4):
                size = min(4 * counts.size // max(int(sizes[g]), 1) + 16, 1 << 16)
                i = rng.integers(counts.size, size=size)
                ok = i[(self._group_of[i] == g) & (counts[i] == 0) & allowed[i]]
                if ok.size:
                    return int(ok[0])
            members = np.flatnonzero((self._group_of == g) & (counts == 0) & allowed)
            return int(members[rng.integers(members.size)])

        return choose_disputed(
            gm,
            k,
            rng,
            top_two=float(self.top_two),
            untried_blocked=untried_blocked,
            evaluated_allowed=allowed[gm.evaluated],
            pick_untried=pick_untried,
        )

    # --- beliefs ---------------------------------------------------------------------------
    def estimates(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std of every dataset (pool order) as arrays; O(N)."""
        m = self.moments()
        return m.mean.copy(), np.sqrt(m.var)

    def posterior(self) -> Posterior:
        """Exact posteriors of the model under the current hyperparameters (group beliefs are
        the group utilities theta_g, before covariate shifts)."""
        self._check_reset()
        h, m = self.hierarchy_, self.moments()
        counts = self.stats_.counts
        # Over the evaluated datasets only: no float copy of all N counts (8 MB at 10^6).
        ev = self.stats_.evaluated()
        g_counts = np.bincount(self._group_of[ev], weights=counts[ev], minlength=self._n_groups)
        return Posterior.from_arrays(
            h,
            # The moments' own array (never written after it is built; the posterior
            # holds a read-only view): no 8 MB copy at 10^6 datasets. The counts change
            # with every tell, so they are copied.
            mean=m.mean,
            std=np.sqrt(m.var),
            pulls=counts.astype(np.int64),
            group_mean=np.array(m.group_mean, dtype=float),
            group_std=np.sqrt(m.group_var),
            group_pulls=g_counts.astype(np.int64),
        )

    def covariates_trusted(self) -> bool:
        """True once the rewards have shown the scores trustworthy: the scores' combined
        weight (along the prior's equal-weight direction), estimated under a prior centred on
        *no effect*, is positive by at least ``trust_z`` posterior standard errors. The
        engine's own prior leans towards the scores; this check does not, so a prior alone
        never vouches for an untried group."""
        self._check_reset()
        h = self.hyper_
        if self.covariates_ is None or h.beta.size == 0 or self.stats_.total == 0:
            return False
        b, cov = h.beta_evidence, h.beta_cov
        d = self._direction
        if d.size and np.any(d != 0):
            u = d / np.linalg.norm(d)
            sd = math.sqrt(max(float(u @ cov @ u), 1e-300))
            return bool(float(u @ b) / sd >= float(self.trust_z))
        se = np.sqrt(np.maximum(np.diag(cov), 1e-300))
        return bool(np.any(b / se >= float(self.trust_z)))

    def selection_means(self) -> np.ndarray:
        """What the final choice ranks by: each dataset's posterior mean averaged over the
        group share's uncertainty (:func:`~dashsel.policies.hits_model.share_averaged_means`,
        prior probability ``P_FLAT_GROUPS`` that groups carry no information), instead of
        the plug-in means of :meth:`estimates`. Cached until the next tell; O(N)."""
        m = self.moments()
        cached = self.__dict__.get("_selection")
        if cached is None or cached[0] is not m:
            mean, pf = share_averaged_means(
                self.hyper_,
                self.stats_,
                self._group_of,
                self._n_groups,
                self.covariates_,
                self._prior,
                p_flat=P_FLAT_GROUPS,
                direction=self._direction,
            )
            cached = (m, mean, pf)
            self._selection = cached
        return cached[1]

    def flat_probability(self) -> float:
        """Posterior probability that the groups carry no information at all (the group
        share is 0), under the prior ``P_FLAT_GROUPS`` of :meth:`selection_means`; 0 while
        fewer than three groups hold two evaluated datasets (the share is not identified
        yet). Cached until the next tell."""
        self.selection_means()
        return float(self._selection[2])

    def eligible(self) -> np.ndarray:
        """Datasets the final choice may take before the others: those of a group with an
        evaluation (all of them once the covariates are trusted, or before any reward)."""
        m = self.moments()
        if self.stats_.total == 0 or self.covariates_trusted():
            return np.ones(m.mean.size, dtype=bool)
        return m.group_evaluated[self._group_of]

    # --- final choice ----------------------------------------------------------------------
    def _recommend_indices(self, k: int | None, percentile: float | None) -> np.ndarray:
        mean, ok = self.selection_means(), self.eligible()
        if percentile is not None:
            cut = float(np.percentile(mean, percentile))
            kept = np.flatnonzero(ok & (mean >= cut))
            if kept.size == 0:
                kept = rank_top(np.where(ok, mean, -np.inf), 1)
            return kept[np.lexsort((kept, -mean[kept]))]
        k = 1 if k is None else int(k)
        first = np.flatnonzero(ok)
        chosen = first[rank_top(mean[first], k)]
        if chosen.size < k:  # fewer eligible datasets than k: fill from the others
            rest = np.flatnonzero(~ok)
            chosen = np.concatenate([chosen, rest[rank_top(mean[rest], k - chosen.size)]])
        return chosen

    def recommend(self, k: int | None = None, percentile: float | None = None) -> Recommendation:
        """Rank every dataset by posterior mean, across groups; keep the top ``k`` or those at
        or above the ``percentile``-th percentile of all posterior means. The means are
        averaged over the group share's uncertainty (:meth:`selection_means`), so that a few
        lucky pairs cannot carry the untried members of a group that carries no information.

        Guard: a dataset of a group with no evaluation comes after every dataset of evaluated
        groups (and never passes a percentile) unless the covariates are trusted
        (:meth:`covariates_trusted`). Default (neither): the single best, as for every
        policy. O(N) numpy.
        """
        self._check_reset()
        validate_selection_rule(k, percentile)
        idx = self._recommend_indices(k, percentile)
        h = self.hierarchy_
        chosen = tuple(h.dataset_ids[i] for i in idx)
        groups = tuple(dict.fromkeys(h.groups[i] for i in idx))
        return Recommendation(chosen, groups)

    # --- stopping --------------------------------------------------------------------------
    def prob_correct(self, draws: int = 200) -> float:
        """Posterior probability that the recommended set (the constructor's rule, or the
        target k) is exactly the true top set: Monte Carlo over ``draws`` joint draws."""
        self._check_reset()
        if self.percentile is not None and self.k is None:
            rec = self._recommend_indices(None, self.percentile)
        else:
            rec = self._recommend_indices(self.target_k(), None)
        n, k = self.hierarchy_.n_datasets, rec.size
        if k >= n:
            return 1.0
        m = self.moments()
        rng = step_generator(self.seed_ ^ 0x5EED5EED, self.n_told_)
        target = np.zeros(n, dtype=bool)
        target[rec] = True
        hits = 0
        chunk = max(1, min(draws, 2_000_000 // max(n, 1)))
        done = 0
        while done < draws:
            b = min(chunk, draws - done)
            theta = sample_joint(m, self._group_of, rng, size=b)
            top = np.argpartition(-theta, k - 1, axis=1)[:, :k]
            hits += int(target[top].all(axis=1).sum())
            done += b
        return hits / draws

    def should_stop(self, draws: int = 200) -> bool:
        """True when P(the recommended top-k is correct) >= 1 - delta; sets ``stop_reason_``."""
        self._check_reset()
        if self.stats_.total == 0:
            return False
        p = self.prob_correct(draws)
        if p >= 1.0 - float(self.delta):
            self.stop_reason_ = (
                f"settled: P(recommended top-{self.target_k()} is correct) = {p:.3f} >= "
                f"{1.0 - float(self.delta):.3f} after {self.stats_.total} evaluations"
            )
            return True
        return False
