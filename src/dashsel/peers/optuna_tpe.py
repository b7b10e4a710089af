"""Optuna's TPE as a dataset-selection policy: a conditional search space group → dataset.

Each ask is one Optuna trial: ``trial.suggest_categorical("group", groups)``, then
``trial.suggest_categorical("dataset@<group>", members)`` for the chosen group (or a single
flat ``"dataset"`` categorical with ``conditional=False``). The reward is told back as the
trial's value; the study maximises it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from dashsel.errors import DashselError, require
from dashsel.hierarchy import Hierarchy
from dashsel.policies._stats import ArmStats, posterior_of
from dashsel.policies.base import Policy, Posterior
from dashsel.random_state import derive_seed


class OptunaTPE(Policy):
    """Tree-structured Parzen Estimator (Optuna) over groups and datasets.

    Parameters
    ----------
    n_startup_trials : int, default 10
        Trials sampled at random (Optuna's ``RandomSampler``) before TPE takes over.
    conditional : bool, default True
        Search a conditional space (first the group, then a dataset of that group), so TPE
        models groups as DaSH does. False: one flat categorical over all dataset ids.
    n_ei_candidates : int, default 24
        Candidates TPE draws per decision to maximise its expected-improvement ratio.

    Notes
    -----
    *Reproducibility.* A TPE sampler keeps a random state that advances across trials, which
    would break the rule that the t-th ask depends only on the seed, t and the rewards told.
    So before every ask the study gets a fresh ``TPESampler(seed=derive_seed(seed_, t))``;
    TPE reads everything else from the study's trials. ``constant_liar`` is off, so pending
    (asked, not yet told) trials do not influence an ask: a replayed run, which has none,
    asks the same. A told reward completes the oldest pending trial of its dataset with
    ``study.tell``; one that matches no pending ask (replaying a journal into a fresh policy)
    is added as a completed trial with ``study.add_trial``. TPE orders completed trials by
    number (it weights older ones less), so a reward told out of ask order is added as a new
    trial too and its asked trial is closed as FAIL, which TPE ignores: the completed trials
    are always the told history, in tell order. Asks that are never told (lost in a crash)
    stay RUNNING and are ignored as well.

    *Batches and pending trials.* ``ask(n)`` gives n TPE draws from the same history (each
    with its own step seed). TPE cannot be told to avoid values, so a draw of an excluded
    dataset (``ask(exclude=...)``, or an earlier slot of the batch) is closed as a FAIL trial
    and replaced by a uniform pick among the allowed datasets of its group (of the pool if
    the group has none): a batch holds distinct datasets while the pool has them.

    *Cost.* Each ask builds Parzen estimators over every told trial of the parameters
    involved: O(T · C) per step for T told trials and C candidate values (groups or members),
    plus Optuna's own bookkeeping. With thousands of datasets and ``conditional=False`` this
    is much slower than DaSH's O(n) posterior draw.

    *Final choice.* Optuna keeps no estimate of each dataset's utility, so
    :meth:`posterior` and :meth:`recommend` use the mean observed reward per dataset (NaN
    for datasets never pulled), and a group's belief pools its datasets' rewards.

    Importing optuna also sets its log level to WARNING (process-wide), so that runs do not
    print one line per trial.
    """

    name = "optuna"

    def __init__(
        self, n_startup_trials: int = 10, conditional: bool = True, n_ei_candidates: int = 24
    ) -> None:
        self.n_startup_trials = n_startup_trials
        self.conditional = conditional
        self.n_ei_candidates = n_ei_candidates

    def _reset(self, hierarchy: Hierarchy) -> None:
        if int(self.n_startup_trials) != self.n_startup_trials or self.n_startup_trials < 0:
            raise DashselError(
                f"n_startup_trials must be a non-negative integer, got {self.n_startup_trials!r}"
            )
        if int(self.n_ei_candidates) != self.n_ei_candidates or self.n_ei_candidates < 1:
            raise DashselError(
                f"n_ei_candidates must be a positive integer, got {self.n_ei_candidates!r}"
            )
        optuna = require("optuna", "peers", "the OptunaTPE peer")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        dist = optuna.distributions.CategoricalDistribution
        self._distributions_: dict[str, Any] = {}
        if self.conditional:
            self._distributions_["group"] = dist(list(hierarchy.group_ids))
            for g in hierarchy.group_ids:
                self._distributions_[_dataset_param(g)] = dist(list(hierarchy.members(g)))
        else:
            self._distributions_["dataset"] = dist(list(hierarchy.dataset_ids))
        self.study_ = optuna.create_study(
            direction="maximize", sampler=self._sampler(derive_seed(self.seed_, 0))
        )
        # Asked, not yet told trials per dataset id, oldest first: a tell completes the
        # oldest pending trial of its dataset.
        self._pending_: dict[str, deque[Any]] = {}
        self._last_complete_ = -1  # number of the latest completed trial
        self._n_trials_ = 0  # trials in the study; the in-memory storage numbers them 0, 1, ...
        self.rewards_ = ArmStats(hierarchy)

    def _sampler(self, seed: int) -> Any:
        return self._optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=int(self.n_startup_trials),
            n_ei_candidates=int(self.n_ei_candidates),
            # Independent TPE is the classic way TPE handles a conditional space: each
            # parameter is modelled on the trials where it appears. (Optuna 5 defaults to the
            # multivariate TPE, which would fall back to this anyway, with a warning.)
            multivariate=False,
            constant_liar=False,
        )

    def _ask_one(
        self, rng: np.random.Generator, step: int, excluded: np.ndarray | None = None
    ) -> str | int:
        # TPE's randomness comes from the per-step TPE seed; ``rng`` only picks a substitute.
        self.study_.sampler = self._sampler(derive_seed(self.seed_, step))
        trial = self.study_.ask()
        self._n_trials_ += 1
        if self.conditional:
            group = trial.suggest_categorical("group", self._distributions_["group"].choices)
            param = _dataset_param(group)
            dataset = trial.suggest_categorical(param, self._distributions_[param].choices)
        else:
            dataset = trial.suggest_categorical("dataset", self._distributions_["dataset"].choices)
        if excluded is not None and excluded[self.hierarchy_.index(dataset)]:
            return self._substitute(trial, dataset, excluded, rng)
        self._pending_.setdefault(dataset, deque()).append(trial)
        return str(dataset)

    def _substitute(
        self, trial: Any, dataset: str, excluded: np.ndarray, rng: np.random.Generator
    ) -> int:
        """A dataset ``excluded`` allows, for a TPE suggestion it does not.

        TPE cannot be told which values to avoid, so its trial is closed as FAIL (TPE
        ignores it) and the step's generator picks uniformly among the allowed datasets of
        the suggested group, or of the pool if the group has none. The substitute's reward,
        having no pending trial, is added as a completed trial when told.
        """
        trial.set_user_attr("dashsel", "suggested dataset excluded (pending): substituted")
        self.study_.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        s = self.rewards_
        same_group = (s.group_of == s.group_of[self.hierarchy_.index(dataset)]) & ~excluded
        free = np.flatnonzero(same_group if same_group.any() else ~excluded)
        return int(free[rng.integers(free.size)])

    def _params(self, dataset_id: str) -> dict[str, str]:
        if self.conditional:
            group = self.hierarchy_.group_of(dataset_id)
            return {"group": group, _dataset_param(group): dataset_id}
        return {"dataset": dataset_id}

    def _tell(self, index: int, reward: float) -> None:
        dataset_id = self.hierarchy_.dataset_ids[index]
        pending = self._pending_.get(dataset_id)
        trial = pending.popleft() if pending else None
        if trial is not None and trial.number > self._last_complete_:
            self.study_.tell(trial, reward)
            self._last_complete_ = trial.number
        else:
            # TPE orders completed trials by number, so they must be numbered in tell order
            # for the study to be a function of the told history alone (what a replayed
            # journal rebuilds). A reward told out of ask order (or with no pending ask, as
            # in a replay) becomes a new completed trial; its asked trial is closed as FAIL,
            # which TPE ignores.
            if trial is not None:
                trial.set_user_attr("dashsel", "told out of order: value in a later trial")
                self.study_.tell(trial, state=self._optuna.trial.TrialState.FAIL)
            params = self._params(dataset_id)
            self.study_.add_trial(
                self._optuna.trial.create_trial(
                    params=params,
                    distributions={p: self._distributions_[p] for p in params},
                    value=reward,
                )
            )
            self._last_complete_ = self._n_trials_
            self._n_trials_ += 1
        self.rewards_.add(index, reward)

    def _dataset_means(self) -> np.ndarray:
        return self.rewards_.empirical_means()

    def posterior(self) -> Posterior:
        self._check_reset()
        return posterior_of(self.hierarchy_, self.rewards_)


def _dataset_param(group: str) -> str:
    return f"dataset@{group}"
