"""Checks a run would otherwise hit only at its first trial, or at the dataset at fault.

:func:`check_pool` is what ``dashsel check`` runs (``deep=True``: every file is read) and what
``dashsel run`` runs before its first trial (``deep=False``: the local, validation and test
data are read, candidates only as far as their headers go). Both raise the same one-line
:class:`~dashsel.errors.DataError` naming the dataset and its file: feature shapes that differ
from the local data's, labels that are not 1-D or hold NaN, features that are not finite,
arrays over the size cap (:func:`dashsel.arrays.max_array_bytes`), empty or unreadable files.

:func:`check_seed`, :func:`check_journal_path` and :func:`check_output_dir` check a run's
options before any work, so a bad one is a one-line error and not a traceback halfway through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dashsel.arrays import ArrayInfo, inspect_arrays, validate_arrays
from dashsel.errors import DashselError, DataError
from dashsel.pool import ArraySplit, DatasetEntry, Pool

SPLITS = ("local", "validation", "test")


@dataclass(frozen=True)
class PoolCheck:
    """What :func:`check_pool` looked at.

    Attributes
    ----------
    n_datasets : int
        Candidates with arrays.
    n_loaded : int
        Candidates whose arrays were checked in full.
    n_from_headers : int
        Candidates checked from their file headers only (``deep=False``); the rest of the
        ``n_datasets`` (lazy loaders that are not array files) are checked when first read.
    feature_shape : tuple of int or None
        The per-sample feature shape every array shares (None: no arrays in the pool).
    """

    n_datasets: int
    n_loaded: int
    n_from_headers: int
    feature_shape: tuple[int, ...] | None


def check_pool(pool: Pool, *, deep: bool = True, max_bytes: int | None = None) -> PoolCheck:
    """Run every data check a selection run would hit, and raise on the first problem.

    Parameters
    ----------
    pool : Pool
        The pool; replay-only entries (no arrays) are skipped.
    deep : bool
        Read every candidate's arrays (``dashsel check``; headers of all are checked first,
        so a width or size problem is found before any data is read). With False, candidates
        not loaded yet are checked from their file headers only: shapes, dtypes and declared
        sizes from ``.npz`` headers and Parquet metadata, the column count from a CSV's header
        line, not values (``dashsel run``, which reads each candidate when its first trial
        needs it); other lazy loaders are not called.
    max_bytes : int, optional
        Size cap per array for header checks (default :func:`dashsel.arrays.max_array_bytes`;
        loading applies the cap the pool's loaders were given).

    Returns
    -------
    PoolCheck

    Raises
    ------
    DataError
        Names the dataset or split and its file: unreadable, empty or oversized arrays,
        features whose shape differs from the local data's, labels that are not 1-D, labels
        or features that are NaN or infinite, candidates left with no row of the task's classes.
    """
    reference: tuple[int, ...] | None = None
    reference_what = ""
    for name in SPLITS:
        if pool.has_split(name):
            split = pool.split(name)
            check_split(split, f"{name} data")
            if reference is None:
                reference, reference_what = split.X.shape[1:], f"the {name} data"
            else:
                _same_width(split.X.shape[1:], reference, reference_what, f"{name} data")
    if deep:
        # Headers first: a width or size problem anywhere is found without reading any data.
        check_pool(pool, deep=False, max_bytes=max_bytes)
    n_datasets = n_loaded = n_headers = 0
    # A replay-only pool (a table of datasets without paths) has nothing more to check.
    entries = pool.entries if pool.any_candidate_arrays else ()
    for entry in entries:
        if not entry.has_data:
            continue
        n_datasets += 1
        what = f"dataset {entry.id!r}{_where(entry.source)}"
        if deep or entry.data is not None:
            data = entry.load()
            n_loaded += 1
            check_split(data, what)
            shape = data.X.shape[1:]
        elif _header_source(entry) is not None:
            x, _ = _header_check(entry, what, max_bytes)
            n_headers += 1
            shape = tuple(int(d) for d in x.shape[1:] if d is not None)
        else:
            continue  # a loader we cannot look into without running it: checked on first use
        if reference is None:
            reference, reference_what = shape, f"dataset {entry.id!r}"
        else:
            _same_width(shape, reference, reference_what, what)
    if deep:
        pool.check_labels()
    return PoolCheck(
        n_datasets=n_datasets,
        n_loaded=n_loaded,
        n_from_headers=n_headers,
        feature_shape=reference,
    )


def check_split(split: ArraySplit, what: str) -> None:
    """Raise :class:`DataError` naming ``what`` unless ``split`` is usable for training.

    Features at least 2-D and numeric with every value finite, labels 1-D without NaN, as
    many labels as rows, at least one row.
    """
    validate_arrays(split.X, split.y, what)


def check_seed(seed: Any) -> int:
    """A run seed as an int >= 0 (numpy seeds cannot be negative); else :class:`DashselError`."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise DashselError(f"seed must be a non-negative integer, got {seed!r}")
    if seed < 0:
        raise DashselError(f"seed must be a non-negative integer, got {seed}")
    return int(seed)


def check_journal_path(path: str | os.PathLike[str]) -> Path:
    """Refuse a journal path that cannot be a file: a folder, a NUL byte, a parent that is a
    file. Missing parent folders are fine (the journal creates them).

    Returns the path; raises :class:`DashselError` naming it.
    """
    return _file_target(path, "journal")


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """Fail now, with one line, if a file cannot be written at ``path`` later (``--json``,
    ``--journal``): a NUL byte, a directory, a folder that cannot be created or written in
    (a file is created there and removed), an existing read-only ``path``. Creates missing
    parent folders (unlike :func:`check_journal_path`, which has no side effect, for
    :func:`dashsel.select`). Returns the path.
    """
    import tempfile

    target = _file_path(path, what, "is a directory, not a file")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder should be, no permission, ...
        blocker = next((p for p in target.parents if p.exists()), None)
        why = (
            f"{blocker} is a file, not a folder"
            if blocker is not None and not blocker.is_dir()
            else (exc.strerror or str(exc))
        )
        raise DashselError(f"{what} {target}: cannot create folder {parent} ({why})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DashselError(
            f"{what} {target}: cannot write in {parent} ({exc.strerror or exc})"
        ) from None
    if target.exists() and not os.access(target, os.W_OK):
        raise DashselError(f"{what} {target}: file is not writable")
    return target


def check_output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Refuse a folder to write into that is a file, or lies under one, or holds a NUL byte.

    Returns the path; raises :class:`DashselError` naming it and ``what``.
    """
    text = os.fspath(path)
    if "\x00" in text:
        raise DashselError(f"{what} {text!r}: path contains a NUL byte")
    target = Path(text)
    if target.exists() and not target.is_dir():
        raise DashselError(f"{what} {target}: exists and is not a folder")
    _parents_are_folders(target, what)
    return target


def _file_path(path: str | os.PathLike[str], what: str, if_folder: str) -> Path:
    """``path`` as a Path, refusing a NUL byte and an existing folder (``if_folder`` says why)."""
    text = os.fspath(path)
    if "\x00" in text:
        raise DashselError(f"{what} {text!r}: path contains a NUL byte")
    target = Path(text)
    if target.is_dir():
        raise DashselError(f"{what} {target}: {if_folder}")
    return target


def _file_target(path: str | os.PathLike[str], what: str) -> Path:
    target = _file_path(path, what, "is a folder; give a file name such as run.db")
    _parents_are_folders(target, what)
    return target


def _parents_are_folders(target: Path, what: str) -> None:
    # The first ancestor that exists must be a folder; otherwise mkdir/open fail with an
    # OSError deep inside sqlite or numpy.
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DashselError(f"{what} {target}: {parent} is a file, not a folder")
            return


# --- helpers ---------------------------------------------------------------------------------
def _where(source: str | None) -> str:
    return f" ({source})" if source else ""


def _same_width(
    shape: tuple[int, ...], reference: tuple[int, ...], reference_what: str, what: str
) -> None:
    if shape != reference:
        raise DataError(
            f"{what}: features have shape {shape} per sample but {reference_what} has "
            f"{reference}; every array in a pool needs the same features"
        )


def _header_source(entry: DatasetEntry) -> tuple[str, dict[str, Any]] | None:
    """File and read options of a manifest entry whose headers say its shapes, else None."""
    loader, source = entry.loader, entry.source
    if source is None or not isinstance(loader, partial):
        return None
    if Path(source).suffix.lower() not in (".npz", ".parquet", ".csv"):
        return None
    keys = ("label_column", "x_key", "y_key")
    return source, {k: v for k, v in (loader.keywords or {}).items() if k in keys}


def _header_check(
    entry: DatasetEntry, what: str, max_bytes: int | None
) -> tuple[ArrayInfo, ArrayInfo]:
    found = _header_source(entry)
    assert found is not None
    source, options = found
    try:
        x, y = inspect_arrays(source, max_bytes=max_bytes, **options)
    except DataError as exc:
        raise DataError(f"dataset {entry.id!r}: {exc}") from None
    if len(x.shape) < 2:
        raise DataError(f"{what}: features must be at least 2-D (n_samples, ...), got {x.shape}")
    if len(y.shape) != 1:
        raise DataError(f"{what}: labels must be 1-D (n_samples,), got shape {y.shape}")
    if x.shape[0] is not None and y.shape[0] is not None and x.shape[0] != y.shape[0]:
        raise DataError(f"{what}: {x.shape[0]} rows of features but {y.shape[0]} labels")
    if x.shape[0] == 0:
        raise DataError(f"{what}: no rows")
    return x, y
