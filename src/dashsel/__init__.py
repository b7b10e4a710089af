"""dashsel: dataset selection via hierarchies (DaSH)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dashsel")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["SelectionResult", "Study", "__version__", "select"]


def __getattr__(name: str):
    # Lazy, so `import dashsel` (the CLI, worker processes) stays cheap.
    if name == "select":
        from dashsel.run import select

        return select
    if name == "SelectionResult":
        from dashsel.result import SelectionResult

        return SelectionResult
    if name == "Study":
        from dashsel.study import Study

        return Study
    raise AttributeError(f"module 'dashsel' has no attribute {name!r}")
