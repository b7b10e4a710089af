"""Exceptions raised by dashsel.

Every error a user can cause derives from :class:`DashselError`; its message is one line that
names the file, key, field or dataset at fault, so the CLI can print it without a traceback.
"""

from __future__ import annotations

import copy
from typing import Any

#: Longest one-line message kept from a foreign exception (journals, trial errors).
MAX_MESSAGE_CHARS = 500


def one_line(value: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``value`` (text or an exception) squeezed onto one line and cut to ``limit`` characters.

    An exception without a message gives its type's name, so a message is never empty.
    """
    flat = " ".join(str(value).split())
    if not flat and isinstance(value, BaseException):
        flat = type(value).__name__
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _rebuild(cls: type[DashselError], args: tuple[Any, ...], state: dict[str, Any]):
    # Whatever the subclass's __init__ takes: the message travels in args, attributes in state.
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class DashselError(Exception):
    """Base class of every error a user can cause (bad input, bad state).

    Instances pickle with their message and attributes whatever a subclass's ``__init__``
    takes, so executors can send them back from worker processes as they are.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))

    def with_message(self, message: str) -> DashselError:
        """A copy of this error (same class and attributes) whose message is ``message``."""
        new = copy.copy(self)
        new.args = (message,)
        return new


class ManifestError(DashselError):
    """A pool manifest is malformed; the message names the file and the key."""


class DataError(DashselError):
    """An array file is missing, unreadable or inconsistent; the message names the file."""


class LabelWarning(UserWarning):
    """Rows of a candidate dataset were dropped: their labels are none of the task's classes."""


class UnknownDatasetError(DashselError, KeyError):
    """A dataset id that the pool does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RewardError(DashselError):
    """An evaluation returned a reward that is not a finite number."""


class JournalError(DashselError):
    """A journal belongs to a different run, or is not a dashsel journal."""


class MissingExtraError(DashselError, ImportError):
    """An optional dependency (ray, torch, optuna, ...) is not installed."""


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise a :class:`MissingExtraError` that says how to get it.

    Parameters
    ----------
    module : str
        Module to import, e.g. ``"ray"``.
    extra : str
        The dashsel extra that installs it, e.g. ``"ray"``.
    purpose : str
        What needs it, for the message, e.g. ``"the Ray executor"``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the optional dependency {module!r}: pip install 'dashsel[{extra}]'"
        ) from exc
