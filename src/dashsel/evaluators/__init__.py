"""Evaluators: turn a dataset choice into a reward.

:func:`make_evaluator` builds one from a manifest's ``[evaluator]`` table (the kinds and their
keys: :mod:`dashsel.evaluators.kinds`); further kinds can be added with
:func:`register_evaluator` (:mod:`dashsel.evaluators.registry`). This module only re-exports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dashsel.evaluators import kinds as _builtin_kinds  # noqa: F401 - registers the kinds
from dashsel.evaluators.base import Evaluator
from dashsel.evaluators.registry import (
    EvaluatorKind,
    evaluator_kinds,
    make_evaluator,
    register_evaluator,
    validate_evaluator_config,
)

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
