"""Evaluators that train a scikit-learn classifier on local data plus the chosen dataset(s).

The reward of a trial is the accuracy, on the pool's validation split, of a fresh clone of the
estimator trained on the local data plus the chosen dataset, with the trial's seed.

Estimator allow-list
--------------------
A manifest (``[evaluator] kind = "sklearn"``, ``estimator = "..."``) is a file people download
and share, so the class it names is looked up, never imported from an arbitrary module path:
:func:`resolve_estimator` accepts a scikit-learn classifier (found by name among
``sklearn.utils.all_estimators(type_filter="classifier")``) or a class the user allowed
outside the manifest (``allow_estimators=`` in Python, ``--allow-estimator`` on the command
line). Anything else is refused before any import or construction.
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib
import re
import warnings
from collections.abc import Iterable, Sequence
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


# --- estimator allow-list --------------------------------------------------------------------
#: What a user may allow outside a manifest: a class, or the dotted path of one.
EstimatorAllowance = type | str

_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _public_module(module: str) -> str:
    """``sklearn.ensemble._forest`` -> ``sklearn.ensemble``: where users import it from."""
    parts = module.split(".")
    keep = next((i for i, p in enumerate(parts) if p.startswith("_")), len(parts))
    return ".".join(parts[:keep])


def _names_of(cls: type) -> set[str]:
    module, qual = cls.__module__, cls.__qualname__
    return {cls.__name__, f"{module}.{qual}", f"{_public_module(module)}.{qual}"}


@functools.lru_cache(maxsize=1)
def _sklearn_estimators() -> tuple[dict[str, type], dict[str, type]]:
    """Scikit-learn's classifiers and other estimators, by every name they go by."""
    from sklearn.utils import all_estimators

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation noise from walking every submodule
        classifiers = dict(all_estimators(type_filter="classifier"))
        everything = dict(all_estimators())
    by_name: dict[str, type] = {}
    others: dict[str, type] = {}
    for name, cls in everything.items():
        target = by_name if name in classifiers else others
        for alias in _names_of(cls):
            target[alias] = cls
    return by_name, others


def _user_allowed(allow: Iterable[EstimatorAllowance]) -> dict[str, EstimatorAllowance]:
    out: dict[str, EstimatorAllowance] = {}
    for item in allow:
        if isinstance(item, type):
            for alias in _names_of(item):
                out[alias] = item
        elif isinstance(item, str) and _DOTTED.match(item) and "." in item:
            out[item] = item
        else:
            raise DashselError(
                f"allowed estimator {item!r} must be a class or a dotted path like "
                f"'package.module.Class'"
            )
    return out


def check_estimator_name(name: str, allow: Iterable[EstimatorAllowance] = ()) -> None:
    """Raise :class:`DashselError` unless ``name`` is on the allow-list; import nothing it names.

    On the list: a scikit-learn classifier, by class name (``"RandomForestClassifier"``),
    public path (``"sklearn.ensemble.RandomForestClassifier"``) or defining module's path;
    and whatever ``allow`` holds (classes, or dotted paths matched exactly). Names outside
    scikit-learn are refused without importing anything, even scikit-learn.
    """
    if name in _user_allowed(allow):
        return
    # Quoted unless a plain dotted path: a name may hold a newline (one-line messages).
    shown = name if isinstance(name, str) and _DOTTED.fullmatch(name) else repr(name)
    how = (
        f"to use another class you trust, allow it outside the manifest: "
        f"--allow-estimator {shown} (dashsel run/check) or allow_estimators=[{name!r}] (Python)"
    )
    if not isinstance(name, str) or not _DOTTED.fullmatch(name):  # "$" would pass "a\n"
        raise DashselError(f"{name!r} is not a class name or dotted path; {how}")
    hint = ""
    if "." not in name or name.split(".", 1)[0] == "sklearn":
        classifiers, others = _sklearn_estimators()
        if name in classifiers:
            return
        if name in others:
            hint = f" ({name!r} is a scikit-learn estimator but not a classifier)"
        else:
            near = difflib.get_close_matches(name, list(classifiers), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise DashselError(
        f"{name!r} is not allowed: a manifest may name only a scikit-learn classifier, e.g. "
        f"'sklearn.ensemble.RandomForestClassifier'{hint}; {how}"
    )


def resolve_estimator(name: str, allow: Iterable[EstimatorAllowance] = ()) -> type:
    """The class ``name`` stands for, if it is on the allow-list (see :func:`check_estimator_name`).

    Only a dotted path the user put in ``allow`` is imported; scikit-learn classifiers are
    looked up by name.

    Raises
    ------
    DashselError
        Not on the allow-list, or an allowed dotted path that does not import to a class.
    """
    check_estimator_name(name, allow)
    allowed = _user_allowed(allow)
    found = allowed.get(name)
    if isinstance(found, type):
        return found
    if found is None:
        return _sklearn_estimators()[0][name]
    module_name, _, attr = found.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise DashselError(f"cannot import module {module_name!r} ({exc})") from None
    except AttributeError:
        raise DashselError(f"module {module_name!r} has no {attr!r}") from None
    if not isinstance(cls, type):
        raise DashselError(f"{found!r} is not a class")
    return cls


def build_estimator(cls: type, params: dict[str, Any]) -> BaseEstimator:
    """Check ``params`` against ``cls``'s signature, then construct it and validate the values.

    Raises
    ------
    DashselError
        An unknown parameter (with the closest known one), or a value the class refuses.
    """
    import inspect

    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
    ):
        known = [n for n, p in sig.parameters.items() if p.kind is not p.VAR_POSITIONAL]
        for key in params:
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {near[0]!r}?" if near else f"it takes {', '.join(known)}"
                raise DashselError(f"{cls.__name__} has no parameter {key!r}; {hint}")
    try:
        estimator = cls(**params)
        # scikit-learn checks values only at fit time; check them now, before any trial.
        validate = getattr(estimator, "_validate_params", None)
        if callable(validate) and hasattr(estimator, "_parameter_constraints"):
            validate()
    except (TypeError, ValueError) as exc:
        raise DashselError(f"{cls.__name__} rejects these parameters ({_one_line(exc)})") from None
    return estimator


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _flat(X: np.ndarray) -> np.ndarray:
    return X if X.ndim == 2 else X.reshape(X.shape[0], -1)
