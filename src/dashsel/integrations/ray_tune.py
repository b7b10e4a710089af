"""A Ray Tune searcher that chooses each trial's training dataset with dashsel's engine.

>>> from ray import tune                                               # doctest: +SKIP
>>> from dashsel.integrations.ray_tune import DaSHSearcher             # doctest: +SKIP
>>> searcher = DaSHSearcher(groups, metric="accuracy", mode="max", k=3)  # doctest: +SKIP
>>> tuner = tune.Tuner(                                                # doctest: +SKIP
...     train_fn,
...     param_space={"epochs": 5},
...     tune_config=tune.TuneConfig(search_alg=searcher, num_samples=40,
...                                 max_concurrent_trials=4),
... )
>>> tuner.fit()                                                        # doctest: +SKIP
>>> searcher.recommend()                                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from dashsel.errors import DashselError, require
from dashsel.integrations._engine import Engine, reward_of
from dashsel.policies import Policy
from dashsel.random_state import derive_seed

require("ray.tune", "tune", "dashsel.integrations.ray_tune")

from ray.tune.search import Searcher  # noqa: E402
from ray.tune.search.sample import Categorical, Domain  # noqa: E402

__all__ = ["DaSHSearcher"]

#: Written in every saved state, to refuse a file that is not one.
_FORMAT = "dashsel-tune-searcher"
_VERSION = 1


class DaSHSearcher(Searcher):
    """A Ray Tune ``Searcher`` whose suggestions put a dataset id in ``config[param]``.

    Each suggestion rebuilds the policy from the trials so far (reset with ``seed``, tell the
    finished trials' rewards in the order they finished, ask with the datasets of running trials
    excluded), so concurrent trials train on different datasets where the pool allows, and a
    restored searcher continues as the original would have.

    Parameters
    ----------
    groups : mapping, Pool or Hierarchy
        Dataset id -> group.
    param : str, default "dataset"
        Config key that receives the dataset id. If ``param_space`` holds
        ``tune.choice([...])`` under this key, only those ids are chosen.
    metric : str, optional
        The reported metric that is the reward. ``TuneConfig(metric=...)`` sets it too.
    mode : {"max", "min"}, default "max"
        ``"min"``: the metric is negated for the engine (a loss). ``TuneConfig(mode=...)``,
        when given, takes precedence, as for Tune's own searchers.
    seed : int, default 0
        Seed of the engine and of the other ``param_space`` domains this searcher samples.
    k, percentile : optional
        Selection target: what :meth:`recommend` returns by default (default: the single best
        dataset); also given to a policy that takes these parameters.
    budget : int, optional
        Number of trials to suggest; then :meth:`suggest` returns ``Searcher.FINISHED``.
    policy : str or Policy, optional
        Policy name (default: the library's default engine) or a Policy whose parameters are
        copied.
    policy_params : mapping, optional
        Keyword parameters of the policy.
    deterministic : bool, default False
        A dataset gives the same metric each time, so one with a reward is not suggested again
        while others remain.

    Notes
    -----
    Other entries of ``param_space`` are passed through; random domains (``tune.uniform``,
    ``tune.choice``, ...) are sampled with a per-trial seed. Grid searches and
    ``tune.sample_from`` are not supported (Tune then refuses the search space).

    A trial that errors, or ends without a finite ``metric``, is not told to the engine; its
    dataset is set aside (not suggested again while others remain) unless it has a reward.

    :meth:`save` writes the searcher's state as JSON (Tune calls it for experiment
    checkpoints); :meth:`restore` reads it back and checks it belongs to the same pool.
    """

    def __init__(
        self,
        groups: Any,
        param: str = "dataset",
        metric: str | None = None,
        mode: str = "max",
        seed: int = 0,
        k: int | None = None,
        percentile: float | None = None,
        budget: int | None = None,
        policy: str | Policy | None = None,
        policy_params: Mapping[str, Any] | None = None,
        deterministic: bool = False,
    ) -> None:
        if not isinstance(param, str) or not param:
            raise DashselError(f"param must be a non-empty string, got {param!r}")
        _check_mode(mode)
        if metric is not None and not isinstance(metric, str):
            raise DashselError(f"metric must be the name of a reported metric, got {metric!r}")
        self.engine_ = Engine(
            groups,
            seed=seed,
            k=k,
            percentile=percentile,
            budget=budget,
            policy=policy,
            policy_params=policy_params,
            deterministic=deterministic,
        )
        super().__init__(metric=metric, mode=mode)
        self.param = param
        self.seed = seed
        self._space: dict[str, Any] = {}
        self._allowed: list[str] | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._steps = 0
        # trial id -> {"dataset", "step", "state": pending|done|failed, "reward"}
        self._trials: dict[str, dict[str, Any]] = {}
        # (dataset, reward) in the order the trials finished: what the engine is told.
        self._history: list[tuple[str, float]] = []

    # --- what Tune calls -------------------------------------------------------------------
    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        if mode:
            _check_mode(mode)
        if _unsupported(config, self.param):
            return False  # Tune then says the search space cannot be used with this searcher
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        self._space = dict(config)
        choice = config.get(self.param)
        if isinstance(choice, Categorical):
            self._allowed = [str(c) for c in choice.categories]
        elif isinstance(choice, Domain):
            raise DashselError(
                f"DaSHSearcher: param_space[{self.param!r}] must be a tune.choice of dataset ids "
                f"or left out, not {type(choice).__name__}"
            )
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        budget = self.engine_.budget
        if budget is not None and self._steps >= budget:
            return Searcher.FINISHED
        if not self._metric:
            raise DashselError(
                "DaSHSearcher has no metric: give DaSHSearcher(metric=...) or "
                "TuneConfig(metric=...) with a param_space"
            )
        pending = {t["dataset"] for t in self._trials.values() if t["state"] == "pending"}
        dataset = self.engine_.choose(
            self._history,
            n_asked=self._steps,
            pending=pending,
            failed=self._failed(),
            allowed=self._allowed,
        )
        step = self._steps
        self._trials[trial_id] = {"dataset": dataset, "step": step, "state": "pending"}
        self._steps += 1
        config = _sample_space(self._space, self.param, derive_seed(self.seed, step, 1))
        config[self.param] = dataset
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Only the final result is a reward.
        return None

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        trial = self._trials.get(trial_id)
        if trial is None or trial["state"] != "pending":
            return  # not one of ours, or told already
        reward = None
        if not error and result is not None and self._metric in result:
            reward = reward_of(result[self._metric], self._mode != "min")
        self._finish(trial, reward)

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Tell a trial run outside this searcher (``parameters[param]`` is its dataset)."""
        if self.param not in parameters:
            raise DashselError(f"add_evaluated_point: parameters have no {self.param!r}")
        dataset = str(parameters[self.param])
        self.engine_.hierarchy.index(dataset)
        trial = {"dataset": dataset, "step": self._steps, "state": "pending"}
        self._trials[f"evaluated-{self._steps}"] = trial
        self._steps += 1
        bad = error or pruned
        self._finish(trial, None if bad else reward_of(value, self._mode != "min"))

    # --- results ---------------------------------------------------------------------------
    def recommend(self, k: int | None = None, percentile: float | None = None) -> list[str]:
        """Dataset ids, best first, by the engine's final rule over the finished trials.

        ``k`` / ``percentile`` default to those given at construction (the single best
        dataset if neither).
        """
        return self.engine_.recommend(
            self._history, k=k, percentile=percentile, failed=self._failed()
        )

    @property
    def history(self) -> list[tuple[str, float]]:
        """The (dataset id, reward) pairs told to the engine, in order (negated for "min")."""
        return list(self._history)

    # --- persistence -----------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """The searcher's state as plain JSON types."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "pool": self.engine_.hierarchy.fingerprint(),
            "param": self.param,
            "seed": self.seed,
            "metric": self._metric,
            "mode": self._mode,
            "steps": self._steps,
            "trials": self._trials,
            "history": [[d, r] for d, r in self._history],
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise DashselError("not a DaSHSearcher state")
        if state.get("version") != _VERSION:
            raise DashselError(f"DaSHSearcher state version {state.get('version')!r} unsupported")
        if state["pool"] != self.engine_.hierarchy.fingerprint():
            raise DashselError("DaSHSearcher state belongs to another pool (groups differ)")
        for key in ("param", "seed"):
            if state[key] != getattr(self, key):
                raise DashselError(
                    f"DaSHSearcher state has {key}={state[key]!r}, this searcher "
                    f"{getattr(self, key)!r}"
                )
        self._metric = state["metric"] or self._metric
        self._mode = state["mode"] or self._mode
        self._steps = int(state["steps"])
        self._trials = {str(t): dict(v) for t, v in state["trials"].items()}
        self._history = [(str(d), float(r)) for d, r in state["history"]]

    def save(self, checkpoint_path: str) -> None:
        """Write the state to ``checkpoint_path`` as JSON (atomically)."""
        tmp = f"{checkpoint_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.get_state(), f)
        os.replace(tmp, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """Read a state written by :meth:`save`."""
        try:
            with open(checkpoint_path, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError) as exc:
            raise DashselError(f"cannot read searcher state {checkpoint_path}: {exc}") from None
        self.set_state(state)

    # --- internals -------------------------------------------------------------------------
    def _finish(self, trial: dict[str, Any], reward: float | None) -> None:
        if reward is None:
            trial["state"] = "failed"
            return
        trial["state"] = "done"
        trial["reward"] = reward
        self._history.append((trial["dataset"], reward))

    def _failed(self) -> set[str]:
        return {t["dataset"] for t in self._trials.values() if t["state"] == "failed"}


def _check_mode(mode: Any) -> None:
    if mode not in ("max", "min"):
        raise DashselError(f"mode must be 'max' or 'min', got {mode!r}")


def _unsupported(config: Mapping[str, Any], param: str) -> bool:
    """True if ``config`` holds a grid search or a ``sample_from`` this searcher cannot draw."""
    for key, value in config.items():
        if key == param:
            continue
        if isinstance(value, Mapping):
            if "grid_search" in value or _unsupported(value, param=""):
                return True
        elif isinstance(value, Domain) and value.is_function():
            return True
    return False


def _sample_space(space: Mapping[str, Any], param: str, seed: int) -> dict[str, Any]:
    """Draw every random domain of ``space`` (nested dicts included) with one seeded generator;
    constants are left to Tune, which merges them into the config."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for key, value in space.items():
        if key == param:
            continue
        if isinstance(value, Domain):
            out[key] = _plain(value.sample(random_state=rng))
        elif isinstance(value, Mapping):
            sub = _sample_space(value, "", int(rng.integers(2**32 - 1)))
            if sub:
                out[key] = sub
    return out


def _plain(value: Any) -> Any:
    # numpy scalars -> Python numbers, so configs stay JSON-friendly.
    return value.item() if isinstance(value, np.generic) else value
