"""The two-level structure of a pool: dataset ids, each in one group."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
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
    pandas' factorize), each computed once and cached. A hierarchy is immutable.
    """

    __slots__ = ("__dict__", "_handed_out", "dataset_ids", "groups")

    dataset_ids: tuple[str, ...]
    groups: tuple[str, ...]

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
        object.__setattr__(self, "dataset_ids", ids)
        object.__setattr__(self, "groups", grp)
        object.__setattr__(self, "_handed_out", {})

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
        return (Hierarchy, (self.dataset_ids, self.groups))

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
        dataset_ids: Sequence[str],
        group_codes: np.ndarray,
        group_names: Sequence[str],
        *,
        id_column: Any = None,
    ) -> Hierarchy:
        """Build from ids plus integer group codes into ``group_names`` (as
        ``pandas.factorize`` gives them): the groups tuple shares one str per group, and the
        group structure needs no second pass over the labels (nor do the group checks: they
        run on the distinct names).

        ``id_column``: the same ids as a column (a pandas array, e.g. the one they were read
        from), kept so that a table of 10^6 rows can be matched to the pool by comparing
        columns (:meth:`id_column`) instead of making 10^6 Python strings.
        """
        codes = np.asarray(group_codes, dtype=np.intp)
        names = np.asarray([str(g) for g in group_names], dtype=object)
        if codes.ndim != 1 or (codes.size and (codes.min() < 0 or codes.max() >= names.size)):
            raise DashselError("hierarchy: group codes out of range of the group names")
        if _is_text_column(id_column) and type(dataset_ids) is tuple:
            ids = dataset_ids  # the values of a pandas text column: str, one C loop saved
        else:
            ids = _str_tuple(dataset_ids)
        if id_column is not None and len(id_column) != len(ids):
            raise DashselError(
                f"hierarchy: id column of {len(id_column)} rows for {len(ids)} dataset ids"
            )
        # Renumber in order of first appearance (the order policies index groups by).
        used, first = np.unique(codes, return_index=True)
        if "" in names[used].tolist():
            k = int(first[names[used].tolist().index("")])
            raise DashselError(f"hierarchy: dataset {ids[k]!r} has an empty group")
        h = cls.__new__(cls)
        h._setup(ids, tuple(names[codes].tolist()), check_groups=False)
        rank = np.empty(names.size, dtype=np.intp)
        rank[used[np.argsort(first)]] = np.arange(used.size)
        ordered = rank[codes]
        ordered.flags.writeable = False
        h.__dict__["_factorized"] = (ordered, tuple(names[used[np.argsort(first)]].tolist()))
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
