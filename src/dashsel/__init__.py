"""dashsel: dataset selection via hierarchies (DaSH)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dashsel")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
