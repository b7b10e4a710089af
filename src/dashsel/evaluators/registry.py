"""The registry of evaluator kinds and the two entry points that use it.

:func:`make_evaluator` builds an evaluator from a manifest's ``[evaluator]`` table;
:func:`validate_evaluator_config` only checks the table. Each kind's parsing and building is
in :mod:`dashsel.evaluators.kinds`; further kinds are added with :func:`register_evaluator`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashsel.config import ConfigContext
from dashsel.evaluators.base import Evaluator
from dashsel.pool import Pool

Parse = Callable[[dict[str, Any], ConfigContext], dict[str, Any]]
Build = Callable[[dict[str, Any], Pool, Path, ConfigContext], Evaluator]


@dataclass(frozen=True)
class EvaluatorKind:
    """One ``kind`` of the ``[evaluator]`` table.

    ``parse`` checks the table's keys and types without importing anything heavy and returns
    keyword arguments; ``build`` turns them into an evaluator. Both get a
    :class:`~dashsel.config.ConfigContext` whose errors name the manifest and
    ``evaluator.<key>``. ``trains`` says whether the kind trains models (then the manifest
    needs local and validation data and datasets need array files). ``imports`` names the
    modules its evaluators need, so worker processes can import them while the evaluator is
    being built (:meth:`dashsel.executors.Executor.start`).
    """

    name: str
    parse: Parse
    build: Build
    trains: bool = True
    imports: tuple[str, ...] = ()


_KINDS: dict[str, EvaluatorKind] = {}


def register_evaluator(kind: EvaluatorKind) -> None:
    """Add (or replace) an evaluator kind usable in manifests."""
    _KINDS[kind.name] = kind


def evaluator_kinds() -> tuple[str, ...]:
    """Names of the registered kinds."""
    return tuple(_KINDS)


def evaluator_imports(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The modules an ``[evaluator]`` table's kind needs (:attr:`EvaluatorKind.imports`;
    empty for an unknown kind, which building will refuse). Checks and imports nothing."""
    name = config.get("kind") if isinstance(config, Mapping) else None
    kind = _KINDS.get(name) if isinstance(name, str) else None
    return kind.imports if kind is not None else ()


def config_context(source: str | Path | None, allow_estimators: Any = ()) -> ConfigContext:
    """The context an ``[evaluator]`` table from ``source`` is checked in."""
    return ConfigContext(
        source, "evaluator.", default="[evaluator]", allow_estimators=allow_estimators
    )


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
    ctx = config_context(source, allow_estimators)
    kind, params = _split(config, ctx)
    kind.parse(params, ctx)
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
        The table: ``kind`` plus that kind's keys (see :mod:`dashsel.evaluators`).
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
    ctx = config_context(source, allow_estimators)
    kind, params = _split(config, ctx)
    return kind.build(kind.parse(params, ctx), pool, Path(base_dir), ctx)


def _split(config: Mapping[str, Any], ctx: ConfigContext) -> tuple[EvaluatorKind, dict[str, Any]]:
    """The table's kind and its other keys."""
    name = ctx.choice(config, "kind", _KINDS, "kind")
    return _KINDS[name], {k: v for k, v in config.items() if k != "kind"}
