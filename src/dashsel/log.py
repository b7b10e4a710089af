"""Logging of runs through the standard :mod:`logging` module (logger ``"dashsel"``).

:func:`dashsel.select` logs one INFO record per finished trial (trial, dataset, group, reward,
best so far), a WARNING for each trial that failed for good, and DEBUG records for retries.
Each record carries the fields in ``record.dashsel`` (a dict), so a handler can print them as
JSON lines (:class:`JsonFormatter`). As a library, dashsel adds only a
:class:`logging.NullHandler`: nothing is printed unless the application configures logging;
the CLI does it with :func:`configure`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

LOGGER_NAME = "dashsel"
logger = logging.getLogger(LOGGER_NAME)
logger.addHandler(logging.NullHandler())

LOG_FORMATS: tuple[str, ...] = ("text", "json")


def log_event(level: int, message: str, **fields: Any) -> None:
    """Log ``message`` with ``fields`` (JSON-serialisable) attached as ``record.dashsel``."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"dashsel": fields})


def trial_message(fields: dict[str, Any]) -> str:
    """The text line of a finished trial, from the fields :func:`dashsel.select` logs."""
    head = (
        f"trial {fields['trial'] + 1}/{fields['budget']} dataset {fields['dataset']} "
        f"group {fields['group']}"
    )
    if fields.get("state") == "failed":
        return f"{head} failed: {fields.get('error')} (dataset set aside)"
    best = fields.get("best")
    best_text = "-" if best is None else f"{best:.4f}"
    return f"{head} reward {fields['reward']:.4f} best {best_text}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message, and the record's dashsel fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        data.update(getattr(record, "dashsel", {}) or {})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, allow_nan=False)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS message`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{stamp} {level}{' '.join(record.getMessage().split())}"


def configure(
    *,
    log_format: str = "text",
    quiet: bool = False,
    verbose: bool = False,
    progress_bar: bool = False,
    stream: IO[str] | None = None,
    console: Any = None,
) -> logging.Handler:
    """Set up the ``"dashsel"`` logger for a command-line run; returns the handler added.

    Parameters
    ----------
    log_format : {"text", "json"}
        One line of text, or one JSON object, per record.
    quiet, verbose : bool
        Warnings and errors only; or DEBUG records too (retries, workers).
    progress_bar : bool
        A progress bar shows the trials (a terminal): per-trial INFO lines are then left out
        unless ``verbose``; other records print above the bar through ``console`` (rich).
    stream : file, optional
        Where lines go (default: standard error).
    """
    from dashsel.errors import DashselError

    if log_format not in LOG_FORMATS:
        raise DashselError(
            f"unknown log format {log_format!r}: use one of {', '.join(LOG_FORMATS)}"
        )
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler: logging.Handler
    if progress_bar and log_format == "text" and console is not None:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setLevel(level if verbose else max(level, logging.WARNING))
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
        handler.setLevel(level)
    for old in [h for h in logger.handlers if getattr(h, "_dashsel_cli", False)]:
        logger.removeHandler(old)
    handler._dashsel_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler


def unconfigure(handler: logging.Handler) -> None:
    """Undo :func:`configure`: remove ``handler`` and give the logger its defaults back."""
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
