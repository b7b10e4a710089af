"""Reading and writing the array files a pool is made of.

Three formats are read, chosen by the file's extension:

``.npz``
    Arrays ``X`` (n_samples, n_features, ...) and ``y`` (n_samples,), names configurable. Read
    with ``allow_pickle=False``: an object array is refused with a :class:`DataError`, never
    unpickled, so a pool file cannot run code.
``.csv``
    One row per sample; the label column (default ``"label"``) holds the labels and every other
    column is a numeric feature.
``.parquet``
    As ``.csv``, read with pyarrow.

Every problem raises :class:`~dashsel.errors.DataError` with a one-line message that names the
file and the array, column or row at fault.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dashsel.errors import DataError, one_line
from dashsel.pool import ArraySplit

if TYPE_CHECKING:
    import pandas as pd

    from dashsel.pool import Pool

#: Extensions :func:`load_arrays` understands.
FORMATS: tuple[str, ...] = (".npz", ".csv", ".parquet")


def load_arrays(
    path: str | Path,
    *,
    label_column: str = "label",
    x_key: str = "X",
    y_key: str = "y",
) -> ArraySplit:
    """Read features and labels from a ``.npz``, ``.csv`` or ``.parquet`` file.

    Parameters
    ----------
    path : str or Path
        The file; its extension picks the format.
    label_column : str
        Column holding the labels (``.csv`` and ``.parquet``).
    x_key, y_key : str
        Names of the feature and label arrays (``.npz``).

    Returns
    -------
    ArraySplit

    Raises
    ------
    DataError
        The file is missing or unreadable, has an unknown extension, lacks the arrays or label
        column, holds non-numeric or non-finite features, object arrays, no rows, or features
        and labels of different lengths.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"{path}: unknown file extension {path.suffix or '(none)'!r}: "
            f"use one of {', '.join(FORMATS)}"
        )
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if suffix == ".npz":
        X, y = _read_npz(path, x_key, y_key)
        return _checked(path, X, y, f"array {x_key!r}", suffix)
    X, y, columns = _read_table(path, label_column, suffix)
    return _checked(path, X, y, "features", suffix, columns)


def save_npz(path: str | Path, split: ArraySplit, *, compress: bool = False) -> Path:
    """Write ``split`` as a ``.npz`` file with arrays ``X`` and ``y`` and return its path.

    The path is used as given (numpy would otherwise append ``.npz``); parent folders are
    created. ``compress=True`` trades load speed for size.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if split.X.dtype == object or split.y.dtype == object:
        raise DataError(f"{path}: refusing to write object arrays (they would need pickle)")
    save = np.savez_compressed if compress else np.savez
    with path.open("wb") as fh:
        save(fh, X=split.X, y=split.y)
    return path


# --- readers ---------------------------------------------------------------------------------
def _read_npz(path: Path, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({one_line(exc, 200)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy saved under .npz
        raise DataError(f"{path}: not an .npz archive (expected arrays {x_key!r} and {y_key!r})")
    with archive:
        out = []
        for key in (x_key, y_key):
            if key not in archive.files:
                raise DataError(
                    f"{path}: missing array {key!r} (the file holds: "
                    f"{', '.join(archive.files) or 'nothing'})"
                )
            try:
                out.append(archive[key])
            except ValueError as exc:
                # numpy refuses object arrays when allow_pickle=False; we never retry with it.
                if "pickle" in str(exc).lower() or "object" in str(exc).lower():
                    raise DataError(
                        f"{path}: array {key!r} is an object array, which would need pickle "
                        f"to load; save numeric X and numeric or string y instead"
                    ) from None
                raise DataError(
                    f"{path}: array {key!r} unreadable ({one_line(exc, 200)})"
                ) from None
            except (OSError, zipfile.BadZipFile) as exc:
                raise DataError(
                    f"{path}: array {key!r} unreadable ({one_line(exc, 200)})"
                ) from None
    return out[0], out[1]


def _read_table(
    path: Path, label_column: str, suffix: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    frame = _read_frame(path, suffix)
    if label_column not in frame.columns:
        cols = [str(c) for c in frame.columns]
        shown = ", ".join(cols[:8]) + (", ..." if len(cols) > 8 else "")
        raise DataError(
            f"{path}: missing label column {label_column!r} (columns: {shown or 'none'})"
        )
    if len(frame) == 0:
        raise DataError(f"{path}: no rows")
    labels = frame[label_column]
    missing = np.flatnonzero(labels.isna().to_numpy())
    if missing.size:
        raise DataError(
            f"{path}: label column {label_column!r} is empty on {_row(missing[0], suffix)}"
        )
    features = frame.drop(columns=[label_column])
    if features.shape[1] == 0:
        raise DataError(f"{path}: no feature columns besides label column {label_column!r}")
    for col in features.columns:
        series = features[col]
        dtype = series.dtype
        if not (is_numeric_dtype(dtype) or is_bool_dtype(dtype)):
            raise DataError(
                f"{path}: feature column {str(col)!r} is not numeric (dtype {dtype}); "
                f"only {label_column!r} may hold text"
            )
        empty = np.flatnonzero(series.isna().to_numpy())
        if empty.size:
            raise DataError(
                f"{path}: feature column {str(col)!r} is empty or NaN on {_row(empty[0], suffix)}"
            )
    X = features.to_numpy()
    if X.dtype == object:  # nullable/mixed pandas dtypes; all numeric by now
        X = features.to_numpy(dtype=np.float64)
    y = labels.to_numpy()
    if y.dtype == object:  # pandas keeps text labels as objects; store them as fixed strings
        y = np.asarray([str(v) for v in y])
    return X, y, [str(c) for c in features.columns]


def _read_frame(path: Path, suffix: str) -> pd.DataFrame:
    import pandas as pd

    if suffix == ".csv":
        try:
            return pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: empty file (no header, no rows)") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{path}: not a readable CSV file ({one_line(exc, 200)})") from None
    try:
        import pyarrow.parquet as pq
    except ImportError:
        from dashsel.errors import MissingExtraError

        raise MissingExtraError(
            f"{path}: reading .parquet needs pyarrow: pip install 'dashsel[parquet]'"
        ) from None
    try:
        return pq.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(f"{path}: not a readable parquet file ({one_line(exc, 200)})") from None


def _checked(
    path: Path,
    X: np.ndarray,
    y: np.ndarray,
    what: str,
    suffix: str,
    columns: list[str] | None = None,
) -> ArraySplit:
    if X.dtype == object or y.dtype == object:
        raise DataError(f"{path}: object arrays are not supported")
    if X.ndim < 2:
        raise DataError(
            f"{path}: {what} must be at least 2-D (n_samples, n_features), got shape {X.shape}"
        )
    if y.ndim != 1:
        raise DataError(f"{path}: labels must be 1-D (n_samples,), got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{path}: {what} has {X.shape[0]} rows but there are {y.shape[0]} labels")
    if X.shape[0] == 0:
        raise DataError(f"{path}: no rows")
    if not (np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.bool_)):
        raise DataError(f"{path}: {what} are not numeric (dtype {X.dtype})")
    if np.issubdtype(X.dtype, np.complexfloating):
        raise DataError(f"{path}: {what} are complex numbers")
    if np.issubdtype(X.dtype, np.floating):
        bad = ~np.isfinite(X)
        if bad.any():
            first = np.argwhere(bad)[0]
            where = _row(int(first[0]), suffix)
            if columns is not None:
                where += f", column {columns[int(first[1])]!r}"
            raise DataError(f"{path}: {what} hold NaN or infinite values (first on {where})")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DataError(f"{path}: labels hold NaN or infinite values")
    return ArraySplit(X, y)


# --- fingerprints ----------------------------------------------------------------------------
_CHUNK = 1 << 16


def file_digest(path: str | Path) -> str:
    """A short content digest of a file: its size plus its first and last 64 KiB.

    Cheap enough to take for thousands of files. For ``.npz`` files the tail holds the zip
    directory with every member's CRC, so any change to the arrays changes the digest; for
    large text files a same-size edit in the middle would go unnoticed.
    """
    path = Path(path)
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as fh:
        h.update(fh.read(_CHUNK))
        if size > _CHUNK:
            fh.seek(max(_CHUNK, size - _CHUNK))
            h.update(fh.read(_CHUNK))
    return h.hexdigest()[:16]


def split_digest(split: ArraySplit) -> str:
    """A short hash of a split's shapes, dtypes and contents."""
    h = hashlib.sha256()
    for a in (split.X, split.y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def data_fingerprint(pool: Pool) -> str:
    """A short hash of a pool's arrays, so caches and journals notice changed data.

    Entries read lazily from a file are summarised by :func:`file_digest` (without loading
    them); in-memory entries and the local, validation and test splits by their contents.
    """
    h = hashlib.sha256()
    for e in pool.entries:
        if e.loader is not None and e.source and Path(e.source).is_file():
            h.update(f"{e.id}\x00file\x00{file_digest(e.source)}\x01".encode())
        elif e.has_data:
            h.update(f"{e.id}\x00data\x00{split_digest(e.load())}\x01".encode())
    for name in ("local", "validation", "test"):
        if pool.has_split(name):
            h.update(f"{name}\x00{split_digest(pool.split(name))}\x01".encode())
    return h.hexdigest()[:16]


def _row(index: int, suffix: str) -> str:
    # Name the line a user sees in an editor for CSV (header is line 1); 0-based rows otherwise.
    return f"line {index + 2}" if suffix == ".csv" else f"row {index} (0-based)"
