"""Evaluators: turn a dataset choice into a reward.

:func:`make_evaluator` builds one from a manifest's ``[evaluator]`` table. Kinds and their keys:

``logistic`` (the fast default)
    ``C`` (float > 0, default 1.0), ``max_iter`` (int > 0, default 300), ``bootstrap`` (bool,
    default false: resample training rows per trial), ``standardize`` (bool, default true).
``sklearn``
    ``estimator`` (str, required): a scikit-learn classifier, by name or path, e.g.
    ``"sklearn.ensemble.RandomForestClassifier"``, or a class allowed outside the manifest
    (``allow_estimators=``, ``--allow-estimator``; see
    :func:`dashsel.evaluators.sklearn.resolve_estimator`); ``params`` (table): its constructor
    arguments, checked against its signature; ``bootstrap``, ``standardize`` as above.
``table`` (replay logged rewards, no training)
    ``path`` (str, required): CSV relative to the manifest; ``dataset_column`` (default
    ``"dataset"``), ``reward_column`` (default ``"reward"``).
``torch`` (needs ``pip install 'dashsel[torch]'``)
    Every other key is passed to :class:`dashsel.evaluators.torch_cnn.TorchCNNEvaluator`.

Further kinds can be added with :func:`register_evaluator`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dashsel.errors import ManifestError, MissingExtraError
from dashsel.evaluators.base import Evaluator
from dashsel.pool import Pool

if TYPE_CHECKING:
    from dashsel.evaluators.cache import CachedEvaluator
    from dashsel.evaluators.sklearn import LogisticEvaluator, SklearnEvaluator
    from dashsel.evaluators.table import TableEvaluator

# Classes are imported on first access (PEP 562), so reading a manifest or starting the CLI
# does not pay for importing scikit-learn.
_LAZY = {
    "CachedEvaluator": "dashsel.evaluators.cache",
    "LogisticEvaluator": "dashsel.evaluators.sklearn",
    "SklearnEvaluator": "dashsel.evaluators.sklearn",
    "TableEvaluator": "dashsel.evaluators.table",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CachedEvaluator",
    "Evaluator",
    "EvaluatorKind",
    "LogisticEvaluator",
    "SklearnEvaluator",
    "TableEvaluator",
    "evaluator_kinds",
    "make_evaluator",
    "register_evaluator",
    "validate_evaluator_config",
]

Parse = Callable[[dict[str, Any], "_Where"], dict[str, Any]]
Build = Callable[[dict[str, Any], Pool, Path, "_Where"], Evaluator]


@dataclass(frozen=True)
class EvaluatorKind:
    """One ``kind`` of the ``[evaluator]`` table.

    ``parse`` checks the table's keys and types without importing anything heavy and returns
    keyword arguments; ``build`` turns them into an evaluator. ``trains`` says whether the
    kind trains models (then the manifest needs local and validation data and datasets need
    array files).
    """

    name: str
    parse: Parse
    build: Build
    trains: bool = True


class _Where:
    """Puts the manifest file and ``evaluator.<key>`` in front of a message."""

    def __init__(self, source: str | Path | None, allow_estimators: Any = ()) -> None:
        self.source = str(source) if source is not None else "[evaluator]"
        # Estimators the user allowed outside the manifest (see evaluators.sklearn).
        self.allow_estimators = tuple(allow_estimators or ())

    def fail(self, key: str | None, problem: str) -> ManifestError:
        where = f"evaluator.{key}" if key else "evaluator"
        return ManifestError(f"{self.source}: {where}: {problem}")


_KINDS: dict[str, EvaluatorKind] = {}


def register_evaluator(kind: EvaluatorKind) -> None:
    """Add (or replace) an evaluator kind usable in manifests."""
    _KINDS[kind.name] = kind


def evaluator_kinds() -> tuple[str, ...]:
    """Names of the registered kinds."""
    return tuple(_KINDS)


def validate_evaluator_config(
    config: Mapping[str, Any],
    source: str | Path | None = None,
    *,
    allow_estimators: Any = (),
) -> EvaluatorKind:
    """Check an ``[evaluator]`` table's kind, keys and types; return its :class:`EvaluatorKind`.

    An ``estimator`` outside the allow-list (scikit-learn classifiers plus
    ``allow_estimators``) is refused here, before anything it names is imported.
    Raises :class:`~dashsel.errors.ManifestError` naming ``source`` and the key at fault.
    """
    where = _Where(source, allow_estimators)
    kind = _kind(config, where)
    kind.parse(_without_kind(config), where)
    return kind


def make_evaluator(
    config: Mapping[str, Any],
    pool: Pool,
    base_dir: str | Path,
    *,
    source: str | Path | None = None,
    allow_estimators: Any = (),
) -> Evaluator:
    """Build the evaluator an ``[evaluator]`` table describes.

    Parameters
    ----------
    config : mapping
        The table: ``kind`` plus that kind's keys (see the module docstring).
    pool : Pool
        The pool the evaluator scores.
    base_dir : str or Path
        Folder relative paths (``table``'s ``path``) are resolved against.
    source : str or Path, optional
        The manifest file, for error messages.
    allow_estimators : iterable of class or str, optional
        Estimators besides scikit-learn's classifiers that ``estimator`` may name: classes,
        or dotted paths (imported only when the manifest names them).

    Raises
    ------
    ManifestError
        Unknown kind or key, wrong type, an estimator outside the allow-list or one that is
        not a classifier, or parameters the estimator does not take.
    MissingExtraError
        ``kind = "torch"`` without torch installed.
    """
    where = _Where(source, allow_estimators)
    kind = _kind(config, where)
    kwargs = kind.parse(_without_kind(config), where)
    return kind.build(kwargs, pool, Path(base_dir), where)


def _kind(config: Mapping[str, Any], where: _Where) -> EvaluatorKind:
    name = config.get("kind")
    if name is None:
        raise where.fail("kind", f"missing; use one of {', '.join(_KINDS)}")
    if not isinstance(name, str) or name not in _KINDS:
        near = difflib.get_close_matches(str(name), list(_KINDS), n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"use one of {', '.join(_KINDS)}"
        raise where.fail("kind", f"unknown kind {name!r}; {hint}")
    return _KINDS[name]


def _without_kind(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "kind"}


# --- checks shared by the built-in kinds ------------------------------------------------------
def _only(config: dict[str, Any], allowed: tuple[str, ...], where: _Where) -> None:
    for key in config:
        if key not in allowed:
            raise where.fail(key, f"unknown key; use {', '.join(allowed) or 'no other keys'}")


def _bool(config: dict[str, Any], key: str, default: bool, where: _Where) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise where.fail(key, f"must be true or false, not {value!r}")
    return value


def _positive(config: dict[str, Any], key: str, default: float, integer: bool, where: _Where):
    value = config.get(key, default)
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not value > 0:
        kind = "integer" if integer else "number"
        raise where.fail(key, f"must be a positive {kind}, not {value!r}")
    return value


def _string(config: dict[str, Any], key: str, default: str | None, where: _Where) -> str:
    value = config.get(key, default)
    if value is None:
        raise where.fail(key, "missing")
    if not isinstance(value, str) or not value:
        raise where.fail(key, f"must be a non-empty string, not {value!r}")
    if "\x00" in value:  # no file or class can be named with one
        raise where.fail(key, f"must not contain a NUL byte: {value!r}")
    return value


# --- logistic ---------------------------------------------------------------------------------
def _parse_logistic(config: dict[str, Any], where: _Where) -> dict[str, Any]:
    _only(config, ("C", "max_iter", "bootstrap", "standardize"), where)
    return {
        "C": float(_positive(config, "C", 1.0, False, where)),
        "max_iter": _positive(config, "max_iter", 300, True, where),
        "bootstrap": _bool(config, "bootstrap", False, where),
        "standardize": _bool(config, "standardize", True, where),
    }


def _build_logistic(kwargs: dict[str, Any], pool: Pool, base: Path, where: _Where) -> Evaluator:
    from dashsel.evaluators.sklearn import LogisticEvaluator

    return LogisticEvaluator(pool, **kwargs)


# --- sklearn ----------------------------------------------------------------------------------
def _parse_sklearn(config: dict[str, Any], where: _Where) -> dict[str, Any]:
    _only(config, ("estimator", "params", "bootstrap", "standardize"), where)
    from dashsel.errors import DashselError
    from dashsel.evaluators.sklearn import check_estimator_name

    params = config.get("params", {})
    if not isinstance(params, dict):
        raise where.fail("params", "must be a table, e.g. params = { n_estimators = 100 }")
    name = _string(config, "estimator", None, where)
    try:  # the allow-list, before anything the manifest names is imported
        check_estimator_name(name, where.allow_estimators)
    except DashselError as exc:
        raise where.fail("estimator", str(exc)) from None
    return {
        "estimator": name,
        "params": dict(params),
        "bootstrap": _bool(config, "bootstrap", False, where),
        "standardize": _bool(config, "standardize", True, where),
    }


def _build_sklearn(kwargs: dict[str, Any], pool: Pool, base: Path, where: _Where) -> Evaluator:
    from sklearn.base import is_classifier

    from dashsel.errors import DashselError
    from dashsel.evaluators.sklearn import SklearnEvaluator, build_estimator, resolve_estimator

    try:
        cls = resolve_estimator(kwargs["estimator"], where.allow_estimators)
    except DashselError as exc:
        raise where.fail("estimator", str(exc)) from None
    try:
        estimator = build_estimator(cls, kwargs["params"])
    except DashselError as exc:
        raise where.fail("params", str(exc)) from None
    if not is_classifier(estimator):  # an allowed class may still not be one
        raise where.fail("estimator", f"{kwargs['estimator']!r} is not a scikit-learn classifier")
    return SklearnEvaluator(
        pool, estimator, bootstrap=kwargs["bootstrap"], standardize=kwargs["standardize"]
    )


# --- table ------------------------------------------------------------------------------------
def _parse_table(config: dict[str, Any], where: _Where) -> dict[str, Any]:
    _only(config, ("path", "dataset_column", "reward_column"), where)
    return {
        "path": _string(config, "path", None, where),
        "dataset_column": _string(config, "dataset_column", "dataset", where),
        "reward_column": _string(config, "reward_column", "reward", where),
    }


def _build_table(kwargs: dict[str, Any], pool: Pool, base: Path, where: _Where) -> Evaluator:
    from dashsel.evaluators.table import TableEvaluator

    file = (base / Path(kwargs["path"]).expanduser()).resolve()
    if not file.is_file():
        raise where.fail("path", f"no such file {file}")
    evaluator = TableEvaluator(
        file, dataset_column=kwargs["dataset_column"], reward_column=kwargs["reward_column"]
    )
    evaluator.check_pool(pool)
    return evaluator


# --- torch ------------------------------------------------------------------------------------
def _parse_torch(config: dict[str, Any], where: _Where) -> dict[str, Any]:
    return dict(config)  # keys are checked against the class's signature at build time


def _build_torch(kwargs: dict[str, Any], pool: Pool, base: Path, where: _Where) -> Evaluator:
    try:
        module = importlib.import_module("dashsel.evaluators.torch_cnn")
    except ImportError as exc:
        raise MissingExtraError(
            f"{where.source}: evaluator.kind: 'torch' needs torch: pip install 'dashsel[torch]' "
            f"({exc})"
        ) from None
    cls = module.TorchCNNEvaluator
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = tuple(n for n in params if n != "pool")
    if not takes_any:
        _only(kwargs, allowed, where)
    try:
        return cls(pool, **kwargs)
    except TypeError as exc:
        raise where.fail(None, f"TorchCNNEvaluator rejects these keys ({exc})") from None


register_evaluator(EvaluatorKind("logistic", _parse_logistic, _build_logistic, trains=True))
register_evaluator(EvaluatorKind("sklearn", _parse_sklearn, _build_sklearn, trains=True))
register_evaluator(EvaluatorKind("table", _parse_table, _build_table, trains=False))
register_evaluator(EvaluatorKind("torch", _parse_torch, _build_torch, trains=True))
