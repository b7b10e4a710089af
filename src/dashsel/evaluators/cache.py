"""A persistent cache of evaluations, shared by runs and processes.

Trial rewards are keyed by (evaluator config hash, dataset id, seed) and final scores by
(config hash, sorted dataset ids, seed, split). The trial number and pull count are left out on
purpose: two runs that evaluate the same dataset with the same seed share the evaluation, which
is how the benchmark harness replays many policies without retraining.

The store is an SQLite file in WAL mode, so several processes can read and write it at once;
each process opens its own connection on first use (connections do not survive pickling).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dashsel.errors import DashselError
from dashsel.evaluators.base import Evaluator, Split
from dashsel.jsonable import to_jsonable
from dashsel.trial import TrialSpec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    config TEXT NOT NULL, dataset_id TEXT NOT NULL, seed INTEGER NOT NULL, value REAL,
    PRIMARY KEY (config, dataset_id, seed)
);
CREATE TABLE IF NOT EXISTS scores (
    config TEXT NOT NULL, dataset_ids TEXT NOT NULL, seed INTEGER NOT NULL,
    split TEXT NOT NULL, value REAL,
    PRIMARY KEY (config, dataset_ids, seed, split)
);
"""


def config_hash(description: dict[str, Any]) -> str:
    """Hash of an evaluator's :meth:`~Evaluator.describe` output (key order does not matter)."""
    text = json.dumps(to_jsonable(description), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CachedEvaluator(Evaluator):
    """Wrap an evaluator so each distinct evaluation runs once, across runs and processes.

    Parameters
    ----------
    inner : Evaluator
        The evaluator whose results are cached.
    path : str or Path
        The SQLite file (created, with its folder, if missing).
    timeout : float
        Seconds to wait for another process's write lock.

    Attributes
    ----------
    inner : Evaluator
        The wrapped evaluator: reach its own extras (``pool``, ``score_arrays``) through it;
        the cache passes on only the :class:`~dashsel.evaluators.base.Evaluator` protocol.
    hits, misses : int
        Cache hits and misses of :meth:`evaluate` and :meth:`score` in this process.
    """

    def __init__(self, inner: Evaluator, path: str | Path, *, timeout: float = 60.0) -> None:
        self.inner = inner
        self.path = Path(path)
        self.timeout = float(timeout)
        self.can_train = inner.can_train
        self.deterministic = bool(getattr(inner, "deterministic", False))
        self.config = config_hash(inner.describe())
        self.hits = 0
        self.misses = 0
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._connect()  # fail now, not in a worker, if the file cannot be opened

    # --- connection ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # A connection belongs to the process that opened it: reopen after fork or unpickling.
        if self._conn is None or self._pid != os.getpid():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                raise DashselError(
                    f"{self.path}: cannot open the evaluation cache ({exc})"
                ) from None
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def close(self) -> None:
        """Close this process's connection (it reopens on next use)."""
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_conn"] = None
        state["_pid"] = None
        state["hits"] = state["misses"] = 0  # counts are per process
        return state

    # --- evaluator protocol --------------------------------------------------------------------
    def evaluate(self, spec: TrialSpec) -> float:
        """``inner.evaluate(spec)``, from the cache when this (dataset, seed) was seen."""
        key = (self.config, spec.dataset_id, int(spec.seed))
        row = (
            self._connect()
            .execute(
                "SELECT value FROM evaluations WHERE config=? AND dataset_id=? AND seed=?", key
            )
            .fetchone()
        )
        if row is not None:
            self.hits += 1
            return _from_db(row[0])
        self.misses += 1
        value = float(self.inner.evaluate(spec))
        self._connect().execute(
            "INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?)", (*key, _to_db(value))
        )
        return value

    def score(self, dataset_ids: Sequence[str], seed: int, split: Split = "test") -> float:
        """``inner.score(...)``, cached by the set of ids, seed and split."""
        ids = json.dumps(sorted(dataset_ids))
        key = (self.config, ids, int(seed), str(split))
        row = (
            self._connect()
            .execute(
                "SELECT value FROM scores WHERE config=? AND dataset_ids=? AND seed=? AND split=?",
                key,
            )
            .fetchone()
        )
        if row is not None:
            self.hits += 1
            return _from_db(row[0])
        self.misses += 1
        value = float(self.inner.score(sorted(dataset_ids), seed, split))
        self._connect().execute(
            "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?)", (*key, _to_db(value))
        )
        return value

    def describe(self) -> dict[str, Any]:
        """The inner evaluator's description (a cache does not change results)."""
        return self.inner.describe()

    def __repr__(self) -> str:
        return f"CachedEvaluator({self.inner!r}, {str(self.path)!r})"


def _to_db(value: float) -> float | None:
    # SQLite has no NaN; NULL stands for it (a NaN reward is a result worth caching too).
    return None if math.isnan(value) else value


def _from_db(value: float | None) -> float:
    return float("nan") if value is None else float(value)
