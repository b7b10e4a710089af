"""The one JSON normaliser: journals, results and evaluator descriptions all use it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np


def to_jsonable(value: Any, *, nonfinite: Literal["repr", "null"] = "repr") -> Any:
    """A JSON-serialisable copy of ``value`` (numpy scalars and arrays, tuples, paths, sets).

    Parameters
    ----------
    value : any
        What to copy. Anything unknown (an estimator, a callable) becomes its ``repr``, so
        metadata never fails to serialise and compares equal across processes.
    nonfinite : {"repr", "null"}
        What NaN and infinities become (JSON has neither): their text (``"nan"``, ``"inf"``:
        journals keep the value recognisable) or ``None`` (results: a belief about an arm never
        pulled is NaN in some policies and means "unknown").
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        if math.isfinite(f):
            return f
        return repr(f) if nonfinite == "repr" else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, nonfinite=nonfinite) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if _all_str(value):  # fast path: a pool's ids (10^6 of them), checked in C
            return list(value)
        return [to_jsonable(v, nonfinite=nonfinite) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((to_jsonable(v, nonfinite=nonfinite) for v in value), key=repr)
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), nonfinite=nonfinite)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _all_str(values: list[Any] | tuple[Any, ...]) -> bool:
    """True if every item is a str (``str.join`` checks that in one C loop)."""
    try:
        "".join(values)
    except TypeError:
        return False
    return True


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and durably.

    A temporary file in the same folder is written, synced and renamed over ``path``, so a
    reader (or a crash) never sees half a file. Values go through :func:`to_jsonable`
    (non-finite floats as strings), so the file is strict JSON.

    Raises
    ------
    DashselError
        ``path`` is a folder or cannot be written (one line naming it).
    """
    import json
    import os
    import tempfile

    from dashsel.errors import DashselError

    path = Path(path)
    if path.is_dir():
        raise DashselError(f"{path} is a folder; give a file name")
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DashselError(f"cannot write {path} ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DashselError(f"cannot write {path} ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
