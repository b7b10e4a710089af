"""The two-level structure of a pool: dataset ids, each in one group."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dashsel.errors import DashselError, UnknownDatasetError


@dataclass(frozen=True)
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
    """

    dataset_ids: tuple[str, ...]
    groups: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __init__(self, dataset_ids: Sequence[str], groups: Sequence[str]) -> None:
        ids = tuple(str(d) for d in dataset_ids)
        grp = tuple(str(g) for g in groups)
        if len(ids) != len(grp):
            raise DashselError(f"hierarchy: {len(ids)} dataset ids but {len(grp)} group labels")
        if not ids:
            raise DashselError("hierarchy: the pool holds no datasets")
        index: dict[str, int] = {}
        for k, d in enumerate(ids):
            if not d:
                raise DashselError(f"hierarchy: dataset #{k} has an empty id")
            if d in index:
                raise DashselError(f"hierarchy: dataset id {d!r} appears twice")
            index[d] = k
        for k, g in enumerate(grp):
            if not g:
                raise DashselError(f"hierarchy: dataset {ids[k]!r} has an empty group")
        object.__setattr__(self, "dataset_ids", ids)
        object.__setattr__(self, "groups", grp)
        object.__setattr__(self, "_index", index)

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

    @property
    def group_ids(self) -> tuple[str, ...]:
        """Distinct groups in order of first appearance."""
        return tuple(dict.fromkeys(self.groups))

    @property
    def n_datasets(self) -> int:
        return len(self.dataset_ids)

    @property
    def n_groups(self) -> int:
        return len(self.group_ids)

    def index(self, dataset_id: str) -> int:
        """Position of a dataset id; raises :class:`UnknownDatasetError` naming it."""
        try:
            return self._index[dataset_id]
        except KeyError:
            raise UnknownDatasetError(
                f"unknown dataset id {dataset_id!r}: the pool holds "
                f"{self.n_datasets} datasets ({', '.join(self.dataset_ids[:5])}"
                f"{', ...' if self.n_datasets > 5 else ''})"
            ) from None

    def __contains__(self, dataset_id: object) -> bool:
        return dataset_id in self._index

    def group_of(self, dataset_id: str) -> str:
        return self.groups[self.index(dataset_id)]

    def members(self, group: str) -> tuple[str, ...]:
        """Dataset ids of one group, in pool order."""
        out = tuple(d for d, g in zip(self.dataset_ids, self.groups, strict=True) if g == group)
        if not out:
            raise UnknownDatasetError(f"unknown group {group!r}")
        return out

    def fingerprint(self) -> str:
        """A short hash of ids and groups, to check a journal belongs to this pool."""
        h = hashlib.sha256()
        for d, g in zip(self.dataset_ids, self.groups, strict=True):
            h.update(f"{d}\x00{g}\x01".encode())
        return h.hexdigest()[:16]
