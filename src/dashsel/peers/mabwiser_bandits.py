"""MABWiser's flat bandits as dataset-selection policies: Thompson sampling and UCB1.

Every dataset is one arm; groups are ignored (that is what "flat" means, and what DaSH is
compared against). Tells go to ``MAB.partial_fit``, asks to ``MAB.predict``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from dashsel.errors import DashselError, require
from dashsel.hierarchy import Hierarchy
from dashsel.policies._stats import ArmStats, masked_argmax, posterior_of
from dashsel.policies.base import Policy, Posterior
from dashsel.random_state import derive_seed

# Distinguishes the binarisation stream from every step stream (those use 2-word seeds).
_BINARIZE_STREAM = 0xB1A5


def _require_mabwiser(purpose: str) -> Any:
    # The top-level package first: a cached ``mabwiser.mab`` would otherwise mask an
    # uninstalled (or blocked) ``mabwiser``.
    require("mabwiser", "peers", purpose)
    return require("mabwiser.mab", "peers", purpose)


class _MabwiserPolicy(Policy):
    """Shared state: a MABWiser ``MAB`` over dataset ids plus empirical reward sums."""

    def _learning_policy(self, mab_module: Any) -> Any:
        raise NotImplementedError

    def _reset(self, hierarchy: Hierarchy) -> None:
        mab_module = _require_mabwiser(f"the {type(self).__name__} peer")
        self.mab_ = mab_module.MAB(
            arms=list(hierarchy.dataset_ids),
            learning_policy=self._learning_policy(mab_module),
            seed=derive_seed(self.seed_, 0),
            n_jobs=1,
        )
        # An empty fit marks the MAB as fitted, so predict works from the prior before the
        # first tell (Thompson sampling then draws every arm from Beta(1, 1)).
        self.mab_.fit([], [])
        self.rewards_ = ArmStats(hierarchy)

    def _use_rng(self, rng: np.random.Generator) -> None:
        """Point the MAB's random state at this step's generator.

        MABWiser keeps one RNG (``MAB._rng``, shared with ``MAB._imp.rng``) that advances
        across predictions; swapping in the step generator makes the t-th prediction depend
        only on (seed, t) and the history, as the policy contract demands.
        """
        from mabwiser.utils import create_rng

        wrapper = create_rng(0)
        wrapper.rng = rng
        self.mab_._rng = wrapper
        self.mab_._imp.rng = wrapper

    def _tell(self, index: int, reward: float) -> None:
        self.mab_.partial_fit([self.hierarchy_.dataset_ids[index]], [reward])
        self.rewards_.add(index, reward)

    def _predict(self, excluded: np.ndarray | None) -> str | int:
        """MABWiser's choice, or its best arm among those ``excluded`` allows.

        ``predict`` is the argmax of ``predict_expectations`` (the same draws), so masking the
        expectations changes the choice and nothing else.
        """
        if excluded is None:
            return str(self.mab_.predict())
        exp = self.mab_.predict_expectations()
        ids = self.hierarchy_.dataset_ids
        score = np.fromiter((exp[d] for d in ids), dtype=float, count=len(ids))
        return masked_argmax(score, excluded)

    def _dataset_means(self) -> np.ndarray:
        return self.rewards_.empirical_means()

    def posterior(self) -> Posterior:
        """Empirical mean reward per dataset and group (not the exploration score)."""
        self._check_reset()
        return posterior_of(self.hierarchy_, self.rewards_)


class MabwiserTS(_MabwiserPolicy):
    """MABWiser's Thompson sampling over datasets (flat, Beta-Bernoulli).

    Parameters
    ----------
    binarize : {"bernoulli", "median"}, default "bernoulli"
        How a reward becomes the 0/1 outcome MABWiser's Beta-Bernoulli model needs.

        * ``"bernoulli"``: a success with probability equal to the reward (clipped to
          [0, 1]). This is the standard way to run Beta-Bernoulli Thompson sampling on
          rewards in [0, 1] such as accuracies (Agrawal & Goyal, 2012): the success
          probability of an arm equals its mean reward, so the Beta posterior tracks it.
          Rewards outside [0, 1] (accuracy *gains* can be negative) are clipped, with a
          warning, and then carry little information: use ``"median"`` for those.
        * ``"median"``: a success when the reward is at least the median of all rewards told
          so far (including this one). Scale-free, but the threshold drifts as rewards
          arrive and earlier outcomes are not revised.

    Notes
    -----
    The binarisation is the adaptation: DaSH models rewards as Gaussian, MABWiser's Thompson
    sampling only as Bernoulli. The Bernoulli draw for the i-th told reward uses a generator
    seeded by (seed, i), so a journal replayed into a fresh policy binarises it identically.
    Each ask samples the Beta posteriors with the step's generator. ``recommend`` ranks by the
    empirical mean reward, not by a Beta draw or the Beta mean of binarised outcomes.
    """

    name = "mabwiser-ts"

    def __init__(self, binarize: str = "bernoulli") -> None:
        self.binarize = binarize

    def _learning_policy(self, mab_module: Any) -> Any:
        if self.binarize not in ("bernoulli", "median"):
            raise DashselError(f"binarize must be 'bernoulli' or 'median', got {self.binarize!r}")
        return mab_module.LearningPolicy.ThompsonSampling(binarizer=self._binarizer)

    def _reset(self, hierarchy: Hierarchy) -> None:
        self._told_rewards_: list[float] = []
        self._warned_clip_ = False
        super()._reset(hierarchy)

    def _binarizer(self, arm: Any, reward: float) -> int:
        """Called by MABWiser inside ``partial_fit`` for the reward being told now."""
        if self.binarize == "median":
            return int(reward >= float(np.median(self._told_rewards_)))
        p = min(max(reward, 0.0), 1.0)
        if p != reward and not self._warned_clip_:
            self._warned_clip_ = True
            warnings.warn(
                f"MabwiserTS(binarize='bernoulli') needs rewards in [0, 1]; got {reward!r} "
                "(clipped). Use binarize='median' for rewards on another scale.",
                UserWarning,
                stacklevel=2,
            )
        # n_told_ is the 0-based position of this tell: the base class counts it after.
        u = np.random.default_rng(derive_seed(self.seed_, self.n_told_, _BINARIZE_STREAM))
        return int(u.random() < p)

    def _tell(self, index: int, reward: float) -> None:
        self._told_rewards_.append(reward)
        super()._tell(index, reward)

    def _ask_one(
        self, rng: np.random.Generator, step: int, excluded: np.ndarray | None = None
    ) -> str | int:
        self._use_rng(rng)
        return self._predict(excluded)


class MabwiserUCB1(_MabwiserPolicy):
    """MABWiser's UCB1 over datasets (flat).

    Parameters
    ----------
    alpha : float, default 1.0
        Width of the confidence bonus: score = mean + alpha * sqrt(2 ln T / n).

    Notes
    -----
    MABWiser scores an arm that was never pulled 0 rather than +inf, so with positive rewards
    (accuracies) it would never try one. As in textbook UCB1, every dataset is therefore
    pulled once first, in a random order drawn from the step generator; MABWiser chooses
    from then on. UCB1 is deterministic given the history; the slots of ``ask(n)`` exclude
    one another, so a batch takes the n best UCB scores. ``recommend`` ranks by empirical
    mean reward, never by the UCB score (which favours rarely pulled arms).
    """

    name = "mabwiser-ucb"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def _learning_policy(self, mab_module: Any) -> Any:
        try:
            alpha = float(self.alpha)
        except (TypeError, ValueError):
            alpha = math.nan
        if not (math.isfinite(alpha) and alpha >= 0):
            raise DashselError(f"alpha must be a non-negative number, got {self.alpha!r}")
        return mab_module.LearningPolicy.UCB1(alpha=alpha)

    def _ask_one(
        self, rng: np.random.Generator, step: int, excluded: np.ndarray | None = None
    ) -> str | int:
        unpulled = self.rewards_.counts == 0
        if excluded is not None:
            unpulled &= ~excluded
        if unpulled.any():
            return int(rng.choice(np.flatnonzero(unpulled)))
        return self._predict(excluded)
