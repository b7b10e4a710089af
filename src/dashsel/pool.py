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
        self.name = name
        self.entries: tuple[DatasetEntry, ...] = tuple(datasets)
        self.hierarchy = Hierarchy([e.id for e in self.entries], [e.group for e in self.entries])
        self._by_id = {e.id: e for e in self.entries}
        self._splits: dict[str, ArraySplit | Loader | None] = {
            "local": local,
            "validation": validation,
            "test": test,
        }
        # Candidates as evaluators see them (rows outside the task's classes dropped), filled
        # on first use; the same object as the entry's data when nothing was dropped.
        self._task_data: dict[str, ArraySplit] = {}
        self._classes: frozenset[Any] | None = None

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
        """A pool with structure but no arrays, for replay (``table``) evaluators."""
        return cls(
            [
                DatasetEntry(d, g)
                for d, g in zip(hierarchy.dataset_ids, hierarchy.groups, strict=True)
            ],
            name=name,
        )

    # --- access ----------------------------------------------------------------------------
    @property
    def dataset_ids(self) -> tuple[str, ...]:
        return self.hierarchy.dataset_ids

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, dataset_id: str) -> DatasetEntry:
        self.hierarchy.index(dataset_id)  # raises UnknownDatasetError with a clear message
        return self._by_id[dataset_id]

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
    def has_arrays(self) -> bool:
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
