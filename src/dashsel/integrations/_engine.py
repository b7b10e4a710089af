"""What the Optuna and Ray Tune integrations share: rebuild a policy from a trial history.

Both integrations are stateless in Optuna's sense: the tool keeps the trials (an Optuna storage,
Tune's searcher checkpoint), and every decision rebuilds the policy from them: reset with the
seed, replay the finished trials in order, then ask with the pending datasets excluded. The
policy contract (the t-th ask depends only on the seed, t and the rewards told) makes that
rebuild give what an uninterrupted in-memory policy would have asked.
"""

from __future__ import annotations

import copy
import inspect
import math
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from dashsel.errors import DashselError
from dashsel.hierarchy import Hierarchy
from dashsel.policies import Policy, make_policy
from dashsel.policies import base as _policy_base
from dashsel.policies.base import validate_selection_rule

__all__ = ["Engine", "as_hierarchy", "default_policy_name", "reward_of"]

#: Largest reward a policy accepts (1e100); a larger value counts as a failed trial.
_MAX_ABS_REWARD = float(getattr(_policy_base, "MAX_ABS_REWARD", math.inf))


def default_policy_name() -> str:
    """The library's default engine policy (``dashsel.policies.DEFAULT_POLICY``, else "dash")."""
    from dashsel import policies

    return str(getattr(policies, "DEFAULT_POLICY", "dash"))


def as_hierarchy(groups: Any) -> Hierarchy:
    """A :class:`Hierarchy` from ``{dataset id: group}``, a Pool or a Hierarchy."""
    if isinstance(groups, Hierarchy):
        return groups
    hierarchy = getattr(groups, "hierarchy", None)
    if isinstance(hierarchy, Hierarchy):
        return hierarchy
    if isinstance(groups, Mapping):
        return Hierarchy([str(d) for d in groups], [str(g) for g in groups.values()])
    raise DashselError(
        "groups must be a mapping of dataset id to group, a dashsel Pool or a Hierarchy, "
        f"not {type(groups).__name__}"
    )


def reward_of(value: Any, maximize: bool) -> float | None:
    """The engine's reward for an objective value: the value (negated when minimising), or
    None when it is not a finite number the policy accepts (the trial then counts as failed)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v) or abs(v) > _MAX_ABS_REWARD:
        return None
    return v if maximize else -v


class Engine:
    """Builds the policy from a trial history; the integrations' one decision procedure.

    Parameters
    ----------
    groups : mapping, Pool or Hierarchy
        Dataset id -> group.
    seed : int
        Seeds the policy (``policy.reset(hierarchy, seed)``).
    k, percentile : optional
        Target of the selection: what :meth:`recommend` returns by default, and passed to
        policies that take these parameters.
    budget : int, optional
        Number of dataset trials planned; passed to policies that take it.
    policy : str or Policy, optional
        A registered policy name (default: the library's default engine) or a Policy whose
        parameters are copied.
    policy_params : mapping, optional
        Keyword parameters for :func:`dashsel.policies.make_policy`.
    deterministic : bool
        Rewards do not change when a dataset is evaluated again, so a dataset that has a
        reward is not asked again while others remain.
    """

    def __init__(
        self,
        groups: Any,
        seed: int = 0,
        k: int | None = None,
        percentile: float | None = None,
        budget: int | None = None,
        policy: str | Policy | None = None,
        policy_params: Mapping[str, Any] | None = None,
        deterministic: bool = False,
    ) -> None:
        self.hierarchy = as_hierarchy(groups)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DashselError(f"seed must be an integer, got {seed!r}")
        validate_selection_rule(k, percentile)
        if budget is not None and (isinstance(budget, bool) or int(budget) != budget or budget < 1):
            raise DashselError(f"budget must be a positive integer, got {budget!r}")
        self.seed = seed
        self.k = None if k is None else int(k)
        self.percentile = percentile
        self.budget = None if budget is None else int(budget)
        self.deterministic = bool(deterministic)
        self.policy_params = dict(policy_params or {})
        if isinstance(policy, Policy):
            if self.policy_params:
                raise DashselError("give policy_params with a policy name, not a Policy object")
            self._factory: Any = type(policy)
            self.policy_params = dict(policy.get_params())
            self.policy_name = getattr(policy, "name", type(policy).__name__)
        else:
            self.policy_name = default_policy_name() if policy is None else str(policy)
            self._factory = None
        self._target_params = self._policy_target_params()
        self._lock = threading.Lock()
        self._cache: tuple[tuple[tuple[str, float], ...], Policy] | None = None
        self.build()  # fail now, not at the first trial, on a bad name or parameter

    def _policy_target_params(self) -> dict[str, Any]:
        # The engine may aim its evaluations at the selection target and the budget, and use
        # deterministic rewards; pass them to a policy that takes them, unless the user set
        # them in policy_params.
        wanted = {
            "k": self.k,
            "percentile": self.percentile,
            "budget": self.budget,
            "deterministic": self.deterministic or None,
        }
        probe = self._make(self.policy_params)
        try:
            accepted = inspect.signature(type(probe)).parameters
        except (TypeError, ValueError):
            return {}
        return {
            name: value
            for name, value in wanted.items()
            if value is not None and name in accepted and name not in self.policy_params
        }

    def _make(self, params: Mapping[str, Any]) -> Policy:
        if self._factory is not None:
            return self._factory(**params)
        return make_policy(self.policy_name, **params)

    def build(self) -> Policy:
        """A fresh policy, reset on the pool with the seed."""
        params = {**self.policy_params, **getattr(self, "_target_params", {})}
        return self._make(params).reset(self.hierarchy, self.seed)

    def replay(self, history: Iterable[tuple[str, float]], n_asked: int | None = None) -> Policy:
        """A fresh policy told ``history`` (dataset id, reward) in order, its ask counter at
        ``n_asked`` (default: the number of trials told), as :meth:`Policy.replay` makes it."""
        history = tuple((str(d), float(r)) for d, r in history)
        for dataset_id, _ in history:
            self.hierarchy.index(dataset_id)  # names an unknown id in one line
        policy = self._told(history)
        policy.n_asked_ = len(history) if n_asked is None else max(int(n_asked), len(history))
        return policy

    def _told(self, history: tuple[tuple[str, float], ...]) -> Policy:
        # Each decision replays the whole history; keeping the last told (never asked) policy
        # and telling it only the new trials makes a study of T trials cost O(T) tells instead
        # of O(T^2). A copy is returned, so asks never touch the cached state.
        with self._lock:
            cached = self._cache
            if cached is not None and history[: len(cached[0])] == cached[0]:
                policy, new = self._copy(cached[1]), history[len(cached[0]) :]
            else:
                policy, new = self.build(), history
            for dataset_id, reward in new:
                policy.tell(dataset_id, reward)
            if new or cached is None:
                self._cache = (history, self._copy(policy))
        return policy

    def _copy(self, policy: Policy) -> Policy:
        # The hierarchy is immutable: share it rather than copy its index.
        return copy.deepcopy(policy, memo={id(self.hierarchy): self.hierarchy})

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_cache"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def choose(
        self,
        history: Sequence[tuple[str, float]],
        n_asked: int,
        pending: Collection[str] = (),
        failed: Collection[str] = (),
        allowed: Collection[str] | None = None,
    ) -> str:
        """The dataset for the next trial.

        Parameters
        ----------
        history : sequence of (dataset id, reward)
            Finished trials in the order to tell them.
        n_asked : int
            Step number of this decision (trials started before it).
        pending : collection of str
            Datasets of trials running now: not asked again while others remain.
        failed : collection of str
            Datasets whose trials failed: set aside while others remain (unless they also
            have a reward).
        allowed : collection of str, optional
            The only ids that may be returned (the choices the tool offers); default: all.
        """
        policy = self.replay(history, n_asked)
        told = {d for d, _ in history}
        exclude = set(pending) | (set(failed) - told)
        if self.deterministic:
            exclude |= told
        forbidden: set[str] = set()
        if allowed is not None:
            allowed = set(allowed)
            unknown = sorted(allowed - set(self.hierarchy.dataset_ids))
            if unknown:
                raise DashselError(
                    f"dataset choices not in the pool's groups: {', '.join(unknown[:5])}"
                    f"{', ...' if len(unknown) > 5 else ''}"
                )
            forbidden = set(self.hierarchy.dataset_ids) - allowed
        choice = _ask(policy, exclude | forbidden)
        if choice in forbidden:
            # Every allowed dataset is pending or set aside: repeat one of them rather than
            # return an id the tool does not offer.
            choice = _ask(self.replay(history, n_asked), forbidden)
            if choice in forbidden:
                choice = next(d for d in self.hierarchy.dataset_ids if d not in forbidden)
        return choice

    def recommend(
        self,
        history: Sequence[tuple[str, float]],
        k: int | None = None,
        percentile: float | None = None,
        failed: Collection[str] = (),
    ) -> list[str]:
        """Dataset ids, best first, by the policy's final rule after ``history``.

        ``k`` / ``percentile`` default to the target given at construction. Datasets in
        ``failed`` without a reward are left out (their training did not work).
        """
        if not history:
            raise DashselError(
                "no trial has finished with a finite value yet: nothing to recommend"
            )
        validate_selection_rule(k, percentile)
        if k is None and percentile is None:
            k, percentile = self.k, self.percentile
        dropped = set(failed) - {d for d, _ in history}
        policy = self.replay(history)
        if percentile is not None:
            chosen = policy.recommend(percentile=percentile).datasets
            return [d for d in chosen if d not in dropped] or list(chosen[:1])
        k = 1 if k is None else k
        # Ask for enough to fill k after leaving the failed datasets out.
        n = min(k + len(dropped), self.hierarchy.n_datasets)
        chosen = [d for d in policy.recommend(k=n).datasets if d not in dropped]
        return chosen[:k]


def _ask(policy: Policy, exclude: set[str]) -> str:
    # Sorted, so the excluded set reaches the policy in the same order in every process.
    return str(policy.ask(exclude=tuple(sorted(exclude))))
