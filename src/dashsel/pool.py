"""A pool of candidate datasets in groups, with the local, validation and test data.

Arrays are loaded lazily from their files (see :mod:`dashsel.arrays`) and kept once loaded, so
a pool of thousands of datasets costs memory only for what is evaluated.

Labels: the task's classes are those of the local, validation and test data together
(:attr:`Pool.classes`). A candidate may bring a class the local data lacks (that is often why
it helps); its rows whose label is none of the task's classes are dropped on first use, with
one :class:`~dashsel.errors.LabelWarning` naming the dataset and the count, and a candidate
left with no rows is a :class:`~dashsel.errors.DataError` naming it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from dashsel.errors import DashselError, DataError, LabelWarning
from dashsel.hierarchy import Hierarchy


@dataclass(frozen=True)
class ArraySplit:
    """Features ``X`` (n_samples, n_features) and labels ``y`` (n_samples,)."""

    X: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        X = np.asarray(self.X)
        y = np.asarray(self.y)
        if X.ndim == 1:
            raise DataError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
        if y.ndim != 1:
            raise DataError(f"y must be 1-D (n_samples,), got shape {y.shape}")
        if X.shape[0] != y.shape[0]:
            raise DataError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_samples(self) -> int:
        return len(self)

    @staticmethod
    def concat(parts: Sequence[ArraySplit]) -> ArraySplit:
        """Stack splits row-wise (features must agree)."""
        if not parts:
            raise DataError("nothing to concatenate")
        widths = {p.X.shape[1:] for p in parts}
        if len(widths) > 1:
            raise DataError(f"feature shapes differ: {sorted(widths)}")
        return ArraySplit(
            np.concatenate([p.X for p in parts]), np.concatenate([p.y for p in parts])
        )


Loader = Callable[[], ArraySplit]


@dataclass
class DatasetEntry:
    """One candidate dataset: its id, group, and where its arrays come from.

    Exactly one of ``data`` (in memory) and ``loader`` (called once, on first use) is set for
    pools with arrays; replay-only pools (``table`` evaluator) have neither. ``source`` names
    the file for error messages; ``meta`` is free-form (provenance, licence, ...).
    """

    id: str
    group: str
    data: ArraySplit | None = None
    loader: Loader | None = None
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> ArraySplit:
        if self.data is None:
            if self.loader is None:
                raise DataError(f"dataset {self.id!r} has no data (this pool is replay-only)")
            self.data = self.loader()
        return self.data

    @property
    def has_data(self) -> bool:
        return self.data is not None or self.loader is not None


class Pool:
    """Candidate datasets in groups plus the local, validation and test splits.

    Parameters
    ----------
    datasets : iterable of DatasetEntry
        The candidates, in a fixed order (it is the order policies index arms by).
    local, validation, test : ArraySplit or callable returning one, optional
        The model's own training data, the data rewards are measured on, and the held-out data
        the final model is scored on. Replay-only pools may have none.
    name : str
        A name for reports and journals.
    """

    def __init__(
        self,
        datasets: Iterable[DatasetEntry],
        local: ArraySplit | Loader | None = None,
        validation: ArraySplit | Loader | None = None,
        test: ArraySplit | Loader | None = None,
        name: str = "pool",
    ) -> None:
        entries = tuple(datasets)
        self._init(
            Hierarchy([e.id for e in entries], [e.group for e in entries]),
            entries,
            None,
            local=local,
            validation=validation,
            test=test,
            name=name,
        )

    def _init(
        self,
        hierarchy: Hierarchy,
        entries: tuple[DatasetEntry, ...] | None,
        table: _TableEntries | None,
        *,
        local: ArraySplit | Loader | None,
        validation: ArraySplit | Loader | None,
        test: ArraySplit | Loader | None,
        name: str,
        scores: np.ndarray | None = None,
        score_names: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.hierarchy = hierarchy
        # Pools read from a table of datasets make their DatasetEntry objects on demand (one
        # per dataset only for whoever iterates ``entries``): a 10^6-dataset pool holds its
        # ids, groups and paths as columns.
        self._entries = entries
        self._table = table
        self._by_id: dict[str, DatasetEntry] = (
            {e.id: e for e in entries} if entries is not None else {}
        )
        self.scores = scores
        self.score_names = score_names
        self._splits: dict[str, ArraySplit | Loader | None] = {
            "local": local,
            "validation": validation,
            "test": test,
        }
        # Candidates as evaluators see them (rows outside the task's classes dropped), filled
        # on first use; the same object as the entry's data when nothing was dropped.
        self._task_data: dict[str, ArraySplit] = {}
        self._classes: frozenset[Any] | None = None

    @classmethod
    def from_table(
        cls,
        dataset_ids: Sequence[str] | Hierarchy,
        groups: Sequence[str] | None = None,
        *,
        paths: Sequence[str | None] | None = None,
        loader: Callable[[str, str], ArraySplit] | None = None,
        scores: np.ndarray | None = None,
        score_names: Sequence[str] = (),
        local: ArraySplit | Loader | None = None,
        validation: ArraySplit | Loader | None = None,
        test: ArraySplit | Loader | None = None,
        name: str = "pool",
    ) -> Pool:
        """A pool held as columns (what ``[pool] datasets = "table.csv"`` manifests give).

        Parameters
        ----------
        dataset_ids, groups : sequence of str
            One id and one group per dataset, in pool order; or a :class:`Hierarchy` as
            ``dataset_ids`` and no ``groups`` (used as it is).
        paths : sequence of str or None, optional
            Each dataset's array file (None or "" where it has none: replay-only).
        loader : callable, optional
            ``loader(dataset_id, path) -> ArraySplit``; picklable (a module-level function
            or a ``functools.partial`` of one) so pools travel to worker processes. Required
            with ``paths``.
        scores : ndarray of shape (n_datasets, p), optional
            Numeric per-dataset features carried for policies that use a prior from them
            (the table's ``score_*`` columns), in pool order; names in ``score_names``.
        local, validation, test, name
            As for :class:`Pool`.
        """
        if isinstance(dataset_ids, Hierarchy):
            if groups is not None:
                raise DashselError("pool: give groups only with a sequence of dataset ids")
            hierarchy = dataset_ids
        else:
            if groups is None:
                raise DashselError("pool: dataset ids need their groups")
            hierarchy = Hierarchy(dataset_ids, groups)
        n = hierarchy.n_datasets
        if paths is not None and len(paths) != n:
            raise DashselError(f"pool: {len(paths)} paths for {n} datasets")
        if paths is not None and loader is None:
            raise DashselError("pool: paths need a loader")
        if scores is not None:
            scores = np.asarray(scores, dtype=float)
            if scores.ndim != 2 or scores.shape[0] != n or scores.shape[1] != len(score_names):
                raise DashselError(
                    f"pool: scores must have shape ({n}, {len(score_names)}), got {scores.shape}"
                )
            scores.flags.writeable = False
        pool = cls.__new__(cls)
        pool._init(
            hierarchy,
            None,
            _TableEntries(tuple(paths) if paths is not None else None, loader),
            local=local,
            validation=validation,
            test=test,
            name=name,
            scores=scores,
            score_names=tuple(score_names),
        )
        return pool

    @property
    def entries(self) -> tuple[DatasetEntry, ...]:
        """Every candidate as a :class:`DatasetEntry`, in pool order (built on first use for
        pools read from a table: prefer :attr:`hierarchy` and :meth:`entry` there)."""
        if self._entries is None:
            self._entries = tuple(self.entry(d) for d in self.hierarchy.dataset_ids)
        return self._entries

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        datasets: Mapping[str, tuple[np.ndarray, np.ndarray] | ArraySplit],
        groups: Mapping[str, str],
        local: tuple[np.ndarray, np.ndarray] | ArraySplit | None = None,
        validation: tuple[np.ndarray, np.ndarray] | ArraySplit | None = None,
        test: tuple[np.ndarray, np.ndarray] | ArraySplit | None = None,
        name: str = "pool",
    ) -> Pool:
        """Build a pool from in-memory arrays.

        ``datasets`` maps id to ``(X, y)``; ``groups`` maps every id to its group.
        """
        entries = []
        for did, arrays in datasets.items():
            if did not in groups:
                raise DashselError(f"dataset {did!r} has no entry in groups")
            entries.append(
                DatasetEntry(did, groups[did], data=_as_split(arrays, f"dataset {did!r}"))
            )
        extra = set(groups) - set(datasets)
        if extra:
            raise DashselError(f"groups names datasets not in the pool: {sorted(extra)}")
        return cls(
            entries,
            local=_as_split(local, "local") if local is not None else None,
            validation=_as_split(validation, "validation") if validation is not None else None,
            test=_as_split(test, "test") if test is not None else None,
            name=name,
        )

    @classmethod
    def replay_only(cls, hierarchy: Hierarchy, name: str = "pool") -> Pool:
        """A pool with structure but no arrays, for replay (``table``) evaluators.

        The hierarchy is used as it is (not rebuilt) and entries are made on demand."""
        pool = cls.__new__(cls)
        pool._init(
            hierarchy,
            None,
            _TableEntries(None, None),
            local=None,
            validation=None,
            test=None,
            name=name,
        )
        return pool

    # --- access ----------------------------------------------------------------------------
    @property
    def dataset_ids(self) -> Sequence[str]:
        """The hierarchy's ids, in pool order (a tuple, or a sequence that behaves as one:
        see :attr:`Hierarchy.dataset_ids`)."""
        return self.hierarchy.dataset_ids

    def __len__(self) -> int:
        return self.hierarchy.n_datasets

    def entry(self, dataset_id: str) -> DatasetEntry:
        k = self.hierarchy.index(dataset_id)  # raises UnknownDatasetError with a clear message
        e = self._by_id.get(dataset_id)
        if e is None:  # a table pool: made on first use, then kept (it caches the arrays)
            assert self._table is not None
            e = self._table.entry(self.hierarchy, k)
            self._by_id[dataset_id] = e
        return e

    def dataset(self, dataset_id: str) -> ArraySplit:
        """Arrays of one candidate dataset (loaded on first use), restricted to the task.

        Rows whose label is none of the task's :attr:`classes` are dropped, with one
        :class:`~dashsel.errors.LabelWarning` naming the dataset and the count; a dataset left
        with no rows is a :class:`DataError` naming it and its file.
        """
        data = self._task_data.get(dataset_id)
        if data is None:
            data = self._task_rows(self.entry(dataset_id))
            self._task_data[dataset_id] = data
        return data

    @property
    def classes(self) -> frozenset[Any] | None:
        """The task's classes: the labels of the local, validation and test data together
        (None when the pool has none of these splits, as replay-only pools)."""
        if self._classes is None:
            present = [self.split(n) for n in ("local", "validation", "test") if self.has_split(n)]
            if not present:
                return None
            self._classes = frozenset(v for s in present for v in np.unique(s.y).tolist())
        return self._classes

    def _task_rows(self, entry: DatasetEntry) -> ArraySplit:
        data = entry.load()
        classes = self.classes
        if classes is None:
            return data
        keep = np.isin(data.y, np.asarray(list(classes)))
        dropped = int(len(data) - np.count_nonzero(keep))
        if dropped == 0:
            return data
        outside = sorted(np.unique(data.y[~keep]).tolist(), key=repr)[:10]
        where = f"dataset {entry.id!r}{_where(entry.source)}"
        if dropped == len(data):
            raise DataError(
                f"{where} has no rows left: its labels {outside} are none of the task's classes "
                "(those of the local, validation and test data)"
            )
        warnings.warn(
            f"{where}: dropped {dropped} of {len(data)} rows whose labels {outside} are none of "
            "the task's classes (those of the local, validation and test data)",
            LabelWarning,
            stacklevel=3,
        )
        return ArraySplit(data.X[keep], data.y[keep])

    def split(self, name: str) -> ArraySplit:
        """The ``"local"``, ``"validation"`` or ``"test"`` split."""
        if name not in self._splits:
            raise DashselError(f"unknown split {name!r}: use local, validation or test")
        value = self._splits[name]
        if value is None:
            raise DataError(f"pool {self.name!r} has no {name} data")
        if not isinstance(value, ArraySplit):
            value = value()
            self._splits[name] = value
        return value

    def has_split(self, name: str) -> bool:
        return self._splits.get(name) is not None

    @property
    def any_candidate_arrays(self) -> bool:
        """Whether at least one candidate has an array file (O(1) for a replay table without
        paths, so checks skip a million replay-only candidates without visiting them)."""
        if self._entries is None and self._table is not None:
            paths = self._table.paths
            return paths is not None and any(paths)
        return any(e.has_data for e in self.entries)

    @property
    def has_arrays(self) -> bool:
        if self._entries is None and self._table is not None:
            paths = self._table.paths
            return paths is not None and all(paths) and self.has_split("validation")
        return all(e.has_data for e in self.entries) and self.has_split("validation")

    @property
    def local(self) -> ArraySplit:
        return self.split("local")

    @property
    def validation(self) -> ArraySplit:
        return self.split("validation")

    @property
    def test(self) -> ArraySplit:
        return self.split("test")

    def check_labels(self) -> None:
        """Load every candidate as :meth:`dataset` does: warn about rows outside the task's
        classes and raise :class:`DataError` naming a dataset left with none."""
        for e in self.entries:
            if e.has_data:
                self.dataset(e.id)

    def __repr__(self) -> str:
        return f"Pool(name={self.name!r}, datasets={len(self)}, groups={self.hierarchy.n_groups})"


@dataclass(frozen=True)
class _TableEntries:
    """How a table pool makes the :class:`DatasetEntry` of one dataset on demand."""

    paths: tuple[str | None, ...] | None
    loader: Callable[[str, str], ArraySplit] | None

    def entry(self, hierarchy: Hierarchy, k: int) -> DatasetEntry:
        did, group = hierarchy.dataset_ids[k], hierarchy.groups[k]
        path = self.paths[k] if self.paths is not None else None
        if not path or self.loader is None:
            return DatasetEntry(did, group)
        return DatasetEntry(did, group, loader=partial(self.loader, did, path), source=path)


def _where(source: str | None) -> str:
    return f" ({source})" if source else ""


def _as_split(value: Any, what: str) -> ArraySplit:
    if isinstance(value, ArraySplit):
        return value
    try:
        X, y = value
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected an (X, y) pair") from None
    try:
        return ArraySplit(np.asarray(X), np.asarray(y))
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None
