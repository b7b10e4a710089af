"""An Optuna sampler that chooses the training dataset with dashsel's engine.

>>> import optuna                                                     # doctest: +SKIP
>>> from dashsel.integrations.optuna import DaSHSampler               # doctest: +SKIP
>>> sampler = DaSHSampler({"a1": "A", "a2": "A", "b1": "B"}, k=1)      # doctest: +SKIP
>>> study = optuna.create_study(direction="maximize", sampler=sampler)  # doctest: +SKIP
>>> def objective(trial):                                             # doctest: +SKIP
...     dataset = trial.suggest_categorical("dataset", ["a1", "a2", "b1"])
...     lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)  # left to the base sampler
...     return train_and_score(dataset, lr)
>>> study.optimize(objective, n_trials=30)                            # doctest: +SKIP
>>> sampler.recommend(study)                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

from dashsel.errors import DashselError, require
from dashsel.integrations._engine import Engine, reward_of
from dashsel.policies import Policy

optuna = require("optuna", "optuna", "dashsel.integrations.optuna")

from optuna.distributions import BaseDistribution, CategoricalDistribution  # noqa: E402
from optuna.samplers import BaseSampler  # noqa: E402
from optuna.study import Study, StudyDirection  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

__all__ = ["DaSHSampler"]


class DaSHSampler(BaseSampler):
    """Choose the categorical parameter ``param`` (a dataset id) with dashsel's engine.

    Every other parameter goes to ``base_sampler``, an ordinary Optuna sampler, so a study can
    tune a learning rate and choose the data in the same trials.

    The sampler keeps no history of its own (Optuna's design): for each dataset choice it
    rebuilds the policy from the study's trials: reset with ``seed``, tell the COMPLETE trials'
    (dataset, value) in trial-number order, then ask with the datasets of RUNNING trials
    excluded (pending-aware, so ``study.optimize(n_jobs=...)`` and several processes on one
    storage spread over different datasets). An RDB or journal study therefore resumes in a new
    process with a new sampler object.

    Parameters
    ----------
    groups : mapping, Pool or Hierarchy
        Dataset id -> group. The objective's ``suggest_categorical(param, choices)`` must offer
        ids of this pool (all of them, or a subset to restrict the choice).
    param : str, default "dataset"
        Name of the parameter that holds the dataset id.
    seed : int, default 0
        Seed of the engine's choices and of the default base sampler.
    k, percentile : optional
        Selection target: what :meth:`recommend` returns by default (default: the single best
        dataset); also given to a policy that takes these parameters.
    budget : int, optional
        Dataset trials planned. Given to a policy that takes it; once that many trials with
        ``param`` have finished, a running ``study.optimize`` is stopped (``study.stop()``).
    policy : str or Policy, optional
        Policy name for :func:`dashsel.policies.make_policy` (default: the library's default
        engine) or a Policy whose parameters are copied.
    policy_params : mapping, optional
        Keyword parameters of the policy.
    base_sampler : optuna.samplers.BaseSampler, optional
        Samples every parameter but ``param``. Default: ``RandomSampler(seed=seed)``.
    deterministic : bool, default False
        The objective gives the same value each time a dataset is trained on, so a dataset
        with a value is not chosen again while others remain.

    Notes
    -----
    *Direction.* Values are rewards as they are for a ``"maximize"`` study and negated for a
    ``"minimize"`` one, so the engine always maximises. The default engine's priors assume
    rewards on an accuracy-like scale (about [0, 1]); a loss of another scale may want
    ``policy_params`` (e.g. DaSH's ``prior="empirical"``).

    *Failures.* A FAIL or PRUNED trial, or a COMPLETE one whose value is not finite, is not told
    to the engine; its dataset is set aside (not chosen again while others remain) unless
    another trial of it has a finite value. A RUNNING trial left by a killed process counts as
    pending until Optuna marks it failed (see Optuna's heartbeat, ``RDBStorage(heartbeat_interval=
    ...)``).

    *Cost.* Each dataset choice reads the study's trials and replays them: O(trials).
    """

    def __init__(
        self,
        groups: Any,
        param: str = "dataset",
        seed: int = 0,
        k: int | None = None,
        percentile: float | None = None,
        budget: int | None = None,
        policy: str | Policy | None = None,
        policy_params: Mapping[str, Any] | None = None,
        base_sampler: BaseSampler | None = None,
        deterministic: bool = False,
    ) -> None:
        if not isinstance(param, str) or not param:
            raise DashselError(f"param must be a non-empty string, got {param!r}")
        if base_sampler is not None and not isinstance(base_sampler, BaseSampler):
            raise DashselError(
                f"base_sampler must be an Optuna sampler, not {type(base_sampler).__name__}"
            )
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
        self.param = param
        self.seed = seed
        self.base_sampler = (
            optuna.samplers.RandomSampler(seed=seed) if base_sampler is None else base_sampler
        )
        self._lock = threading.Lock()
        # Datasets chosen for trials whose parameter is not stored yet (a parallel thread may
        # ask in between): trial id -> dataset id.
        self._claims: dict[int, str] = {}
        self._study: Study | None = None

    # --- what Optuna calls -----------------------------------------------------------------
    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        self._study = study
        space = self.base_sampler.infer_relative_search_space(study, trial)
        return {name: d for name, d in space.items() if name != self.param}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        space = {name: d for name, d in search_space.items() if name != self.param}
        return self.base_sampler.sample_relative(study, trial, space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if param_name != self.param:
            return self.base_sampler.sample_independent(
                study, trial, param_name, param_distribution
            )
        self._study = study
        if not isinstance(param_distribution, CategoricalDistribution):
            raise DashselError(
                f"DaSHSampler: parameter {self.param!r} must be suggested with "
                f"suggest_categorical (dataset ids), not {type(param_distribution).__name__}"
            )
        by_id = {str(c): c for c in param_distribution.choices}
        with self._lock:
            history, pending, failed = self._read(study, exclude_trial=trial._trial_id)
            dataset = self.engine_.choose(
                history, n_asked=trial.number, pending=pending, failed=failed, allowed=by_id
            )
            self._claims[trial._trial_id] = dataset
        return by_id[dataset]

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._study = study
        self.base_sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: list[float] | None,
    ) -> None:
        with self._lock:
            self._claims.pop(trial._trial_id, None)
        self.base_sampler.after_trial(study, trial, state, values)
        budget = self.engine_.budget
        if budget is not None and self.param in trial.params:
            finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
            done = sum(
                self.param in t.params for t in study.get_trials(deepcopy=False, states=finished)
            )
            # The trial being finished is not stored as finished yet.
            if done + 1 >= budget:
                # Outside study.optimize (ask/tell by hand) there is nothing to stop.
                with contextlib.suppress(RuntimeError):
                    study.stop()

    def reseed_rng(self) -> None:
        # The engine's choices depend only on the seed and the trials; only the base sampler
        # has a random state to reseed.
        self.base_sampler.reseed_rng()

    # --- results ---------------------------------------------------------------------------
    def recommend(
        self, study: Study | None = None, k: int | None = None, percentile: float | None = None
    ) -> list[str]:
        """Dataset ids, best first, by the engine's final rule over the study's trials.

        Parameters
        ----------
        study : optuna.Study, optional
            Default: the last study this sampler sampled for.
        k, percentile : optional
            Selection rule; default: the ``k`` / ``percentile`` given at construction (the
            single best dataset if neither).
        """
        study = self._resolve(study)
        history, _, failed = self._read(study)
        return self.engine_.recommend(history, k=k, percentile=percentile, failed=failed)

    def history(self, study: Study | None = None) -> list[tuple[str, float]]:
        """The (dataset id, reward) pairs the engine is told, in order (rewards are negated
        values for a minimising study)."""
        return self._read(self._resolve(study))[0]

    # --- internals -------------------------------------------------------------------------
    def _resolve(self, study: Study | None) -> Study:
        if study is None:
            study = self._study
        if study is None:
            raise DashselError("DaSHSampler.recommend: pass the study (none sampled yet)")
        return study

    def _read(
        self, study: Study, exclude_trial: int | None = None
    ) -> tuple[list[tuple[str, float]], set[str], set[str]]:
        """Finished (dataset, reward) in trial-number order, pending and failed datasets."""
        directions = study.directions
        if len(directions) != 1:
            raise DashselError(
                f"DaSHSampler needs a single-objective study; this one has {len(directions)}"
            )
        maximize = directions[0] == StudyDirection.MAXIMIZE
        history: list[tuple[str, float]] = []
        pending: set[str] = set()
        failed: set[str] = set()
        running_ids: set[int] = set()
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        for t in trials:
            if t._trial_id == exclude_trial:
                continue
            if t.state == TrialState.RUNNING:
                running_ids.add(t._trial_id)
            if self.param not in t.params:
                continue
            dataset = str(t.params[self.param])
            if t.state == TrialState.COMPLETE:
                reward = reward_of(t.value, maximize)
                if reward is None:
                    failed.add(dataset)
                else:
                    history.append((dataset, reward))
            elif t.state in (TrialState.FAIL, TrialState.PRUNED):
                failed.add(dataset)
            elif t.state == TrialState.RUNNING:
                pending.add(dataset)
        # Claims of this process whose trial has not stored its parameter yet.
        pending.update(d for tid, d in self._claims.items() if tid in running_ids)
        return history, pending, failed

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_claims"] = {}
        state["_study"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
