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

Size limits
-----------
A small file can declare a huge array (a 1 MB ``.npz`` of compressed zeros can hold 1 GiB), so
sizes are checked *before* anything is decompressed or allocated: an ``.npz`` member whose
``.npy`` header declares more than :func:`max_array_bytes` bytes (default 2 GiB, or the
``DASHSEL_MAX_ARRAY_BYTES`` environment variable, or the ``max_bytes`` keyword) is refused, as
is a header that declares more data than the member holds. CSV and Parquet files are capped
the same way in rows: at most ``max_bytes // (8 * columns)`` rows (``DASHSEL_MAX_ROWS`` or
``max_rows`` lowers it further); CSV reads stop one row past the cap, Parquet's row count comes
from its metadata.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from dashsel.errors import DashselError, DataError, one_line
from dashsel.pool import ArraySplit

if TYPE_CHECKING:
    import pandas as pd

    from dashsel.pool import Pool

#: Extensions :func:`load_arrays` understands.
FORMATS: tuple[str, ...] = (".npz", ".csv", ".parquet")

#: Default cap on the bytes one array may declare (2 GiB).
DEFAULT_MAX_ARRAY_BYTES: int = 2 * 1024**3
#: Environment variables that override the caps (read on every load, so worker processes
#: started with the same environment apply the same caps).
MAX_BYTES_ENV = "DASHSEL_MAX_ARRAY_BYTES"
MAX_ROWS_ENV = "DASHSEL_MAX_ROWS"


def max_array_bytes(value: int | None = None) -> int:
    """The cap on one array's declared size in bytes.

    ``value`` if given, else the ``DASHSEL_MAX_ARRAY_BYTES`` environment variable (an integer
    such as ``4000000000`` or ``4e9``), else :data:`DEFAULT_MAX_ARRAY_BYTES`.
    """
    return _cap(value, MAX_BYTES_ENV, DEFAULT_MAX_ARRAY_BYTES, "max_bytes")


def max_table_rows(value: int | None = None) -> int | None:
    """The explicit cap on rows read from a CSV/Parquet file (``DASHSEL_MAX_ROWS``), or None.

    The byte cap applies to tables too; this lowers it further.
    """
    if value is None and not os.environ.get(MAX_ROWS_ENV, "").strip():
        return None
    return _cap(value, MAX_ROWS_ENV, 0, "max_rows")


def _cap(value: int | float | None, env: str, default: int, name: str) -> int:
    if value is None:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return default
        try:
            number = float(raw)
        except ValueError:
            raise DashselError(f"{env}={raw!r} is not a number of bytes or rows") from None
        what = env
    else:
        number, what = value, name
    if isinstance(number, bool) or not isinstance(number, int | float | np.integer | np.floating):
        raise DashselError(f"{what} must be a positive integer, not {number!r}")
    if not np.isfinite(number) or number < 1 or float(number) != int(number):
        raise DashselError(f"{what} must be a positive integer, not {number!r}")
    return int(number)


@dataclass(frozen=True)
class ArrayInfo:
    """What a file declares about one array, read from headers without loading the data.

    ``shape[0]`` is None where the row count is not known without reading (CSV).
    """

    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int | None:
        """Declared size in bytes (None when the row count is unknown)."""
        if any(d is None for d in self.shape):
            return None
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize


def load_arrays(
    path: str | Path,
    *,
    label_column: str = "label",
    x_key: str = "X",
    y_key: str = "y",
    max_bytes: int | None = None,
    max_rows: int | None = None,
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
    max_bytes : int, optional
        Refuse an array that declares more bytes (default :func:`max_array_bytes`).
    max_rows : int, optional
        Refuse a table with more rows (default :func:`max_table_rows`; the byte cap applies
        as well).

    Returns
    -------
    ArraySplit

    Raises
    ------
    DataError
        The file is missing or unreadable, has an unknown extension, lacks the arrays or label
        column, holds non-numeric or non-finite features, object arrays, no rows, features
        and labels of different lengths, or arrays over the size cap.
    """
    path = _existing(path)
    suffix = path.suffix.lower()
    cap = max_array_bytes(max_bytes)
    if suffix == ".npz":
        X, y = _read_npz(path, x_key, y_key, cap)
        return _checked(path, X, y, f"array {x_key!r}", suffix)
    X, y, columns = _read_table(path, label_column, suffix, cap, max_table_rows(max_rows))
    return _checked(path, X, y, "features", suffix, columns)


def inspect_arrays(
    path: str | Path,
    *,
    label_column: str = "label",
    x_key: str = "X",
    y_key: str = "y",
    max_bytes: int | None = None,
) -> tuple[ArrayInfo, ArrayInfo]:
    """Shapes and dtypes of a file's features and labels, from headers only.

    Reads the ``.npy`` headers of an ``.npz`` (nothing is decompressed), the metadata of a
    Parquet file, or the header line of a CSV file (its row count is then unknown). Used by
    :func:`dashsel.checks.check_pool` to compare widths across a large pool cheaply.

    Returns
    -------
    (ArrayInfo, ArrayInfo)
        Features and labels. For tables the feature dtype is reported as float64.

    Raises
    ------
    DataError
        As :func:`load_arrays` for everything a header shows (missing arrays, object dtypes,
        declared size over the cap).
    """
    path = _existing(path)
    suffix = path.suffix.lower()
    cap = max_array_bytes(max_bytes)
    if suffix == ".npz":
        with _open_npz(path, x_key, y_key) as archive:
            infos = tuple(_npz_member_info(path, archive, key, cap)[0] for key in (x_key, y_key))
        return infos[0], infos[1]
    rows, columns = _table_shape(path, suffix)
    if label_column not in columns:
        raise _no_label(path, label_column, columns)
    x = ArrayInfo((rows, len(columns) - 1), np.dtype(np.float64))
    _check_table_size(path, rows, len(columns), cap, max_table_rows())
    return x, ArrayInfo((rows,), np.dtype(object))


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
def _existing(path: str | Path) -> Path:
    if "\x00" in str(path):
        raise DataError(f"{str(path)!r}: file name contains a NUL byte")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"{path}: unknown file extension {path.suffix or '(none)'!r}: "
            f"use one of {', '.join(FORMATS)}"
        )
    # os.path.isfile: False, not an OSError, for a name too long
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    return path


_NPY_MAGIC = b"\x93NUMPY"

# What zipfile and its decompressors raise for a damaged archive (found by fuzzing: an unknown
# "zip version" is NotImplementedError, an "encrypted" flag RuntimeError, a bad deflate stream
# zlib.error, a bad header field struct.error).
_ZIP_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    RuntimeError,
    NotImplementedError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    lzma.LZMAError,
)


def _open_npz(path: Path, x_key: str, y_key: str) -> zipfile.ZipFile:
    # zipfile directly rather than np.load: we read each member's .npy header and check the
    # declared size before numpy allocates or decompresses anything.
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (an .npz needs arrays {x_key!r} and {y_key!r})")
        with path.open("rb") as fh:
            head = fh.read(len(_NPY_MAGIC))
        if head == _NPY_MAGIC:  # a bare .npy saved under .npz
            raise DataError(
                f"{path}: not an .npz archive (expected arrays {x_key!r} and {y_key!r})"
            )
        return zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npz file ({one_line(exc, 200)})") from None


def _npz_member_info(
    path: Path, archive: zipfile.ZipFile, key: str, cap: int
) -> tuple[ArrayInfo, zipfile.ZipInfo]:
    names = archive.namelist()
    member = f"{key}.npy" if f"{key}.npy" in names else key if key in names else None
    if member is None:
        held = [n[:-4] if n.endswith(".npy") else n for n in names]
        raise DataError(
            f"{path}: missing array {key!r} (the file holds: {', '.join(held) or 'nothing'})"
        )
    zinfo = archive.getinfo(member)
    try:
        with archive.open(zinfo) as fp:
            shape, dtype = _npy_header(fp)
    except DataError as exc:
        raise DataError(f"{path}: array {key!r} {exc}") from None
    except _ZIP_ERRORS as exc:
        raise DataError(f"{path}: array {key!r} unreadable ({one_line(exc, 200)})") from None
    if dtype.hasobject:
        # numpy would need pickle to load it; we never do that.
        raise DataError(
            f"{path}: array {key!r} is an object array, which would need pickle "
            f"to load; save numeric X and numeric or string y instead"
        )
    info = ArrayInfo(tuple(int(d) for d in shape), dtype)
    declared = info.nbytes or 0
    if declared > cap:
        raise DataError(
            f"{path}: array {key!r} declares shape {shape} of {dtype} = {_size(declared)}, "
            f"over the limit of {_size(cap)} (raise it with {MAX_BYTES_ENV}=BYTES or max_bytes=)"
        )
    if declared > zinfo.file_size:
        raise DataError(
            f"{path}: array {key!r} declares {_size(declared)} but its member holds only "
            f"{_size(zinfo.file_size)} (truncated or forged header)"
        )
    return info, zinfo


def _npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    from numpy.lib import format as npformat

    try:
        version = npformat.read_magic(fp)
    except ValueError as exc:
        raise DataError(f"is not an .npy array ({one_line(exc, 200)})") from None
    if version == (1, 0):
        shape, _, dtype = npformat.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = npformat.read_array_header_2_0(fp)
    else:
        # Format 3.0 (utf-8 field names) has no public header reader; numpy keeps it private.
        impl = getattr(np.lib, "_format_impl", npformat)
        reader = getattr(impl, "_read_array_header", None)
        if reader is None:
            raise DataError(f"uses .npy format {version}, which this numpy cannot inspect")
        shape, _, dtype = reader(fp, version)
    return tuple(shape), np.dtype(dtype)


def _read_npz(path: Path, x_key: str, y_key: str, cap: int) -> tuple[np.ndarray, np.ndarray]:
    from numpy.lib import format as npformat

    with _open_npz(path, x_key, y_key) as archive:
        out = []
        for key in (x_key, y_key):
            _, zinfo = _npz_member_info(path, archive, key, cap)
            try:
                with archive.open(zinfo) as fp:
                    out.append(npformat.read_array(fp, allow_pickle=False))
            except MemoryError:
                raise DataError(
                    f"{path}: array {key!r} does not fit in memory; lower {MAX_BYTES_ENV} to "
                    f"refuse such files up front"
                ) from None
            except _ZIP_ERRORS as exc:
                raise DataError(
                    f"{path}: array {key!r} unreadable ({one_line(exc, 200)})"
                ) from None
    return out[0], out[1]


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def _read_table(
    path: Path, label_column: str, suffix: str, cap: int, max_rows: int | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    rows, columns = _table_shape(path, suffix)
    limit = _check_table_size(path, rows, len(columns), cap, max_rows)
    frame = _read_frame(path, suffix, nrows=limit + 1)
    if len(frame) > limit:  # CSV: the row count is only known by reading
        _check_table_size(path, len(frame), len(columns), cap, max_rows, at_least=True)
    if label_column not in frame.columns:
        raise _no_label(path, label_column, [str(c) for c in frame.columns])
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


def _no_label(path: Path, label_column: str, cols: list[str]) -> DataError:
    shown = ", ".join(cols[:8]) + (", ..." if len(cols) > 8 else "")
    return DataError(f"{path}: missing label column {label_column!r} (columns: {shown or 'none'})")


def _check_table_size(
    path: Path,
    rows: int | None,
    n_columns: int,
    cap: int,
    max_rows: int | None,
    *,
    at_least: bool = False,
) -> int:
    """Return the most rows the caps allow; raise if ``rows`` (when known) is over it."""
    # Features are held as float64 (8 bytes a value) once read.
    limit = max(1, cap // (8 * max(1, n_columns)))
    if max_rows is not None:
        limit = min(limit, max_rows)
    if rows is not None and rows > limit:
        count = f"more than {limit}" if at_least else str(rows)
        raise DataError(
            f"{path}: {count} rows of {n_columns} columns, over the limit of {limit} rows "
            f"({_size(cap)} at 8 bytes a value; raise it with {MAX_BYTES_ENV}=BYTES)"
        )
    return limit


def _table_shape(path: Path, suffix: str) -> tuple[int | None, list[str]]:
    """Row count (None for CSV: unknown before reading) and column names, from headers."""
    if suffix == ".csv":
        return None, [str(c) for c in _read_frame(path, suffix, nrows=0).columns]
    pq = _pyarrow_parquet(path)
    try:
        meta = pq.ParquetFile(path).metadata
        return int(meta.num_rows), [str(n) for n in meta.schema.to_arrow_schema().names]
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(f"{path}: not a readable parquet file ({one_line(exc, 200)})") from None


def _pyarrow_parquet(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        from dashsel.errors import MissingExtraError

        raise MissingExtraError(
            f"{path}: reading .parquet needs pyarrow: pip install 'dashsel[parquet]'"
        ) from None
    return pq


def _read_frame(path: Path, suffix: str, nrows: int | None = None) -> pd.DataFrame:
    import pandas as pd

    if suffix == ".csv":
        try:
            return pd.read_csv(path, nrows=nrows)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: empty file (no header, no rows)") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
            raise DataError(f"{path}: not a readable CSV file ({one_line(exc, 200)})") from None
    pq = _pyarrow_parquet(path)
    try:
        return pq.read_table(path).to_pandas()  # row count already checked from the metadata
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
    def locate(first: tuple[int, ...]) -> str:
        where = _row(int(first[0]), suffix)
        if columns is not None and len(first) > 1:
            where += f", column {columns[int(first[1])]!r}"
        return f"first on {where}"

    validate_arrays(X, y, str(path), features=what, locate=locate)
    return ArraySplit(X, y)


def validate_arrays(
    X: np.ndarray,
    y: np.ndarray,
    where: str,
    *,
    features: str = "features",
    locate: Callable[[tuple[int, ...]], str] | None = None,
) -> None:
    """Raise :class:`DataError` (starting with ``where``) unless ``X``, ``y`` can train a model.

    Features at least 2-D, numeric (not complex) and finite; labels 1-D and finite; as many
    labels as rows, at least one row; no object arrays. ``features`` names the feature array
    in messages; ``locate`` turns the index of the first non-finite value into words.
    """
    locate = locate or (lambda first: f"first at {first}")
    if X.dtype == object or y.dtype == object:
        raise DataError(f"{where}: object arrays are not supported")
    if X.ndim < 2:
        raise DataError(
            f"{where}: {features} must be at least 2-D (n_samples, n_features), got shape {X.shape}"
        )
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D (n_samples,), got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise DataError(
            f"{where}: {features} has {X.shape[0]} rows but there are {y.shape[0]} labels"
        )
    if X.shape[0] == 0:
        raise DataError(f"{where}: no rows")
    if not (np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.bool_)):
        raise DataError(f"{where}: {features} are not numeric (dtype {X.dtype})")
    if np.issubdtype(X.dtype, np.complexfloating):
        raise DataError(f"{where}: {features} are complex numbers")
    if np.issubdtype(X.dtype, np.floating):
        first = first_nonfinite(X)
        if first is not None:
            raise DataError(f"{where}: {features} hold NaN or infinite values ({locate(first)})")
    if np.issubdtype(y.dtype, np.floating):
        first = first_nonfinite(y)
        if first is not None:
            raise DataError(
                f"{where}: labels hold NaN or infinite values (first at row {first[0]})"
            )


def first_nonfinite(a: np.ndarray, block_bytes: int = 1 << 24) -> tuple[int, ...] | None:
    """Index of the first NaN or infinite value of a float array, or None.

    Works through row blocks of about ``block_bytes``, so checking a large array costs a
    small temporary mask rather than one as large as the array.
    """
    if not np.issubdtype(a.dtype, np.inexact) or a.size == 0:
        return None
    per_row = max(1, a[:1].size * a.dtype.itemsize)
    step = max(1, block_bytes // per_row)
    for start in range(0, a.shape[0] if a.ndim else 1, step):
        block = a[start : start + step] if a.ndim else a
        if not np.isfinite(block).all():
            first = np.argwhere(~np.isfinite(block))[0]
            return (start + int(first[0]), *(int(v) for v in first[1:]))
    return None


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
        if e.loader is not None and e.source and os.path.isfile(e.source):
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
