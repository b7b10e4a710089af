"""Replay logged rewards from a table instead of training models.

The table has one row per logged evaluation: a dataset id and the reward it got. Several rows
for one dataset are several seeds; the k-th pull of a dataset in a run (``TrialSpec.pull``)
gets the dataset's k-th row, cycling when the run pulls it more often than the table has rows.
A run therefore sees the same reward sequence whatever the trial seeds are, which makes
policies comparable on exactly the same evaluations.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dashsel.errors import DataError, UnknownDatasetError
from dashsel.evaluators.base import Evaluator
from dashsel.trial import TrialSpec

if TYPE_CHECKING:
    import pandas as pd

    from dashsel.hierarchy import Hierarchy
    from dashsel.pool import Pool


class TableEvaluator(Evaluator):
    """Rewards replayed from a CSV file or a DataFrame.

    Parameters
    ----------
    path_or_frame : str, Path or pandas.DataFrame
        A CSV file, or a frame, with a dataset column and a reward column (other columns are
        ignored).
    dataset_column, reward_column : str
        Names of those columns.

    Notes
    -----
    Empty or NaN rewards load and are returned as NaN; the run loop reports them as a
    :class:`~dashsel.errors.RewardError`. Call :meth:`check_pool` to make sure every dataset
    of a pool has at least one row.
    """

    can_train = False
    kind = "table"

    def __init__(
        self,
        path_or_frame: str | Path | pd.DataFrame,
        *,
        dataset_column: str = "dataset",
        reward_column: str = "reward",
    ) -> None:
        import pandas as pd

        self.dataset_column = dataset_column
        self.reward_column = reward_column
        if isinstance(path_or_frame, pd.DataFrame):
            self.path: Path | None = None
            self._name = "<DataFrame>"
            frame = path_or_frame
            self._sha256 = hashlib.sha256(frame.to_csv(index=False).encode("utf-8")).hexdigest()
            header_offset = 0  # rows named 0-based for frames
        else:
            self.path = Path(path_or_frame)
            self._name = str(self.path)
            frame = self._read(self.path)
            self._sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
            header_offset = 2  # line numbers in the file: header is line 1
        self._parse(frame, header_offset)

    # --- reading -------------------------------------------------------------------------------
    def _read(self, path: Path) -> pd.DataFrame:
        import pandas as pd

        # os.path.isfile: False, not an OSError, for a name too long
        if not os.path.isfile(path):
            raise DataError(f"{path}: no such reward table")
        try:
            # Ids are text even when they look like numbers ("007" must stay "007"): a column
            # read as numbers is read again as text. (Asking for dtype=str up front makes
            # pandas' reader several times slower and larger on a million rows.)
            frame = pd.read_csv(path, keep_default_na=True)
            col = self.dataset_column
            if col in frame.columns and not pd.api.types.is_string_dtype(frame[col]):
                frame[col] = pd.read_csv(path, usecols=[col], dtype=str)[col]
            return frame
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: empty reward table") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            msg = " ".join(str(exc).split())
            raise DataError(f"{path}: not a readable CSV file ({msg})") from None

    def _parse(self, frame: pd.DataFrame, header_offset: int) -> None:
        import pandas as pd

        for col in (self.dataset_column, self.reward_column):
            if col not in frame.columns:
                cols = ", ".join(str(c) for c in frame.columns) or "none"
                raise DataError(f"{self._name}: missing column {col!r} (columns: {cols})")
        if len(frame) == 0:
            raise DataError(f"{self._name}: the reward table has no rows")
        ids = frame[self.dataset_column]
        empty_id = np.flatnonzero(ids.isna().to_numpy())
        if empty_id.size:
            raise DataError(
                f"{self._name}: column {self.dataset_column!r} is empty on "
                f"{self._row(empty_id[0], header_offset)}"
            )
        raw = frame[self.reward_column]
        rewards = pd.to_numeric(raw, errors="coerce")
        bad = np.flatnonzero((rewards.isna() & raw.notna()).to_numpy())
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{self._name}: column {self.reward_column!r} is not a number on "
                f"{self._row(i, header_offset)}: {raw.iloc[i]!r}"
            )
        # Columnar: the rows stay two columns (ids as pandas' compact string column, rewards
        # as floats) and are grouped per dataset with array operations, by pool position once
        # bound to a pool (check_pool), by the table's own ids otherwise (built on demand).
        self._row_ids: pd.Series | None = ids.astype(str)
        self._row_values = rewards.to_numpy(dtype=float)
        self._own: tuple[np.ndarray, dict[str, int], _Grouped] | None = None
        self._bound: tuple[Hierarchy, _Grouped] | None = None

    def _own_index(self) -> tuple[np.ndarray, dict[str, int], _Grouped]:
        """The table's distinct ids (first-appearance order), their positions, and the rows
        grouped by them."""
        if self._own is None:
            import pandas as pd

            if self._row_ids is None:  # bound to a pool whose ids are exactly the rows
                assert self._bound is not None
                hierarchy, grouped = self._bound
                ids = np.asarray(hierarchy.dataset_ids, dtype=object)
                pos = dict(zip(hierarchy.dataset_ids, range(ids.size), strict=True))
                self._own = (ids, pos, grouped)
                return self._own
            codes, uniques = pd.factorize(self._row_ids, sort=False)
            ids = np.asarray(uniques, dtype=object)
            pos = dict(zip(ids.tolist(), range(ids.size), strict=True))
            self._own = (ids, pos, _Grouped(codes, ids.size, self._row_values))
        return self._own

    def _rows(self, dataset_id: str) -> np.ndarray | None:
        """The logged rewards of ``dataset_id`` in file order (a view), None if it has none."""
        if self._bound is not None:
            hierarchy, grouped = self._bound
            if dataset_id in hierarchy:  # the pool's own index: no second dict of ids
                return grouped.rows(hierarchy.index(dataset_id))
        _, pos, grouped = self._own_index()
        j = pos.get(dataset_id, -1)
        return grouped.rows(j) if j >= 0 else None

    @staticmethod
    def _row(index: int, header_offset: int) -> str:
        if header_offset:
            return f"line {int(index) + header_offset}"
        return f"row {int(index)}"

    # --- evaluator protocol --------------------------------------------------------------------
    def evaluate(self, spec: TrialSpec) -> float:
        """The ``spec.pull``-th logged reward of ``spec.dataset_id`` (cycling); NaN as is."""
        rows = self._rows(spec.dataset_id)
        if rows is None:
            raise UnknownDatasetError(f"{self._name}: no rewards for dataset {spec.dataset_id!r}")
        return float(rows[spec.pull % rows.size])

    def _is_deterministic(self) -> bool:
        # One logged reward per dataset (or several equal ones): every pull replays it.
        # The pool's grouping when bound (no index of a million ids built just for this).
        grouped = self._bound[1] if self._bound is not None else self._own_index()[2]
        if grouped.starts is None:
            return True
        nonempty = grouped.counts > 0
        starts = grouped.starts[nonempty]
        lo = np.minimum.reduceat(grouped.values, starts)
        hi = np.maximum.reduceat(grouped.values, starts)
        return bool(np.all(lo == hi))

    def check_pool(self, pool: Pool) -> None:
        """Raise :class:`DataError` naming a dataset of ``pool`` that has no row.

        Also binds the table to the pool: its rows are grouped by pool position (one pass of
        look-ups in the pool's own index), so no second index of the ids is built.
        """
        import pandas as pd

        if self._row_ids is None:  # bound before, by rows equal to that pool's ids
            assert self._bound is not None
            self._row_ids = pd.Series(self._bound[0].dataset_ids, dtype=str)
        h = pool.hierarchy
        if len(self._row_ids) == h.n_datasets and _same_ids(self._row_ids, h):
            # One row per dataset in pool order (a common layout): matched by comparing the
            # ids, without an index of the pool's ids; the rows are used as they are, and the
            # table's id column (the pool's ids) is not kept twice.
            grouped = _Grouped(None, h.n_datasets, self._row_values)
            self._row_ids = None
        else:
            step = 1 << 16  # in chunks: 10^6 rows never exist as Python strings all at once
            codes = np.concatenate(
                [
                    h.positions(self._row_ids.iloc[i : i + step].tolist())
                    for i in range(0, len(self._row_ids), step)
                ]
            )
            grouped = _Grouped(codes, h.n_datasets, self._row_values)
        missing = np.flatnonzero(grouped.counts == 0) if grouped.counts is not None else ()
        if len(missing):
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            first = h.dataset_ids[int(missing[0])]
            raise DataError(
                f"{self._name}: no rewards for dataset {first!r}{more} of pool {pool.name!r}"
            )
        self._bound = (h, grouped)

    def describe(self) -> dict[str, Any]:
        """Kind, file, columns and the SHA-256 of the table's content."""
        return {
            "kind": self.kind,
            "path": str(self.path) if self.path is not None else None,
            "dataset_column": self.dataset_column,
            "reward_column": self.reward_column,
            "sha256": self._sha256,
        }

    # --- extras --------------------------------------------------------------------------------
    @property
    def dataset_ids(self) -> tuple[str, ...]:
        """Ids that have rows, in order of first appearance."""
        return tuple(self._own_index()[0].tolist())

    def rewards(self, dataset_id: str) -> np.ndarray:
        """All logged rewards of one dataset, in file order."""
        rows = self._rows(dataset_id)
        if rows is None:
            raise UnknownDatasetError(f"{self._name}: no rewards for dataset {dataset_id!r}")
        return rows.copy()

    def mean_rewards(self) -> dict[str, float]:
        """Mean logged reward of every dataset (NaN rows ignored; NaN if all are NaN)."""
        ids, _, grouped = self._own_index()
        out = {}
        for j, d in enumerate(ids.tolist()):
            r = grouped.rows(j)
            finite = r[~np.isnan(r)]
            out[d] = float(finite.mean()) if finite.size else float("nan")
        return out

    def __repr__(self) -> str:
        return f"TableEvaluator({self._name!r}, datasets={len(self._own_index()[0])})"


def _same_ids(rows: pd.Series, h: Hierarchy) -> bool:
    """Whether the rows' ids are the pool's ids in pool order (as many of each).

    Column against column when the hierarchy keeps the column its ids were read from (a
    vectorised comparison, no Python string per row: 5 ms instead of about 0.1 s at 10^6
    rows); otherwise chunk by chunk against the hierarchy's tuple (a million rows never exist
    as Python strings all at once), stopping at the first chunk that differs.
    """
    col = h.id_column()
    if col is not None:
        try:
            eq = np.asarray(rows.array == col, dtype=bool)
        except (TypeError, ValueError):  # e.g. a column type pandas cannot compare to it
            eq = None
        if eq is not None and eq.shape == (len(rows),):
            return bool(eq.all())
    step = 1 << 16
    return all(
        tuple(rows.iloc[i : i + step].tolist()) == h.dataset_ids[i : i + step]
        for i in range(0, len(rows), step)
    )


class _Grouped:
    """Rows grouped by an integer key in [0, n) (rows with key -1 are dropped): the rows of
    key j are ``values[starts[j] : starts[j] + counts[j]]``, in their original order."""

    def __init__(self, codes: np.ndarray | None, n: int, values: np.ndarray) -> None:
        if codes is None:  # row j is key j's only row: no copy, no offsets
            self.values = values
            self.counts = None
            self.starts = None
            return
        codes = np.asarray(codes, dtype=np.intp)
        keep = codes >= 0
        if not keep.all():
            codes, values = codes[keep], values[keep]
        order = np.argsort(codes, kind="stable")
        self.values = values[order]
        self.counts = np.bincount(codes, minlength=n)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.intp)

    def rows(self, j: int) -> np.ndarray:
        if self.starts is None:
            return self.values[j : j + 1]
        start = int(self.starts[j])
        return self.values[start : start + int(self.counts[j])]
