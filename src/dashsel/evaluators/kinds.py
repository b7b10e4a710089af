"""The built-in evaluator kinds: how each checks its ``[evaluator]`` keys and builds itself.

Kinds and their keys:

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

Every kind also takes ``deterministic`` (bool): whether a trial's reward depends on its
dataset only, overriding what the evaluator says (:attr:`Evaluator.deterministic
<dashsel.evaluators.base.Evaluator.deterministic>`: ``logistic`` and ``sklearn`` without
bootstrap and without a seeded estimator, ``table`` with one row per dataset).

Parsing imports nothing heavy (a manifest is checked before scikit-learn or torch load).
Building ``logistic`` or ``torch`` does not import them either (the estimator or network is
made where the trials run, so the main process of a run on workers or Ray never imports
them before its trials start); building ``sklearn`` does (the estimator is checked up front).
"""

from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path
from typing import Any

from dashsel.config import ConfigContext
from dashsel.errors import DashselError, MissingExtraError, one_line
from dashsel.evaluators.base import Evaluator
from dashsel.evaluators.registry import Build, EvaluatorKind, Parse, register_evaluator
from dashsel.pool import Pool


def _training_options(config: dict[str, Any], ctx: ConfigContext) -> dict[str, bool]:
    """The options every training kind shares."""
    return {
        "bootstrap": ctx.boolean(config, "bootstrap", False),
        "standardize": ctx.boolean(config, "standardize", True),
    }


# --- logistic ---------------------------------------------------------------------------------
def _parse_logistic(config: dict[str, Any], ctx: ConfigContext) -> dict[str, Any]:
    ctx.known_keys(config, ("C", "max_iter", "bootstrap", "standardize"))
    return {
        "C": float(ctx.positive(config, "C", 1.0)),
        "max_iter": ctx.positive(config, "max_iter", 300, integer=True),
        **_training_options(config, ctx),
    }


def _build_logistic(
    kwargs: dict[str, Any], pool: Pool, base: Path, ctx: ConfigContext
) -> Evaluator:
    from dashsel.evaluators.sklearn import LogisticEvaluator

    return LogisticEvaluator(pool, **kwargs)


# --- sklearn ----------------------------------------------------------------------------------
def _parse_sklearn(config: dict[str, Any], ctx: ConfigContext) -> dict[str, Any]:
    from dashsel.evaluators.sklearn import check_estimator_name

    ctx.known_keys(config, ("estimator", "params", "bootstrap", "standardize"))
    name = ctx.string(config, "estimator", required=True)
    try:  # the allow-list, before anything the manifest names is imported
        check_estimator_name(name, ctx.allow_estimators)
    except DashselError as exc:
        raise ctx.fail("estimator", str(exc)) from None
    return {
        "estimator": name,
        "params": ctx.mapping(config, "params", "params = { n_estimators = 100 }"),
        **_training_options(config, ctx),
    }


def _build_sklearn(kwargs: dict[str, Any], pool: Pool, base: Path, ctx: ConfigContext) -> Evaluator:
    from sklearn.base import is_classifier

    from dashsel.evaluators.sklearn import SklearnEvaluator, build_estimator, resolve_estimator

    try:
        cls = resolve_estimator(kwargs["estimator"], ctx.allow_estimators)
    except DashselError as exc:
        raise ctx.fail("estimator", str(exc)) from None
    try:
        estimator = build_estimator(cls, kwargs["params"])
    except DashselError as exc:
        raise ctx.fail("params", str(exc)) from None
    if not is_classifier(estimator):  # an allowed class may still not be one
        raise ctx.fail("estimator", f"{kwargs['estimator']!r} is not a scikit-learn classifier")
    return SklearnEvaluator(
        pool, estimator, bootstrap=kwargs["bootstrap"], standardize=kwargs["standardize"]
    )


# --- table ------------------------------------------------------------------------------------
def _parse_table(config: dict[str, Any], ctx: ConfigContext) -> dict[str, Any]:
    ctx.known_keys(config, ("path", "dataset_column", "reward_column"))
    return {
        "path": ctx.string(config, "path", required=True),
        "dataset_column": ctx.string(config, "dataset_column", default="dataset"),
        "reward_column": ctx.string(config, "reward_column", default="reward"),
    }


def _build_table(kwargs: dict[str, Any], pool: Pool, base: Path, ctx: ConfigContext) -> Evaluator:
    from dashsel.evaluators.table import TableEvaluator

    try:
        file = (base / Path(kwargs["path"]).expanduser()).resolve()
    except (RuntimeError, ValueError) as exc:  # "~nosuchuser/...", a NUL byte
        raise ctx.fail("path", f"{one_line(exc)} in {kwargs['path']!r}") from None
    # os.path.isfile: False, not an OSError, for a name too long
    if not os.path.isfile(file):
        raise ctx.fail("path", f"no such file {file}")
    evaluator = TableEvaluator(
        file, dataset_column=kwargs["dataset_column"], reward_column=kwargs["reward_column"]
    )
    evaluator.check_pool(pool)
    return evaluator


# --- torch ------------------------------------------------------------------------------------
def _parse_torch(config: dict[str, Any], ctx: ConfigContext) -> dict[str, Any]:
    return dict(config)  # keys are checked against the class's signature at build time


def _build_torch(kwargs: dict[str, Any], pool: Pool, base: Path, ctx: ConfigContext) -> Evaluator:
    try:
        module = importlib.import_module("dashsel.evaluators.torch_cnn")
    except ImportError as exc:
        raise MissingExtraError(
            f"{ctx.source}: evaluator.kind: 'torch' needs torch: pip install 'dashsel[torch]' "
            f"({exc})"
        ) from None
    cls = module.TorchCNNEvaluator
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = tuple(n for n in params if n != "pool")
    if not takes_any:
        ctx.known_keys(kwargs, allowed)
    try:
        return cls(pool, **kwargs)
    except TypeError as exc:
        raise ctx.fail(None, f"TorchCNNEvaluator rejects these keys ({exc})") from None


# --- keys every kind takes ---------------------------------------------------------------------
_DETERMINISTIC = "__deterministic__"  # where the parsed override travels to build


def _with_common_keys(parse: Parse, build: Build) -> tuple[Parse, Build]:
    """``parse``/``build`` that also handle ``deterministic = true|false``."""

    def parse_all(config: dict[str, Any], ctx: ConfigContext) -> dict[str, Any]:
        rest = {k: v for k, v in config.items() if k != "deterministic"}
        kwargs = parse(rest, ctx)
        if "deterministic" in config:
            kwargs[_DETERMINISTIC] = ctx.boolean(config, "deterministic", False)
        return kwargs

    def build_all(kwargs: dict[str, Any], pool: Pool, base: Path, ctx: ConfigContext) -> Evaluator:
        rest = {k: v for k, v in kwargs.items() if k != _DETERMINISTIC}
        evaluator = build(rest, pool, base, ctx)
        if _DETERMINISTIC in kwargs:
            evaluator.deterministic = kwargs[_DETERMINISTIC]
        return evaluator

    return parse_all, build_all


# dashsel.evaluators.sklearn imports scikit-learn only where it is used: workers import it
# while they wait for the evaluator.
_SKLEARN = (
    "dashsel.evaluators.sklearn",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
)
for _name, _parse, _build, _trains, _imports in (
    ("logistic", _parse_logistic, _build_logistic, True, _SKLEARN),
    ("sklearn", _parse_sklearn, _build_sklearn, True, _SKLEARN),
    ("table", _parse_table, _build_table, False, ("dashsel.evaluators.table",)),
    ("torch", _parse_torch, _build_torch, True, ("dashsel.evaluators.torch_cnn",)),
):
    register_evaluator(
        EvaluatorKind(_name, *_with_common_keys(_parse, _build), trains=_trains, imports=_imports)
    )
