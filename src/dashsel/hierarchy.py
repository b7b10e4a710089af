"""The two-level structure of a pool: dataset ids, each in one group."""

from __future__ import annotations

import hashlib
import itertools
import operator
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from itertools import repeat
from typing import Any

import numpy as np

from dashsel.errors import DashselError, UnknownDatasetError


class Hierarchy:
    """Datasets and the group each belongs to, in a fixed order.

    Parameters
    ----------
    dataset_ids : sequence of str
        Unique dataset ids, in pool order.
    groups : sequence of str
        ``groups[k]`` is the group of ``dataset_ids[k]``.

    Notes
    -----
    Group order is the order of first appearance. Policies index arms by this order, so two
    hierarchies built from the same manifest give the same run.

    Built for pools of millions of datasets: construction and the derived structures
    (:attr:`group_ids`, :attr:`group_index`, :meth:`fingerprint`) run in C loops (dict, zip,
    pandas' factorize), each computed once and cached. A hierarchy built from a text column
    (:meth:`from_codes` with ``id_column=`` and no ids) keeps the column and checks it in
    array passes: its :attr:`dataset_ids` and :attr:`groups` make no Python string per
    dataset until an operation needs them all. A hierarchy is immutable.
    """

    __slots__ = ("__dict__", "_groups", "_handed_out", "_ids")

    def __init__(self, dataset_ids: Sequence[str], groups: Sequence[str]) -> None:
        self._setup(_str_tuple(dataset_ids), _str_tuple(groups), check_groups=True)

    def _setup(self, ids: tuple[str, ...], grp: tuple[str, ...], *, check_groups: bool) -> None:
        """Check and store the two tuples (of str); ``check_groups=False`` when the caller
        has checked the group labels already (``from_codes``: on the distinct names)."""
        if len(ids) != len(grp):
            raise DashselError(f"hierarchy: {len(ids)} dataset ids but {len(grp)} group labels")
        if not ids:
            raise DashselError("hierarchy: the pool holds no datasets")
        # Uniqueness with a set (dropped at once): the id -> position dict is built only when
        # an id the hierarchy has not handed out is looked up (see ``id_at``).
        distinct = set(ids)
        if len(distinct) != len(ids) or "" in distinct:
            _first_bad_id(ids)
        del distinct
        if check_groups and "" in set(grp):
            k = grp.index("")
            raise DashselError(f"hierarchy: dataset {ids[k]!r} has an empty group")
        self._store(ids, grp)

    def _store(self, ids: Sequence[str], grp: Sequence[str]) -> None:
        object.__setattr__(self, "_ids", ids)
        object.__setattr__(self, "_groups", grp)
        object.__setattr__(self, "_handed_out", {})

    @property
    def dataset_ids(self) -> Sequence[str]:
        """Dataset ids in pool order: a tuple of str, or for a hierarchy built from a text
        column a read-only sequence that behaves as that tuple (length, indexing, slicing,
        iteration, ``in``, ``==`` and hash with tuples, pickles as a tuple), reading single
        ids from the column and building the tuple once when an operation needs every id."""
        return self._ids

    @property
    def groups(self) -> Sequence[str]:
        """``groups[k]`` is the group of ``dataset_ids[k]`` (a tuple, or a sequence that
        behaves as one, as for :attr:`dataset_ids`)."""
        return self._groups

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Hierarchy is immutable (cannot set {name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hierarchy):
            return NotImplemented
        return self.dataset_ids == other.dataset_ids and self.groups == other.groups

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        return f"Hierarchy({self.n_datasets} datasets, {self.n_groups} groups)"

    def __reduce__(self) -> tuple[type[Hierarchy], tuple[tuple[str, ...], tuple[str, ...]]]:
        # Pickled as its two tuples: the caches are rebuilt on the other side when needed.
        return (Hierarchy, (tuple(self.dataset_ids), tuple(self.groups)))

    @classmethod
    def from_mapping(cls, members: Mapping[str, Iterable[str]]) -> Hierarchy:
        """Build from ``{group: [dataset ids]}``."""
        ids: list[str] = []
        grp: list[str] = []
        for g, ds in members.items():
            for d in ds:
                ids.append(d)
                grp.append(g)
        return cls(ids, grp)

    @classmethod
    def from_codes(
        cls,
        dataset_ids: Sequence[str] | None,
        group_codes: np.ndarray,
        group_names: Sequence[str],
        *,
        id_column: Any = None,
    ) -> Hierarchy:
        """Build from ids plus integer group codes into ``group_names`` (as
        ``pandas.factorize`` gives them): the groups share one str per group, and the group
        structure needs no second pass over the labels (nor do the group checks: they run on
        the distinct names).

        ``id_column``: the same ids as a column (a pandas array, e.g. the one they were read
        from), kept so that a table of 10^6 rows can be matched to the pool by comparing
        columns (:meth:`id_column`) instead of making 10^6 Python strings. With
        ``dataset_ids=None`` the ids are the column's: a text column backed by Arrow is
        checked (no empty, no repeated id) in array passes over its buffers, and
        :attr:`dataset_ids` reads single ids from it (see there); any other column is read
        into a tuple.
        """
        codes = np.asarray(group_codes, dtype=np.intp)
        names = np.asarray([str(g) for g in group_names], dtype=object)
        if codes.ndim != 1 or (codes.size and (codes.min() < 0 or codes.max() >= names.size)):
            raise DashselError("hierarchy: group codes out of range of the group names")
        chunks = None
        if dataset_ids is None:
            if id_column is None:
                raise DashselError("hierarchy: from_codes needs dataset ids or an id column")
            chunks = _arrow_text_chunks(id_column)
            if chunks is None:
                dataset_ids = _str_tuple(_column_values(id_column))
        ids: Sequence[str]
        if chunks is not None:
            ids = _ColumnStrs(id_column)
        elif _is_text_column(id_column) and type(dataset_ids) is tuple:
            ids = dataset_ids  # the values of a pandas text column: str, one C loop saved
        else:
            assert dataset_ids is not None
            ids = _str_tuple(dataset_ids)
        if id_column is not None and len(id_column) != len(ids):
            raise DashselError(
                f"hierarchy: id column of {len(id_column)} rows for {len(ids)} dataset ids"
            )
        # Renumber in order of first appearance (the order policies index groups by).
        used, first = _first_appearances(codes, names.size)
        if "" in names[used].tolist():
            k = int(first[names[used].tolist().index("")])
            raise DashselError(f"hierarchy: dataset {ids[k]!r} has an empty group")
        if used.size == names.size and np.array_equal(used, np.arange(used.size)):
            ordered = codes.copy()  # already numbered in order of first appearance
        else:
            rank = np.empty(names.size, dtype=np.intp)
            rank[used] = np.arange(used.size)
            ordered = rank[codes]
        ordered.flags.writeable = False
        group_ids = tuple(names[used].tolist())
        h = cls.__new__(cls)
        if chunks is not None:
            if len(ids) != codes.size:
                raise DashselError(
                    f"hierarchy: {len(ids)} dataset ids but {codes.size} group labels"
                )
            if not len(ids):
                raise DashselError("hierarchy: the pool holds no datasets")
            checked = _check_column_ids(id_column, chunks)
            if checked is not None:  # a hash collision, checked the slow way: keep the tuple
                ids = checked
            h._store(ids, _CodedStrs(ordered, group_ids))
        else:
            h._setup(ids, tuple(names[codes].tolist()), check_groups=False)
        h.__dict__["_factorized"] = (ordered, group_ids)
        if id_column is not None:
            h.__dict__["_id_column"] = id_column
        return h

    def id_column(self) -> Any:
        """The ids as the column the hierarchy was built from (``from_codes(...,
        id_column=)``), or None: for matching tables to the pool column against column."""
        return self.__dict__.get("_id_column")

    @cached_property
    def _factorized(self) -> tuple[np.ndarray, tuple[str, ...]]:
        import pandas as pd

        codes, uniques = pd.factorize(np.asarray(self.groups, dtype=object), sort=False)
        codes = codes.astype(np.intp, copy=False)
        codes.flags.writeable = False
        return codes, tuple(uniques.tolist())

    @property
    def group_ids(self) -> tuple[str, ...]:
        """Distinct groups in order of first appearance (computed once)."""
        return self._factorized[1]

    @property
    def group_index(self) -> np.ndarray:
        """Position in :attr:`group_ids` of each dataset's group (read-only intp array)."""
        return self._factorized[0]

    @property
    def n_datasets(self) -> int:
        return len(self.dataset_ids)

    @property
    def n_groups(self) -> int:
        return len(self.group_ids)

    @cached_property
    def _index(self) -> dict[str, int]:
        return dict(zip(self.dataset_ids, range(self.n_datasets), strict=True))

    def id_at(self, position: int) -> str:
        """The id at ``position``, remembered so that looking it up again (``index``,
        ``group_of``, ``in``) needs no index of the whole pool. Policies hand out ids this
        way: a run of 100 trials on 10^6 datasets never builds the full id -> position dict.
        """
        dataset_id = self.dataset_ids[position]
        if "_index" not in self.__dict__:
            self._handed_out[dataset_id] = int(position)
        return dataset_id

    def index(self, dataset_id: str) -> int:
        """Position of a dataset id; raises :class:`UnknownDatasetError` naming it."""
        try:
            k = self._handed_out.get(dataset_id)
            return k if k is not None else self._index[dataset_id]
        except (KeyError, TypeError):
            raise UnknownDatasetError(
                f"unknown dataset id {dataset_id!r}: the pool holds "
                f"{self.n_datasets} datasets ({', '.join(self.dataset_ids[:5])}"
                f"{', ...' if self.n_datasets > 5 else ''})"
            ) from None

    def positions(self, dataset_ids: Iterable[str]) -> np.ndarray:
        """Positions of many ids at once (-1 for an id the hierarchy does not hold): one C
        loop of look-ups, for matching a table of 10^6 rows to the pool."""
        get = self._index.get
        return np.fromiter(map(get, dataset_ids, itertools.repeat(-1)), dtype=np.intp)

    def __contains__(self, dataset_id: object) -> bool:
        try:
            return dataset_id in self._handed_out or dataset_id in self._index
        except TypeError:  # unhashable
            return False

    def group_of(self, dataset_id: str) -> str:
        return self.groups[self.index(dataset_id)]

    def members(self, group: str) -> tuple[str, ...]:
        """Dataset ids of one group, in pool order."""
        try:
            g = self.group_ids.index(group)
        except ValueError:
            raise UnknownDatasetError(f"unknown group {group!r}") from None
        return tuple(self.dataset_ids[i] for i in np.flatnonzero(self.group_index == g).tolist())

    def fingerprint(self) -> str:
        """A short hash of ids and groups, to check a journal belongs to this pool."""
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        # sha256 of "id\x00group\x01" for every dataset, joined in C rather than hashed
        # dataset by dataset (same digest, a fraction of the time at 10^6 datasets).
        n, ids, groups = self.n_datasets, self.dataset_ids, self.groups
        parts = zip(ids, repeat("\x00", n), groups, repeat("\x01", n), strict=True)
        text = "".join(itertools.chain.from_iterable(parts))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _str_tuple(values: Sequence[str]) -> tuple[str, ...]:
    out = tuple(values)
    try:
        "".join(out)  # one C loop that fails on anything but str
    except TypeError:  # rare: numbers given as ids
        return tuple(str(v) for v in out)
    if out and type(out[0]) is not str:  # e.g. numpy.str_ items (a str subclass)
        return tuple(str(v) for v in out)
    return out


def _is_text_column(column: Any) -> bool:
    """A pandas array of the string dtype (its non-missing values are str)."""
    if column is None:
        return False
    import pandas as pd

    return isinstance(getattr(column, "dtype", None), pd.StringDtype)


def _first_bad_id(ids: tuple[str, ...]) -> None:
    """Raise the error naming the first empty or repeated id (the slow path)."""
    seen: set[str] = set()
    for k, d in enumerate(ids):
        if not d:
            raise DashselError(f"hierarchy: dataset #{k} has an empty id")
        if d in seen:
            raise DashselError(f"hierarchy: dataset id {d!r} appears twice")
        seen.add(d)


def _first_appearances(codes: np.ndarray, n_names: int) -> tuple[np.ndarray, np.ndarray]:
    """The codes used, in order of first appearance, and the position of each's first
    appearance."""
    if codes.size == 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    # Codes from pandas.factorize(sort=False) are numbered in order of first appearance: the
    # running maximum starts at 0 and steps up by one, where each code first appears. Two
    # passes instead of np.unique's sort of 10^6 codes.
    top = np.maximum.accumulate(codes)
    if codes[0] == 0 and not (np.diff(top) > 1).any():
        first = np.flatnonzero(np.diff(top, prepend=-1))
        return np.arange(first.size, dtype=np.intp), first
    used, first = np.unique(codes, return_index=True)
    order = np.argsort(first)
    return used[order], first[order]


class _LazyStrs(Sequence[str]):
    """A read-only sequence of str that behaves as the tuple of its items: length, indexing,
    slicing (a tuple), iteration, ``in``, ``index``, ``count``, ``==`` and hash (equal to
    the tuple's), ``+``, numpy conversion, and pickling (as the tuple). Single items are
    read one by one (``_item``); the tuple is built once (``_build``) and kept when an
    operation needs every item."""

    __slots__ = ("_n", "_tuple")

    # A slice longer than this builds the whole tuple rather than reading items one by one.
    _SHORT = 1024

    def __init__(self, n: int) -> None:
        self._n = n
        self._tuple: tuple[str, ...] | None = None

    def _item(self, i: int) -> str:
        raise NotImplementedError

    def _build(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _all(self) -> tuple[str, ...]:
        if self._tuple is None:
            self._tuple = self._build()
        return self._tuple

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, key: Any) -> Any:
        if self._tuple is not None:
            return self._tuple[key]
        if isinstance(key, slice):
            span = range(*key.indices(self._n))
            if len(span) > self._SHORT:
                return self._all()[key]
            return tuple(self._item(i) for i in span)
        i = operator.index(key)  # TypeError for anything but an integer, as a tuple's
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("tuple index out of range")
        return self._item(i)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._all())

    def __contains__(self, value: object) -> bool:
        return value in self._all()

    def index(self, value: Any, start: int = 0, stop: int = sys.maxsize) -> int:
        return self._all().index(value, start, stop)

    def count(self, value: Any) -> int:
        return self._all().count(value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _LazyStrs):
            return other is self or (len(other) == self._n and other._all() == self._all())
        if isinstance(other, tuple):
            return len(other) == self._n and other == self._all()
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(self._all())

    def __add__(self, other: object) -> tuple[str, ...]:
        if isinstance(other, tuple | _LazyStrs):
            return self._all() + tuple(other)
        return NotImplemented

    def __radd__(self, other: object) -> tuple[str, ...]:
        if isinstance(other, tuple):
            return other + self._all()
        return NotImplemented

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self._all(), dtype=dtype)

    def __reduce__(self) -> tuple[type[tuple[str, ...]], tuple[tuple[str, ...]]]:
        return (tuple, (self._all(),))

    def __repr__(self) -> str:
        return repr(self._all())


class _ColumnStrs(_LazyStrs):
    """The ids of a pandas text column (its values are str, none missing)."""

    __slots__ = ("_column",)

    def __init__(self, column: Any) -> None:
        super().__init__(len(column))
        self._column = column

    def _item(self, i: int) -> str:
        return str(self._column[i])

    def _build(self) -> tuple[str, ...]:
        return _str_tuple(_column_values(self._column))


class _CodedStrs(_LazyStrs):
    """``names[codes[k]]``: one shared str per distinct name."""

    __slots__ = ("_codes", "_names")

    def __init__(self, codes: np.ndarray, names: tuple[str, ...]) -> None:
        super().__init__(int(codes.size))
        self._codes = codes
        self._names = names

    def _item(self, i: int) -> str:
        return self._names[int(self._codes[i])]

    def _build(self) -> tuple[str, ...]:
        return tuple(np.asarray(self._names, dtype=object)[self._codes].tolist())


def _column_values(column: Any) -> list[Any]:
    """A column's values as a list (pandas arrays and Series have ``tolist``)."""
    tolist = getattr(column, "tolist", None)
    return tolist() if callable(tolist) else list(column)


def _arrow_text_chunks(column: Any) -> list[Any] | None:
    """The Arrow arrays (string or large_string) holding a pandas text column, or None for
    any other column (or without pyarrow)."""
    if not _is_text_column(column) or getattr(column.dtype, "storage", None) != "pyarrow":
        return None
    try:
        import pyarrow as pa
    except ImportError:
        return None
    try:
        data = pa.array(column)  # pandas hands over its Arrow data: no copy
    except (TypeError, ValueError, pa.ArrowException):
        return None
    chunks = data.chunks if isinstance(data, pa.ChunkedArray) else [data]
    if not all(pa.types.is_string(c.type) or pa.types.is_large_string(c.type) for c in chunks):
        return None
    return list(chunks)


# An odd 64-bit multiplier: the hash below is sum((byte + 1) * P**(j + 1)) mod 2**64.
_P = np.uint64(0x9E3779B97F4A7C15)
_P_INVERSE = np.uint64(pow(0x9E3779B97F4A7C15, -1, 1 << 64))


def _text_hashes(chunks: list[Any], block: int = 1 << 18) -> np.ndarray | None:
    """A 64-bit polynomial hash of every string in the Arrow arrays ``chunks``, computed on
    their buffers (no Python string made); None if any string is empty or missing.

    The hash of bytes b_0 .. b_{m-1} is sum((b_j + 1) * P**(j + 1)) mod 2**64. Computed per
    block of rows holding at most ``block`` bytes (or one string's): every byte is weighted
    by P to the power of its place in the block, the sums per string are taken with one
    ``reduceat``, then each is divided (times the inverse of P, which is odd) by P to the power
    of its string's start: three passes over the bytes, no per-byte index array.
    """
    import pyarrow as pa

    out = np.empty(sum(len(c) for c in chunks), dtype=np.uint64)
    at = 0
    powers = inverse = np.empty(0, dtype=np.uint64)
    for c in chunks:
        if not len(c):
            continue
        if c.null_count:
            return None
        _, offsets_buf, data_buf = c.buffers()
        width = np.int64 if pa.types.is_large_string(c.type) else np.int32
        offsets = np.frombuffer(offsets_buf, dtype=width)[c.offset : c.offset + len(c) + 1]
        offsets = offsets.astype(np.int64)
        lengths = np.diff(offsets)
        if lengths.min() <= 0:
            return None
        size = max(block, int(lengths.max()))
        if powers.size < size:  # P**1 .. P**size and P**0 .. P**-(size - 1)
            powers = np.cumprod(np.full(size, _P, dtype=np.uint64))
            inverse = np.cumprod(np.full(size, _P_INVERSE, dtype=np.uint64))
            inverse = np.concatenate([np.ones(1, dtype=np.uint64), inverse[:-1]])
        data = np.frombuffer(data_buf, dtype=np.uint8)
        lo = 0
        while lo < len(c):
            # the rows from lo whose bytes fit in one block (one row at least)
            hi = int(np.searchsorted(offsets, offsets[lo] + size, side="right")) - 1
            hi = min(max(hi, lo + 1), len(c))
            o = offsets[lo : hi + 1]
            starts = o[:-1] - o[0]
            terms = data[o[0] : o[-1]].astype(np.uint64)
            terms += np.uint64(1)
            terms *= powers[: terms.size]
            sums = np.add.reduceat(terms, starts)
            sums *= inverse[starts]
            out[at + lo : at + hi] = sums
            lo = hi
        at += len(c)
    return out


def _check_column_ids(column: Any, chunks: list[Any]) -> tuple[str, ...] | None:
    """Raise the hierarchy's error for an empty, missing or repeated id of a text column,
    found by hashing the column's buffers and checking that the hashes are distinct. Returns
    None, or the ids as a tuple where equal hashes sent the check to the slow path and no id
    was bad."""
    import pandas as pd

    hashes = _text_hashes(chunks)
    # pandas' hash table of the 64-bit hashes (about twice as fast as sorting them)
    if hashes is not None and pd.Index(hashes, copy=False).is_unique:
        return None
    del hashes
    # A bad id, or (rarely) two ids with the same hash: the exact check, on Python strings.
    values = _column_values(column)
    ids = tuple("" if not isinstance(v, str) else v for v in values)
    _first_bad_id(ids)
    return ids
