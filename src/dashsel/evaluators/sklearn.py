"""Evaluators that train a scikit-learn classifier on local data plus the chosen dataset(s).

The reward of a trial is the accuracy, on the pool's validation split, of a fresh clone of the
estimator trained on the local data plus the chosen dataset, with the trial's seed.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from dashsel.errors import DashselError, DataError
from dashsel.evaluators.base import Evaluator, Split, pool_identity
from dashsel.jsonable import to_jsonable
from dashsel.pool import ArraySplit, Pool
from dashsel.trial import TrialSpec


class SklearnEvaluator(Evaluator):
    """Reward = validation accuracy of ``estimator`` trained on local data + the dataset.

    Parameters
    ----------
    pool : Pool
        Pool with local and validation data (and test data for ``score(..., "test")``).
    estimator : scikit-learn classifier
        Template; every trial trains a fresh ``clone`` of it. Every ``random_state``
        parameter (also of nested estimators) is set to the trial's seed.
    bootstrap : bool
        Resample the training rows with replacement, seeded by the trial, in :meth:`evaluate`,
        so repeated pulls of one dataset give different rewards (the paper's repeated runs).
        :meth:`score` always trains on all rows.
    standardize : bool
        Put a :class:`~sklearn.preprocessing.StandardScaler`, fitted on the training rows, in
        front of the estimator.

    Notes
    -----
    Features with more than two dimensions (images) are flattened. A model only knows the
    classes it was trained on, and accuracy is plain accuracy over the evaluation split.
    Evaluators pickle with their pool (lazy loaders included), so they can be sent to worker
    processes.
    """

    can_train = True
    kind = "sklearn"
    #: Rewards are accuracies.
    reward_range = (0.0, 1.0)

    def __init__(
        self,
        pool: Pool,
        estimator: BaseEstimator,
        *,
        bootstrap: bool = False,
        standardize: bool = True,
    ) -> None:
        if not is_classifier(estimator):
            raise DashselError(f"{type(estimator).__name__} is not a scikit-learn classifier")
        self.pool = pool
        self.estimator = estimator
        self.bootstrap = bool(bootstrap)
        self.standardize = bool(standardize)
        self._description: dict[str, Any] | None = None

    # --- evaluator protocol --------------------------------------------------------------------
    def evaluate(self, spec: TrialSpec) -> float:
        """Validation accuracy after training on local data + ``spec.dataset_id``."""
        extra = self._dataset(spec.dataset_id)
        return self.score_arrays(extra, spec.seed, "validation", resample=self.bootstrap)

    def score(self, dataset_ids: Sequence[str], seed: int, split: Split = "test") -> float:
        """Accuracy on ``split`` of a model trained on local data plus ``dataset_ids``."""
        parts = [self._dataset(d) for d in dataset_ids]
        extra = ArraySplit.concat(parts) if parts else None
        return self.score_arrays(extra, seed, split)

    def score_arrays(
        self,
        extra: ArraySplit | None,
        seed: int,
        split: Split = "test",
        *,
        resample: bool = False,
    ) -> float:
        """Accuracy on ``split`` of a model trained on local data plus arbitrary samples.

        Parameters
        ----------
        extra : ArraySplit or None
            Samples added to the local data (None: local data only). Instance-level
            baselines pass their selected rows here.
        seed : int
            Seeds the estimator and the resampling.
        split : {"validation", "test"}
            Where accuracy is measured.
        resample : bool
            Bootstrap the training rows (see ``bootstrap``).
        """
        local = self.pool.local
        if extra is not None:
            self._check_width(extra, "the extra samples")
            train = ArraySplit.concat([local, extra])
        else:
            train = local
        X, y = _flat(train.X), train.y
        if resample:
            idx = np.random.default_rng(seed).integers(0, len(y), size=len(y))
            X, y = X[idx], y[idx]
        target = self.pool.split(split)
        X_eval = _flat(target.X)
        classes = np.unique(y)
        if classes.size == 1:
            # Most classifiers refuse one class; the only sensible model predicts it.
            pred = np.full(len(target), classes[0])
        else:
            model = self.make_model(seed)
            with warnings.catch_warnings():
                # Trial models are trained many times with a fixed budget; non-convergence is
                # expected and would flood worker logs.
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(X, y)
            pred = model.predict(X_eval)
        return float(np.mean(pred == target.y))

    def make_model(self, seed: int) -> BaseEstimator:
        """A fresh, unfitted model (scaler + clone of the estimator) seeded with ``seed``."""
        est = clone(self.estimator)
        seeded = {
            k: int(seed)
            for k in est.get_params(deep=True)
            if k == "random_state" or k.endswith("__random_state")
        }
        if seeded:
            est.set_params(**seeded)
        if self.standardize:
            return Pipeline([("scale", StandardScaler()), ("model", est)])
        return est

    def _is_deterministic(self) -> bool:
        # Without bootstrap the training rows are fixed; the trial's seed only reaches the
        # estimator through ``random_state`` parameters, so one without any is deterministic.
        if self.bootstrap:
            return False
        params = self.estimator.get_params(deep=True)
        return not any(k == "random_state" or k.endswith("__random_state") for k in params)

    def describe(self) -> dict[str, Any]:
        """Kind, estimator and its parameters, options, pool name and data fingerprints."""
        if self._description is None:
            est = self.estimator
            self._description = {
                "kind": self.kind,
                "estimator": f"{type(est).__module__}.{type(est).__qualname__}",
                "params": to_jsonable(est.get_params(deep=False)),
                "bootstrap": self.bootstrap,
                "standardize": self.standardize,
                **pool_identity(self.pool),
            }
        return copy.deepcopy(self._description)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(pool={self.pool.name!r}, estimator={self.estimator!r}, "
            f"bootstrap={self.bootstrap}, standardize={self.standardize})"
        )

    # --- helpers -------------------------------------------------------------------------------
    def _dataset(self, dataset_id: str) -> ArraySplit:
        data = self.pool.dataset(dataset_id)
        self._check_width(data, f"dataset {dataset_id!r}")
        return data

    def _check_width(self, data: ArraySplit, what: str) -> None:
        want = self.pool.local.X.shape[1:]
        if data.X.shape[1:] != want:
            raise DataError(
                f"{what}: features have shape {data.X.shape[1:]} but the local data has {want}"
            )


class LogisticEvaluator(SklearnEvaluator):
    """:class:`SklearnEvaluator` with a :class:`~sklearn.linear_model.LogisticRegression`.

    The fast default. ``C`` and ``max_iter`` are LogisticRegression's; ``bootstrap`` and
    ``standardize`` as in :class:`SklearnEvaluator`.
    """

    kind = "logistic"

    def __init__(
        self,
        pool: Pool,
        C: float = 1.0,
        max_iter: int = 300,
        bootstrap: bool = False,
        standardize: bool = True,
    ) -> None:
        super().__init__(
            pool,
            LogisticRegression(C=C, max_iter=max_iter),
            bootstrap=bootstrap,
            standardize=standardize,
        )
        self.C = C
        self.max_iter = max_iter

    def _is_deterministic(self) -> bool:
        # lbfgs (the default solver) ignores random_state: only bootstrap makes seeds matter.
        return not self.bootstrap


def _flat(X: np.ndarray) -> np.ndarray:
    return X if X.ndim == 2 else X.reshape(X.shape[0], -1)
