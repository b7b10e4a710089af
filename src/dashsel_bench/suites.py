"""Registry of benchmark suites, by name.

Suites are imported lazily: building the registry costs nothing, and a suite whose module needs
heavy imports (or is not written yet) only matters when asked for.
"""

from __future__ import annotations

import importlib

from dashsel.errors import DashselError
from dashsel_bench.common import BenchmarkSuite

#: Suite name -> module defining a module-level ``SUITE``.
SUITES: dict[str, str] = {
    "digits5": "dashsel_bench.digits5",
    "spam": "dashsel_bench.spam",
}


def get_suite(name: str) -> BenchmarkSuite:
    """The suite registered as ``name`` (its module's ``SUITE`` object).

    Raises
    ------
    DashselError
        If ``name`` is not registered, or its module cannot be imported or has no ``SUITE``.
    """
    if name not in SUITES:
        raise DashselError(f"unknown benchmark suite {name!r}: use one of {', '.join(SUITES)}")
    try:
        module = importlib.import_module(SUITES[name])
    except ImportError as exc:
        raise DashselError(f"benchmark suite {name!r} is unavailable: {exc}") from exc
    suite = getattr(module, "SUITE", None)
    if suite is None:
        raise DashselError(f"module {SUITES[name]} defines no SUITE for suite {name!r}")
    return suite


def resolve_suite(suite: str | BenchmarkSuite) -> BenchmarkSuite:
    """``suite`` itself, or the suite registered under that name."""
    return get_suite(suite) if isinstance(suite, str) else suite
