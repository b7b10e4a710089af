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
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dashsel.errors import DashselError, DataError
from dashsel.evaluators.base import Evaluator, Split, pool_identity
from dashsel.jsonable import to_jsonable
from dashsel.pool import ArraySplit, Pool
from dashsel.trial import TrialSpec

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

# scikit-learn is imported where it is used, not with this module: a run whose trials run in
# worker processes or on Ray never imports it in its main process (see LogisticEvaluator).


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
        from sklearn.base import is_classifier

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
            from sklearn.exceptions import ConvergenceWarning

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
        from sklearn.base import clone
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

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
            estimator, params = self._describe_estimator()
            self._description = {
                "kind": self.kind,
                "estimator": estimator,
                "params": params,
                "bootstrap": self.bootstrap,
                "standardize": self.standardize,
                **pool_identity(self.pool),
            }
        return copy.deepcopy(self._description)

    def _describe_estimator(self) -> tuple[str, dict[str, Any]]:
        """The estimator's class path and parameters, as :meth:`describe` records them."""
        return describe_estimator(self.estimator)

    def _prepare(self) -> None:
        """Build what trials need and the main process may not (a worker warming up)."""
        _ = self.estimator

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

    Notes
    -----
    The LogisticRegression is made when first used (a trial, :meth:`score`, ``estimator``),
    not here, and :meth:`describe` reads its parameters from scikit-learn's source without
    importing it (:func:`logistic_params`): a run whose trials run in worker processes or on
    Ray does not import scikit-learn in its main process before its trials start. When it is
    made, its parameters are checked against that description (same scikit-learn version).
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
        self.pool = pool
        self.C = C
        self.max_iter = max_iter
        self.bootstrap = bool(bootstrap)
        self.standardize = bool(standardize)
        self._estimator: BaseEstimator | None = None
        self._description = None
        # Read now, in the process that made the evaluator, and pickled with it: a worker
        # checks it against the estimator it makes.
        self._source_params = logistic_params(C=C, max_iter=max_iter)

    @property
    def estimator(self) -> BaseEstimator:
        """The LogisticRegression template (made, and scikit-learn imported, on first use)."""
        if self._estimator is None:
            from sklearn.linear_model import LogisticRegression

            estimator = LogisticRegression(C=self.C, max_iter=self.max_iter)
            _check_source_params(self._source_params, estimator)
            self._estimator = estimator
        return self._estimator

    def __setstate__(self, state: dict[str, Any]) -> None:
        # One pickled by an older dashsel held its estimator as ``estimator``.
        state = dict(state)
        state.setdefault("_estimator", state.pop("estimator", None))
        state.setdefault("_source_params", None)
        self.__dict__.update(state)

    def _describe_estimator(self) -> tuple[str, dict[str, Any]]:
        if self._estimator is None and self._source_params is not None:
            return LOGISTIC_PATH, to_jsonable(self._source_params[1])
        return describe_estimator(self.estimator)

    def _is_deterministic(self) -> bool:
        # lbfgs (the default solver) ignores random_state: only bootstrap makes seeds matter.
        return not self.bootstrap


def describe_estimator(estimator: BaseEstimator) -> tuple[str, dict[str, Any]]:
    """An estimator's class path and JSON parameters, as evaluator descriptions hold them."""
    cls = type(estimator)
    return f"{cls.__module__}.{cls.__qualname__}", to_jsonable(estimator.get_params(deep=False))


#: Where LogisticRegression is defined (its ``__module__``), as descriptions name it.
LOGISTIC_PATH = "sklearn.linear_model._logistic.LogisticRegression"


def logistic_params(**given: Any) -> tuple[str, dict[str, Any]] | None:
    """``LogisticRegression(**given).get_params(deep=False)`` without importing scikit-learn.

    Reads the constructor's defaults from the installed scikit-learn's source. Returns its
    version and the parameters (sorted by name, as ``get_params`` gives them), or None when
    the source cannot be read with certainty: not a plain file, the class or its
    ``__init__`` not where expected or decorated, ``*args``/``**kwargs``, a default that
    is not a literal, a parameter the constructor does not store under its own name, or a
    ``given`` name it does not take. Then the estimator has to be made to describe it.
    """
    found = _logistic_defaults()
    if found is None or not set(given) <= set(found[1]):
        return None
    version, defaults = found
    params = {**defaults, **given}
    return version, {name: params[name] for name in sorted(params)}


@functools.lru_cache(maxsize=1)
def _logistic_defaults() -> tuple[str, dict[str, Any]] | None:
    import ast
    import importlib.util

    module = sys.modules.get("sklearn")
    try:
        spec = module.__spec__ if module is not None else importlib.util.find_spec("sklearn")
        root = Path(next(iter(spec.submodule_search_locations)))  # type: ignore[union-attr]
        init = (root / "__init__.py").read_text(encoding="utf-8")
        source = (root / "linear_model" / "_logistic.py").read_text(encoding="utf-8")
        tree = ast.parse(source)
    except Exception:  # no scikit-learn, not plain files, unreadable: make the estimator
        return None
    version = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", init, re.MULTILINE)
    cls = next(
        (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LogisticRegression"),
        None,
    )
    if version is None or cls is None or cls.decorator_list:
        return None
    names = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    init_def = next(
        (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None
    )
    if init_def is None or init_def.decorator_list or names & {"get_params", "_get_param_names"}:
        return None
    args = init_def.args
    positional = [*args.posonlyargs, *args.args][1:]  # without self
    if args.vararg is not None or args.kwarg is not None or len(args.defaults) != len(positional):
        return None
    pairs = [
        *zip(positional, args.defaults, strict=True),
        *zip(args.kwonlyargs, args.kw_defaults, strict=True),
    ]
    stored = {  # `self.name = name` statements
        t.attr
        for n in init_def.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Name)
        for t in n.targets
        if isinstance(t, ast.Attribute)
        and isinstance(t.value, ast.Name)
        and t.value.id == "self"
        and t.attr == n.value.id
    }
    defaults: dict[str, Any] = {}
    for arg, default in pairs:
        if default is None or arg.arg not in stored:
            return None
        try:
            defaults[arg.arg] = ast.literal_eval(default)
        except ValueError:
            return None
    return version.group(1), defaults


def _check_source_params(
    source: tuple[str, dict[str, Any]] | None, estimator: BaseEstimator
) -> None:
    """Refuse an estimator whose parameters differ from those read from the same scikit-learn
    version's source (:func:`logistic_params`): the description journals hold would be wrong."""
    if source is None:
        return
    import sklearn

    version, params = source
    got = describe_estimator(estimator)
    if version == sklearn.__version__ and got != (LOGISTIC_PATH, to_jsonable(params)):
        raise DashselError(
            f"dashsel read LogisticRegression's parameters from scikit-learn {version}'s "
            f"source as {to_jsonable(params)} but it has {got[1]} ({got[0]}); please report "
            "this as a dashsel bug"
        )


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
