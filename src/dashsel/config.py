"""Validating configuration tables (manifests, ``[evaluator]`` tables) with one-line errors.

Every message reads ``"<file>: <key>: <problem>"``: the file the table came from and the
dotted key at fault (``datasets[3].path``, ``evaluator.C``), so a user can go straight to it.
Manifests (:mod:`dashsel.manifest`) and evaluator kinds (:mod:`dashsel.evaluators.kinds`) both
check their tables with :class:`ConfigContext`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dashsel.errors import ManifestError, one_line


def suggest(name: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'?"`` for the closest of ``choices``, else ``"use one of a, b"``."""
    options = list(choices)
    near = difflib.get_close_matches(str(name), options, n=1)
    if near:
        return f"did you mean {near[0]!r}?"
    return f"use one of {', '.join(options)}" if options else "no other keys are allowed"


def toml_type(value: Any) -> str:
    """How a TOML user calls the type of ``value`` ("an integer", "a table", ...)."""
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class ConfigContext:
    """Typed getters for one configuration source, whose errors name the file and key.

    Parameters
    ----------
    source : str or Path or None
        The file the tables come from (``default`` when None, e.g. a table built in Python).
    prefix : str
        Put in front of every key, e.g. ``"evaluator."``; keys passed to the getters are
        relative to it.
    default : str
        What names the source when ``source`` is None.
    """

    def __init__(
        self,
        source: str | Path | None,
        prefix: str = "",
        *,
        default: str = "<config>",
        allow_estimators: Any = (),
    ) -> None:
        self.source = str(source) if source is not None else default
        self.prefix = prefix
        # Estimators the user allowed outside the manifest (see dashsel.evaluators.sklearn);
        # a manifest can never extend this list itself.
        self.allow_estimators = tuple(allow_estimators or ())

    def sub(self, prefix: str) -> ConfigContext:
        """A context for a nested table: ``prefix`` (e.g. ``"datasets[2]."``) is appended."""
        return ConfigContext(
            self.source, self.prefix + prefix, allow_estimators=self.allow_estimators
        )

    def key(self, key: str | None) -> str:
        """The full dotted key (the prefix alone, without its dot, for None). A key that is
        not printable on one line (a newline, a control character) is shown quoted."""
        if key and not key.isprintable():
            key = repr(key)
        return f"{self.prefix}{key}" if key else self.prefix.rstrip(".")

    def fail(self, key: str | None, problem: str) -> ManifestError:
        """The error for ``problem`` at ``key`` (not raised: ``raise ctx.fail(...)``)."""
        where = self.key(key)
        text = f"{self.source}: {where}: {problem}" if where else problem
        return ManifestError(one_line(text, 1000))

    # --- keys and tables ---------------------------------------------------------------------
    def known_keys(self, table: Mapping[str, Any], allowed: Iterable[str]) -> None:
        """Refuse a key of ``table`` outside ``allowed``, suggesting the closest."""
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                raise self.fail(key, f"unknown key; {suggest(key, allowed)}")

    def choice(self, table: Mapping[str, Any], key: str, choices: Iterable[str], what: str) -> str:
        """A required string among ``choices`` (the ``kind`` of a table)."""
        options = tuple(choices)
        value = table.get(key)
        if value is None:
            raise self.fail(key, f"missing; use one of {', '.join(options)}")
        if not isinstance(value, str) or value not in options:
            raise self.fail(key, f"unknown {what} {value!r}; {suggest(str(value), options)}")
        return value

    def table(
        self, raw: Mapping[str, Any], key: str, *, required: bool, reason: str = ""
    ) -> dict[str, Any] | None:
        """The sub-table ``raw[key]`` (None when absent and not ``required``)."""
        value = raw.get(key)
        if value is None:
            if required:
                raise self.fail(key, f"missing [{self.key(key)}] table{reason}")
            return None
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table ([{self.key(key)}]), not {toml_type(value)}")
        return value

    # --- scalars -----------------------------------------------------------------------------
    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        *,
        required: bool = False,
        default: str | None = None,
        reason: str = "",
    ) -> str | None:
        """A non-empty string (``default`` when absent, None when also not ``required``;
        ``reason`` is added to the "missing" message)."""
        value = table.get(key, default)
        if value is None:
            if required:
                raise self.fail(key, f"missing{reason}")
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, not {toml_type(value)} {value!r}")
        if not value:
            raise self.fail(key, "must not be empty")
        if "\x00" in value:  # no file or class can be named with one
            raise self.fail(key, f"must not contain a NUL byte: {value!r}")
        return value

    def boolean(self, table: Mapping[str, Any], key: str, default: bool) -> bool:
        """``true`` or ``false``."""
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def positive(
        self, table: Mapping[str, Any], key: str, default: float, *, integer: bool = False
    ) -> Any:
        """A number > 0 (an integer when ``integer``); booleans are refused."""
        value = table.get(key, default)
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok or not value > 0:
            kind = "integer" if integer else "number"
            raise self.fail(key, f"must be a positive {kind}, not {value!r}")
        return value

    def mapping(self, table: Mapping[str, Any], key: str, example: str) -> dict[str, Any]:
        """An optional inline table (``{}`` when absent); ``example`` shows the syntax."""
        value = table.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, e.g. {example}")
        return dict(value)
