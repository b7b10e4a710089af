"""Pool manifests: a TOML file that lists the candidate datasets, their groups and the data.

Example
-------
.. code-block:: toml

    [pool]
    name = "example"

    [evaluator]
    kind = "logistic"             # logistic | sklearn | table | torch (see dashsel.evaluators)
    C = 1.0

    [local]
    path = "data/local.npz"

    [validation]
    path = "data/val.npz"

    [test]
    path = "data/test.npz"

    [[datasets]]
    id = "mn0"
    group = "mnist"
    path = "data/mn0.npz"
    meta = { relevant = true }

Keys
----
Top level (any other key is an error, with a suggestion for typos):

``[pool]`` (required)
    ``name`` (str, required): a name for reports and journals.
    ``description`` (str, optional): free text.
    ``label_column`` (str, optional, default ``"label"``): default label column of every
    ``.csv``/``.parquet`` file below.
    ``datasets`` (str, optional): a ``.csv`` or ``.parquet`` table of the candidates, for
    large pools, instead of ``[[datasets]]`` tables (not both). Columns: ``id`` and
    ``group`` (required; ids unique, non-empty, without whitespace), ``path`` (optional,
    relative to the manifest's folder; required when the evaluator trains models) and any
    number of numeric ``score_*`` columns (kept as ``Pool.scores``, an (n, p) array, with
    ``Pool.score_names`` the names without the prefix, for policies that build a prior from
    them). Read with pandas (``.parquet`` needs pyarrow); a million rows load in seconds.
``[[datasets]]`` (required, at least one, unless ``pool.datasets`` names a table)
    ``id`` (str, required, unique): the dataset's id; results refer to it.
    ``group`` (str, required): the group (source) it belongs to.
    ``path`` (str): its array file, ``.npz`` (arrays ``X`` and ``y``), ``.csv`` or ``.parquet``
    (a label column, every other column a numeric feature). Relative paths are relative to the
    manifest's folder. Required unless the evaluator kind is ``table`` (replay only).
    ``label_column`` (str, optional): label column of this file.
    ``x_key``, ``y_key`` (str, optional, default ``"X"``/``"y"``): array names in an ``.npz``.
    ``meta`` (table, optional): free-form, kept in ``DatasetEntry.meta`` (e.g.
    ``relevant = true`` marks the datasets the *Global* reference trains on).
``[local]``, ``[validation]``, ``[test]``
    The model's own training data, the data trial rewards are measured on, and the held-out
    data the final model is scored on. Keys ``path`` (required), ``label_column``, ``x_key``,
    ``y_key`` as for datasets. ``local`` and ``validation`` are required when the evaluator
    trains models (every kind but ``table``); ``test`` is optional.
``[evaluator]`` (optional, default ``kind = "logistic"``)
    ``kind`` plus that kind's keys; see :func:`dashsel.evaluators.make_evaluator`.

Arrays are not read when the manifest is loaded: each entry gets a picklable lazy loader, so a
manifest of thousands of datasets loads at once. Loading does check that every file exists and
has a known extension. Every problem raises :class:`~dashsel.errors.ManifestError` with a
one-line message ``"<manifest file>: <key>: <problem>"``.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dashsel.arrays import FORMATS, load_arrays, save_npz
from dashsel.config import ConfigContext
from dashsel.errors import DashselError, DataError, ManifestError, one_line
from dashsel.hierarchy import Hierarchy
from dashsel.pool import ArraySplit, DatasetEntry, Pool

if TYPE_CHECKING:
    from dashsel.evaluators.base import Evaluator

TOP_KEYS = ("pool", "evaluator", "local", "validation", "test", "datasets")
POOL_KEYS = ("name", "description", "label_column", "datasets")
TABLE_COLUMNS = ("id", "group", "path")
SCORE_PREFIX = "score_"
_WHITESPACE = re.compile(r"\s")
DATASET_KEYS = ("id", "group", "path", "label_column", "x_key", "y_key", "meta")
SPLIT_KEYS = ("path", "label_column", "x_key", "y_key")
SPLITS = ("local", "validation", "test")


@dataclass
class Manifest:
    """A loaded manifest.

    Attributes
    ----------
    path : Path
        The manifest file (resolved).
    pool : Pool
        Its pool; arrays load lazily on first use.
    evaluator : dict
        The ``[evaluator]`` table (``{"kind": "logistic"}`` when absent).
    raw : dict
        The whole parsed TOML document.
    """

    path: Path
    pool: Pool
    evaluator: dict[str, Any]
    raw: dict[str, Any]
    allow_estimators: tuple[Any, ...] = ()

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the manifest are resolved against."""
        return self.path.parent

    def make_evaluator(self) -> Evaluator:
        """Build the evaluator the ``[evaluator]`` table describes, bound to :attr:`pool`."""
        from dashsel.evaluators import make_evaluator

        return make_evaluator(
            self.evaluator,
            self.pool,
            self.base_dir,
            source=self.path,
            allow_estimators=self.allow_estimators,
        )

    def check(self) -> None:
        """Read every array file and run every data check a run would hit (slow for big
        pools; for ``dashsel check``): see :func:`dashsel.checks.check_pool`.

        Raises :class:`~dashsel.errors.DataError` naming the first file or dataset at fault.
        """
        from dashsel.checks import check_pool

        check_pool(self.pool)


def load_manifest(path: str | Path, *, allow_estimators: Any = ()) -> Manifest:
    """Read and validate a pool manifest (see the module docstring for the format).

    Parameters
    ----------
    path : str or Path
        The ``.toml`` file.
    allow_estimators : iterable of class or str, optional
        Estimators besides scikit-learn's classifiers that ``[evaluator] estimator`` may name
        (see :func:`dashsel.evaluators.make_evaluator`); a manifest cannot allow them itself.

    Returns
    -------
    Manifest

    Raises
    ------
    ManifestError
        The file is missing, is not valid TOML, or a key is missing, unknown, of the wrong type
        or names a file that does not exist. The message names the file and the key.
    """
    from dashsel.evaluators import validate_evaluator_config

    if "\x00" in str(path):
        raise ManifestError(f"{str(path)!r}: manifest path contains a NUL byte")
    path = Path(path).expanduser().resolve()
    # os.path.isfile: False, not an OSError, for a name too long
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: no such manifest file")
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: TOML syntax error: {one_line(exc)}") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text") from None
    ctx = ConfigContext(path)
    ctx.known_keys(raw, TOP_KEYS)

    pool_ctx = ctx.sub("pool.")
    pool_table = ctx.table(raw, "pool", required=True)
    pool_ctx.known_keys(pool_table, POOL_KEYS)
    name = pool_ctx.string(pool_table, "name", required=True)
    pool_ctx.string(pool_table, "description")
    default_label = pool_ctx.string(pool_table, "label_column") or "label"

    evaluator = raw.get("evaluator", {"kind": "logistic"})
    if not isinstance(evaluator, dict):
        raise ctx.fail("evaluator", "must be a table ([evaluator])")
    allow_estimators = tuple(allow_estimators or ())
    kind = validate_evaluator_config(evaluator, source=path, allow_estimators=allow_estimators)
    trains = f" (evaluator kind {kind.name!r} trains models)" if kind.trains else ""

    table_rel = pool_ctx.string(pool_table, "datasets")
    if table_rel is not None:
        if "datasets" in raw:
            raise ctx.fail(
                "datasets", "give the datasets either as [[datasets]] tables or as "
                "pool.datasets (a table file), not both"
            )  # fmt: skip
        columns = _read_dataset_table(pool_ctx, path, table_rel, required=bool(trains))
        entries: list[DatasetEntry] | None = None
    else:
        columns = None
        entries = _dataset_entries(ctx, raw, default_label, trains)

    splits: dict[str, Any] = {}
    for split in SPLITS:
        needed = trains if split != "test" else ""
        table = ctx.table(raw, split, required=bool(needed), reason=needed)
        if table is None:
            continue
        sctx = ctx.sub(f"{split}.")
        sctx.known_keys(table, SPLIT_KEYS)
        loader, _ = _loader(sctx, table, f"{split} data", default_label, required=True)
        splits[split] = loader

    try:
        if columns is not None:
            pool = Pool.from_table(
                columns.hierarchy,
                paths=columns.paths,
                loader=partial(_load_table_dataset, label_column=default_label),
                scores=columns.scores,
                score_names=columns.score_names,
                name=name,
                **splits,
            )
        else:
            assert entries is not None
            pool = Pool(entries, name=name, **splits)
    except DashselError as exc:  # hierarchy problems not caught above; keep the file in front
        raise ctx.fail("datasets", str(exc)) from None
    return Manifest(
        path=path, pool=pool, evaluator=dict(evaluator), raw=raw, allow_estimators=allow_estimators
    )


def _dataset_entries(
    ctx: ConfigContext, raw: dict[str, Any], default_label: str, trains: str
) -> list[DatasetEntry]:
    """The ``[[datasets]]`` tables as entries (each checked, files included)."""
    datasets = raw.get("datasets")
    if datasets is None:
        raise ctx.fail(
            "datasets",
            "missing; list candidates as [[datasets]] tables or name a table of them "
            'with pool.datasets = "datasets.csv"',
        )
    if not isinstance(datasets, list) or not all(isinstance(d, dict) for d in datasets):
        raise ctx.fail("datasets", "must be an array of tables ([[datasets]])")
    if not datasets:
        raise ctx.fail("datasets", "empty; the pool needs at least one dataset")

    entries: list[DatasetEntry] = []
    seen: dict[str, int] = {}
    for k, d in enumerate(datasets):
        dctx = ctx.sub(f"datasets[{k}].")
        dctx.known_keys(d, DATASET_KEYS)
        did = dctx.string(d, "id", required=True)
        if did in seen:
            raise dctx.fail("id", f"duplicate dataset id {did!r} (also datasets[{seen[did]}])")
        seen[did] = k
        group = dctx.string(d, "group", required=True)
        meta = dctx.mapping(d, "meta", "meta = { a = 1 }")
        loader, source = _loader(
            dctx, d, f"dataset {did!r}", default_label, required=bool(trains), reason=trains
        )
        entries.append(DatasetEntry(did, group, loader=loader, source=source, meta=meta))
    return entries


@dataclass
class _DatasetColumns:
    hierarchy: Hierarchy
    paths: tuple[str | None, ...] | None
    scores: np.ndarray | None
    score_names: tuple[str, ...]


def _read_dataset_table(
    ctx: ConfigContext, manifest: Path, rel: str, *, required: bool
) -> _DatasetColumns:
    """Read ``pool.datasets``: a ``.csv`` or ``.parquet`` table with columns ``id``,
    ``group``, optional ``path`` and optional numeric ``score_*`` columns, with a columnar
    reader (pandas), and check it in vectorised passes.

    Errors are one line naming the table file and the row (1-based data row; for CSV also
    the file's line).
    """
    import pandas as pd

    file = (manifest.parent / Path(rel).expanduser()).resolve()
    suffix = file.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ctx.fail("datasets", f"unknown table extension in {rel!r}: use .csv or .parquet")
    # os.path.isfile: False, not an OSError, for a name too long
    if not os.path.isfile(file):
        raise ctx.fail("datasets", f"no such table of datasets {file}")
    frame = _read_table(file, suffix)
    where = f"{file}"
    cols = [str(c) for c in frame.columns]
    for c in ("id", "group"):
        if c not in cols:
            raise ManifestError(f"{where}: missing column {c!r} (columns: {', '.join(cols)})")
    for c in cols:
        if c not in TABLE_COLUMNS and not c.startswith(SCORE_PREFIX):
            raise ManifestError(
                f"{where}: unknown column {c!r}; columns are id, group, path (optional) and "
                "score_* (optional, numeric)"
            )
    if len(frame) == 0:
        raise ManifestError(f"{where}: the table of datasets has no rows")

    def row(i: int) -> str:
        line = f" (line {i + 2})" if suffix == ".csv" else ""
        return f"row {i + 1}{line}"

    ids = _text_column(frame["id"])
    groups = _text_column(frame["group"])
    for name, col in (("id", ids), ("group", groups)):
        empty = np.flatnonzero((col.isna() | (col == "")).to_numpy())
        if empty.size:
            raise ManifestError(f"{where}: {row(int(empty[0]))}: empty {name}")
    # Groups are factorized first, so the pool holds one str per group, not one per row. The
    # ids stay a column: the hierarchy checks them in array passes and makes no Python
    # string per row (see Hierarchy.from_codes).
    group_codes, group_names = pd.factorize(groups, sort=False)
    bad = _first_with_whitespace(ids)
    if bad is not None:
        raise ManifestError(f"{where}: {row(bad)}: id {ids.iloc[bad]!r} contains whitespace")
    try:
        hierarchy = Hierarchy.from_codes(None, group_codes, list(group_names), id_column=ids.array)
    except DashselError:
        dup = np.flatnonzero(ids.duplicated().to_numpy())
        i = int(dup[0])
        first = int(np.flatnonzero((ids == ids.iloc[i]).to_numpy())[0])
        raise ManifestError(
            f"{where}: {row(i)}: duplicate dataset id {ids.iloc[i]!r} (also {row(first)})"
        ) from None

    paths: tuple[str | None, ...] | None = None
    if "path" in cols:
        paths = _resolve_paths(_text_column(frame["path"]), manifest.parent, where, row, required)
    elif required:
        raise ManifestError(
            f"{where}: missing column 'path': the evaluator trains models, so every dataset "
            "needs an array file"
        )

    score_cols = [c for c in cols if c.startswith(SCORE_PREFIX)]
    scores = None
    if score_cols:
        raw = frame[score_cols]
        block = raw.apply(pd.to_numeric, errors="coerce")
        # Empty cells (CSV "" or parquet null) are missing scores (NaN), not errors.
        missing = raw.isna() | raw.astype(str).eq("")
        wrong = (block.isna() & ~missing).to_numpy()
        if wrong.any():
            i, j = (int(v) for v in np.argwhere(wrong)[0])
            raise ManifestError(
                f"{where}: {row(i)}: column {score_cols[j]!r} is not a number: "
                f"{frame[score_cols[j]].iloc[i]!r}"
            )
        scores = block.to_numpy(dtype=float)
    return _DatasetColumns(
        hierarchy=hierarchy,
        paths=paths,
        scores=scores,
        score_names=tuple(c[len(SCORE_PREFIX) :] for c in score_cols),
    )


def _read_table(file: Path, suffix: str) -> Any:
    import pandas as pd

    try:
        if suffix == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ManifestError(
                    f"{file}: reading a .parquet table of datasets needs pyarrow: "
                    "pip install pyarrow"
                ) from None
            return pd.read_parquet(file)
        # No NA parsing: an empty cell is "" (an id "NA" stays "NA"); score_* columns are
        # parsed as numbers afterwards. Types are inferred (asking for dtype=str makes
        # pandas' reader ~10x slower and 3x larger); text columns that came out as numbers
        # are read again as text, so "007" stays "007".
        frame = pd.read_csv(file, na_filter=False)
        numeric = [c for c in frame.columns if c in TABLE_COLUMNS and frame[c].dtype.kind != "O"]
        numeric = [c for c in numeric if not pd.api.types.is_string_dtype(frame[c])]
        if numeric:
            again = pd.read_csv(file, usecols=numeric, dtype=str, na_filter=False)
            for c in numeric:
                frame[c] = again[c]
        return frame
    except ManifestError:
        raise
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{file}: empty table of datasets") from None
    except Exception as exc:  # any reader failure is the file's fault
        msg = one_line(exc)
        raise ManifestError(f"{file}: not a readable {suffix[1:]} table ({msg})") from None


# The ASCII characters Python's ``\s`` matches (on str), as bytes.
_ASCII_WHITESPACE = tuple(bytes([b]) for b in range(128) if _WHITESPACE.match(chr(b)))


def _first_with_whitespace(ids: Any) -> int | None:
    r"""Row of the first id that contains whitespace (``\s``), or None.

    On an Arrow-backed text column the ids' UTF-8 bytes are searched where they lie: if all
    are ASCII, for each ASCII whitespace byte (a C search each), otherwise with the regex on
    their decoded text. Other columns: the regex on the joined ids.
    """
    from dashsel.hierarchy import _arrow_text_chunks

    chunks = _arrow_text_chunks(ids.array)
    if chunks is not None and not any(c.null_count for c in chunks):
        if not any(_has_whitespace(c) for c in chunks if len(c)):
            return None
    elif not _WHITESPACE.search("".join(ids.tolist())):
        return None
    # One at least: which row, the slow way.
    return next(k for k, d in enumerate(ids.tolist()) if _WHITESPACE.search(d))


def _has_whitespace(chunk: Any) -> bool:
    """Whether any string of an Arrow string array (no nulls) contains whitespace."""
    import pyarrow as pa

    _, offsets_buf, data_buf = chunk.buffers()
    width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=width)
    start, stop = int(offsets[chunk.offset]), int(offsets[chunk.offset + len(chunk)])
    raw = memoryview(data_buf)[start:stop].tobytes() if data_buf is not None else b""
    if raw.isascii():
        return any(w in raw for w in _ASCII_WHITESPACE)
    return _WHITESPACE.search(raw.decode("utf-8")) is not None


def _text_column(col: Any) -> Any:
    """A column as str values (NaN where missing): parquet may hold numbers or bytes."""
    import pandas as pd

    if pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty"):
        return col
    out = col.astype(object).where(col.notna())
    return out.map(lambda v: v if v is None or isinstance(v, float) else str(v))


def _resolve_paths(
    col: Any, base: Path, where: str, row: Any, required: bool
) -> tuple[str | None, ...]:
    """Absolute array paths (None where a row has none); checks extension and existence."""
    import os

    values = col.tolist()
    out: list[str | None] = []
    base_s = str(base)
    formats = set(FORMATS)
    for i, v in enumerate(values):
        if isinstance(v, str) and "\x00" in v:  # the OS cannot name such a file
            raise ManifestError(f"{where}: {row(i)}: path contains a NUL byte")
        if v is None or v != v or v == "":
            if required:
                raise ManifestError(
                    f"{where}: {row(i)}: empty path (the evaluator trains models, so every "
                    "dataset needs an array file)"
                )
            out.append(None)
            continue
        full = os.path.normpath(os.path.join(base_s, os.path.expanduser(v)))
        if os.path.splitext(full)[1].lower() not in formats:
            raise ManifestError(
                f"{where}: {row(i)}: unknown file extension in {v!r}: use one of "
                f"{', '.join(FORMATS)}"
            )
        if not os.path.isfile(full):
            raise ManifestError(f"{where}: {row(i)}: no such file {full}")
        out.append(full)
    return tuple(out)


def _load_table_dataset(dataset_id: str, path: str, *, label_column: str) -> ArraySplit:
    """Load one dataset of a table pool (module level: pools are pickled to workers)."""
    return _load_named(f"dataset {dataset_id!r}", path, label_column=label_column)


def _loader(
    ctx: ConfigContext,
    table: dict[str, Any],
    what: str,
    default_label: str,
    *,
    required: bool,
    reason: str = "",
) -> tuple[partial[ArraySplit] | None, str | None]:
    """A lazy loader for the array file a dataset or split table names, and the file.

    The file may be missing when not ``required`` (replay-only pools); ``reason`` says why it
    is required in the "missing" message.
    """
    rel = ctx.string(table, "path", required=required, reason=reason)
    if rel is None:
        return None, None
    if "\x00" in rel:  # the OS cannot name such a file; resolve() would raise ValueError
        raise ctx.fail("path", f"{what}: path contains a NUL byte")
    try:
        file = (Path(ctx.source).parent / Path(rel).expanduser()).resolve()
    except RuntimeError as exc:  # "~nosuchuser/x.npz": no such home directory
        raise ctx.fail("path", f"{what}: {one_line(exc)} in {rel!r}") from None
    if file.suffix.lower() not in FORMATS:
        raise ctx.fail(
            "path", f"unknown file extension in {rel!r}: use one of {', '.join(FORMATS)}"
        )
    # os.path.isfile: False, not an OSError, for a name too long
    if not os.path.isfile(file):
        raise ctx.fail("path", f"{what}: no such file {file}")
    label = ctx.string(table, "label_column") or default_label
    x_key = ctx.string(table, "x_key") or "X"
    y_key = ctx.string(table, "y_key") or "y"
    # functools.partial of a module-level function, not a lambda: pools are pickled to
    # worker processes, and lazy loaders must travel with them.
    loader = partial(_load_named, what, str(file), label_column=label, x_key=x_key, y_key=y_key)
    return loader, str(file)


def _load_named(what: str, path: str, **kwargs: str) -> ArraySplit:
    """:func:`load_arrays` whose errors also name the dataset or split (``what``)."""
    try:
        return load_arrays(path, **kwargs)
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None


# --- writing ---------------------------------------------------------------------------------
def save_pool(
    pool: Pool,
    directory: str | Path,
    *,
    evaluator: dict[str, Any] | None = None,
    manifest_name: str = "manifest.toml",
    data_dir: str = "data",
    description: str | None = None,
) -> Path:
    """Write a pool's arrays as ``.npz`` files plus a manifest that :func:`load_manifest` reads.

    Parameters
    ----------
    pool : Pool
        The pool; entries without arrays are written without ``path`` (replay only).
    directory : str or Path
        Output folder (created); arrays go to ``directory/data_dir``.
    evaluator : dict, optional
        The ``[evaluator]`` table; default ``{"kind": "logistic"}``.
    manifest_name, data_dir, description : str
        File name of the manifest, folder of the arrays, and ``pool.description``.

    Returns
    -------
    Path
        The manifest file.
    """
    directory = Path(directory)
    (directory / data_dir).mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"pool": {"name": pool.name}}
    if description:
        doc["pool"]["description"] = description
    doc["evaluator"] = dict(evaluator or {"kind": "logistic"})
    for name in SPLITS:
        if pool.has_split(name):
            rel = f"{data_dir}/{name}.npz"
            save_npz(directory / rel, pool.split(name))
            doc[name] = {"path": rel}
    rows = []
    used: set[str] = {s.lower() for s in SPLITS}
    for e in pool.entries:
        row: dict[str, Any] = {"id": e.id, "group": e.group}
        if e.has_data:
            stem = _file_stem(e.id, used)
            rel = f"{data_dir}/{stem}.npz"
            save_npz(directory / rel, e.load())
            row["path"] = rel
        if e.meta:
            row["meta"] = {
                k: _toml_value(v, f"dataset {e.id!r} meta {k!r}") for k, v in e.meta.items()
            }
        rows.append(row)
    doc["datasets"] = rows
    return write_manifest(directory / manifest_name, doc)


def write_manifest(path: str | Path, doc: dict[str, Any]) -> Path:
    """Write a manifest document (the dict :func:`load_manifest` parses) as TOML.

    Top-level tables become ``[name]`` sections, lists of tables ``[[name]]`` sections, nested
    tables inline tables. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    scalars = {k: v for k, v in doc.items() if not isinstance(v, dict | list)}
    lines += [f"{_key(k)} = {_dump(v)}" for k, v in scalars.items()]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines += ["", f"[{_key(k)}]"] + [f"{_key(a)} = {_dump(b)}" for a, b in v.items()]
    for k, v in doc.items():
        if isinstance(v, list):
            if all(isinstance(x, dict) for x in v):
                for item in v:
                    lines += ["", f"[[{_key(k)}]]"]
                    lines += [f"{_key(a)} = {_dump(b)}" for a, b in item.items()]
            else:
                lines.insert(0, f"{_key(k)} = {_dump(v)}")
    path.write_text("\n".join(lines).lstrip("\n") + "\n", encoding="utf-8")
    return path


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else _quote(k)


def _quote(text: str) -> str:
    # A TOML basic string: escape quote, backslash and every control character (TOML, unlike
    # JSON, also forbids a raw DEL).
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _dump(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _quote(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_dump(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(a)} = {_dump(b)}" for a, b in v.items()) + " }"
    raise DashselError(f"cannot write {type(v).__name__} value {v!r} to TOML")


def _toml_value(v: Any, what: str) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple):
        return [_toml_value(x, what) for x in v]
    if isinstance(v, dict):
        return {str(a): _toml_value(b, what) for a, b in v.items()}
    raise DashselError(f"{what}: cannot write {type(v).__name__} value {v!r} to a manifest")


def _file_stem(dataset_id: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", dataset_id).strip(".") or "dataset"
    candidate, n = stem, 1
    while candidate.lower() in used:  # case-insensitive file systems
        candidate, n = f"{stem}-{n}", n + 1
    used.add(candidate.lower())
    return candidate
