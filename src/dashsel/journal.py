"""Journals: a crash-safe record of a selection run, from which the run can be resumed.

A journal is storage only and knows nothing of policies (the model is Optuna's journal
backend): open or create the run header, record that a trial starts, record its outcome, read
the records back, close. What a run does with them (resuming, replaying a posterior for
``dashsel report``) lives with its users, in :mod:`dashsel.run` and :mod:`dashsel.report`.

A journal holds the run's identity (pool fingerprint, policy, evaluator, seed, batch size) and
one record per trial. A trial is written when it starts (state ``running``) and updated when it
finishes; every write is its own committed transaction, so a killed process loses nothing that
had finished. Resuming reads the journal back (see :func:`dashsel.run.select`).

:class:`SQLiteJournal` is the file backend (SQLite in WAL mode); :class:`InMemoryJournal` keeps
a run without a file. Other backends subclass :class:`Journal` and implement its abstract
methods; everything else is derived from :meth:`Journal.records`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dashsel.closeable import Closeable
from dashsel.errors import JournalError, one_line
from dashsel.jsonable import to_jsonable
from dashsel.trial import TrialOutcome, TrialRecord, TrialSpec, TrialState, trials_frame

if TYPE_CHECKING:
    import pandas as pd

#: Metadata fields (dotted paths into the metadata) that define a run. Resuming with any of them
#: different is refused; the rest (budget, pool name, created time, version) may differ, so a
#: larger budget continues a run.
IDENTITY_FIELDS: tuple[str, ...] = (
    "pool.fingerprint",
    "policy.name",
    "policy.params",
    "evaluator",
    "seed",
    "batch_size",
)

# 'DSH1' as a big-endian int: marks the SQLite file as a dashsel journal (PRAGMA application_id).
_APPLICATION_ID = 0x44534831
_SCHEMA_VERSION = 1
_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    meta TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE trials (
    number INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL,
    dataset_id TEXT NOT NULL,
    "group" TEXT,
    seed INTEGER NOT NULL,
    pull INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'complete', 'failed')),
    reward REAL,
    started REAL NOT NULL,
    finished REAL,
    duration REAL,
    error TEXT
);
"""


def meta_field(meta: Mapping[str, Any], field: str) -> Any:
    """The value at a dotted path such as ``"policy.params"`` (None where missing)."""
    value: Any = meta
    for part in field.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def identity_mismatches(stored: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Identity fields whose values differ between two run metadata dicts."""

    # Compared as JSON values: a tuple equals the list a JSON round trip makes of it, and 1
    # equals 1.0 (Python equality), as a policy treats them alike.
    def canon(v: Any) -> Any:
        return json.loads(json.dumps(to_jsonable(v)))

    return [f for f in IDENTITY_FIELDS if canon(meta_field(stored, f)) != canon(meta_field(new, f))]


class Journal(Closeable, ABC):
    """Where a run's metadata and trials are recorded.

    Backends implement :meth:`open_run`, :meth:`record_start`, :meth:`record_outcome`,
    :meth:`records`, :meth:`meta` and :meth:`close`. Writes must be durable when they return.
    """

    #: Shown in error messages (a path for file journals).
    location: str = "<journal>"

    @abstractmethod
    def open_run(self, meta: Mapping[str, Any]) -> list[TrialOutcome]:
        """Start a run, or check that ``meta`` continues the run already recorded.

        Returns the completed outcomes in trial-number order (empty for a new run). Raises
        :class:`~dashsel.errors.JournalError` naming the differing fields when the journal
        holds a run with another identity (see :data:`IDENTITY_FIELDS`).
        """

    @abstractmethod
    def record_start(self, spec: TrialSpec, *, group: str | None = None, batch: int = 0) -> None:
        """Record that a trial starts (state ``running``).

        Starting a trial that is recorded as running or failed with the same spec (a retry)
        is allowed; starting one recorded as complete, or with a different spec, is a
        :class:`~dashsel.errors.JournalError`.
        """

    @abstractmethod
    def record_outcome(self, outcome: TrialOutcome) -> None:
        """Record how a started trial finished (complete or failed)."""

    @abstractmethod
    def records(self) -> list[TrialRecord]:
        """Every started trial, in number order."""

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """The run's metadata ({} before :meth:`open_run`)."""

    # --- derived ---------------------------------------------------------------------------
    def completed(self) -> list[TrialOutcome]:
        """Outcomes of the complete trials, in number order."""
        return [
            r.outcome
            for r in self.records()
            if r.state is TrialState.COMPLETE and r.outcome is not None
        ]

    def pending(self) -> list[TrialSpec]:
        """Specs of trials started but not completed (running, or failed and to be retried)."""
        return [r.spec for r in self.records() if r.state is not TrialState.COMPLETE]

    def trials_frame(self) -> pd.DataFrame:
        """Every started trial as a DataFrame with :data:`~dashsel.trial.TRIAL_COLUMNS`."""
        return trials_frame(self.records())

    # --- shared checks ---------------------------------------------------------------------
    def _check_start(self, existing: TrialRecord | None, spec: TrialSpec) -> None:
        if existing is None:
            return
        if existing.state is TrialState.COMPLETE:
            raise JournalError(
                f"journal {self.location}: trial {spec.number} (dataset "
                f"{existing.spec.dataset_id!r}) is already complete and is never repeated"
            )
        if existing.spec != spec:
            raise JournalError(
                f"journal {self.location}: trial {spec.number} was started as {existing.spec}, "
                f"not {spec}"
            )

    def _check_identity(self, stored: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        bad = identity_mismatches(stored, meta)
        if bad:
            detail = "; ".join(
                f"{f}: journal has {_short(meta_field(stored, f))}, "
                f"this run has {_short(meta_field(meta, f))}"
                for f in bad
            )
            raise JournalError(
                f"journal {self.location} belongs to a different run ({', '.join(bad)} differ"
                f" — {detail}); use another journal file or the original settings"
            )


def _short(value: Any) -> str:
    return one_line(json.dumps(to_jsonable(value), sort_keys=True), 200)


def _max_budget(stored: Any, new: Any) -> Any:
    # The journal keeps the largest budget asked for: a call refused for a budget below the
    # trials already run must not shrink it.
    if isinstance(stored, int) and isinstance(new, int):
        return max(stored, new)
    return new if new is not None else stored


def _outcome_from_row(spec: TrialSpec, state: TrialState, row: Mapping[str, Any]):
    if state is TrialState.RUNNING:
        return None
    return TrialOutcome(
        spec=spec,
        state=state,
        reward=row["reward"],
        started=row["started"],
        finished=row["finished"] if row["finished"] is not None else row["started"],
        error=row["error"],
    )


class InMemoryJournal(Journal):
    """A journal that lives only as long as the process (the default of :func:`select`)."""

    location = "<memory>"

    def __init__(self) -> None:
        self._meta: dict[str, Any] = {}
        self._records: dict[int, TrialRecord] = {}

    def open_run(self, meta: Mapping[str, Any]) -> list[TrialOutcome]:
        meta = to_jsonable(dict(meta))
        if self._meta:
            self._check_identity(self._meta, meta)
            self._meta["budget"] = _max_budget(self._meta.get("budget"), meta.get("budget"))
        else:
            self._meta = {**meta, "created": meta.get("created", time.time())}
        return self.completed()

    def record_start(self, spec: TrialSpec, *, group: str | None = None, batch: int = 0) -> None:
        self._check_start(self._records.get(spec.number), spec)
        self._records[spec.number] = TrialRecord(
            spec, int(batch), group, TrialState.RUNNING, time.time()
        )

    def record_outcome(self, outcome: TrialOutcome) -> None:
        rec = self._records.get(outcome.spec.number)
        if rec is None or rec.spec != outcome.spec:
            raise JournalError(
                f"journal {self.location}: outcome for trial {outcome.spec.number} that was "
                f"never started as {outcome.spec}"
            )
        self._records[outcome.spec.number] = TrialRecord(
            rec.spec, rec.batch, rec.group, outcome.state, outcome.started, outcome
        )

    def records(self) -> list[TrialRecord]:
        return [self._records[n] for n in sorted(self._records)]

    def meta(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._meta))  # a copy the caller may change


class SQLiteJournal(Journal):
    """A journal in one SQLite file (WAL mode, one committed transaction per write).

    Parameters
    ----------
    path : str or Path
        The journal file; created (with its folder) if missing. An existing file must be a
        dashsel journal, else :class:`~dashsel.errors.JournalError` names it.

    Notes
    -----
    One process writes a journal at a time; readers (``dashsel report``) may read it while a
    run writes. ``synchronous=FULL`` makes each commit durable against power loss too: a
    trial's cost dwarfs an fsync.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._conn: sqlite3.Connection | None = None
        _check_sqlite_header(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: autocommit, so every statement below is committed at once.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: cannot open ({exc})") from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            _init_or_check_schema(conn, self.path)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise JournalError(f"{self.path} is not a dashsel journal ({exc})") from None
        except JournalError:
            conn.close()
            raise
        self._conn = conn

    # --- connection ------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError(f"journal {self.path} is closed")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- run -------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        row = self.conn.execute("SELECT meta FROM run WHERE id = 1").fetchone()
        return {} if row is None else json.loads(row["meta"])

    def open_run(self, meta: Mapping[str, Any]) -> list[TrialOutcome]:
        meta = to_jsonable(dict(meta))
        now = time.time()
        stored = self.meta()
        if stored:
            self._check_identity(stored, meta)
            budget = _max_budget(stored.get("budget"), meta.get("budget"))
            if budget != stored.get("budget"):
                stored["budget"] = budget
                self.conn.execute(
                    "UPDATE run SET meta = ?, updated = ? WHERE id = 1",
                    (json.dumps(stored, sort_keys=True), now),
                )
        else:
            meta.setdefault("created", now)
            self.conn.execute(
                "INSERT INTO run (id, meta, created, updated) VALUES (1, ?, ?, ?)",
                (json.dumps(meta, sort_keys=True), now, now),
            )
        return self.completed()

    # --- trials ----------------------------------------------------------------------------
    def _record(self, number: int) -> TrialRecord | None:
        row = self.conn.execute("SELECT * FROM trials WHERE number = ?", (number,)).fetchone()
        return None if row is None else _record_from_row(row)

    def record_start(self, spec: TrialSpec, *, group: str | None = None, batch: int = 0) -> None:
        self._check_start(self._record(spec.number), spec)
        self.conn.execute(
            'INSERT OR REPLACE INTO trials (number, batch, dataset_id, "group", seed, pull, '
            "state, reward, started, finished, duration, error) "
            "VALUES (?, ?, ?, ?, ?, ?, 'running', NULL, ?, NULL, NULL, NULL)",
            (
                spec.number,
                int(batch),
                spec.dataset_id,
                group,
                int(spec.seed),
                int(spec.pull),
                time.time(),
            ),
        )

    def record_outcome(self, outcome: TrialOutcome) -> None:
        spec = outcome.spec
        cur = self.conn.execute(
            "UPDATE trials SET state = ?, reward = ?, started = ?, finished = ?, duration = ?, "
            "error = ? WHERE number = ? AND dataset_id = ? AND seed = ? AND pull = ?",
            (
                str(outcome.state),
                outcome.reward,
                outcome.started,
                outcome.finished,
                outcome.duration,
                outcome.error,
                spec.number,
                spec.dataset_id,
                int(spec.seed),
                int(spec.pull),
            ),
        )
        if cur.rowcount != 1:
            raise JournalError(
                f"journal {self.path}: outcome for trial {spec.number} that was never "
                f"started as {spec}"
            )

    def records(self) -> list[TrialRecord]:
        rows = self.conn.execute("SELECT * FROM trials ORDER BY number").fetchall()
        return [_record_from_row(r) for r in rows]


def _record_from_row(row: sqlite3.Row) -> TrialRecord:
    spec = TrialSpec(
        number=int(row["number"]),
        dataset_id=row["dataset_id"],
        seed=int(row["seed"]),
        pull=int(row["pull"]),
    )
    state = TrialState(row["state"])
    return TrialRecord(
        spec=spec,
        batch=int(row["batch"]),
        group=row["group"],
        state=state,
        started=row["started"],
        outcome=_outcome_from_row(spec, state, row),
    )


def _check_sqlite_header(path: Path) -> None:
    """Refuse a file that is not SQLite before sqlite3 touches it (it would not fail until
    the first query, and WAL mode could leave side files next to the user's file)."""
    if not path.exists():
        return
    if path.is_dir():
        raise JournalError(f"{path} is a folder, not a dashsel journal")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise JournalError(f"journal {path}: cannot read ({exc.strerror})") from None
    if head and head != _SQLITE_HEADER:
        raise JournalError(f"{path} is not a dashsel journal (not an SQLite file)")


def _init_or_check_schema(conn: sqlite3.Connection, path: Path) -> None:
    tables = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    }
    if not tables:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # statement by statement: executescript() would commit the open transaction
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id != _APPLICATION_ID or not {"run", "trials"} <= tables:
        raise JournalError(
            f"{path} is not a dashsel journal (an SQLite database with tables "
            f"{', '.join(sorted(tables))})"
        )
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version != _SCHEMA_VERSION:
        raise JournalError(
            f"journal {path} has schema version {version}; this dashsel reads version "
            f"{_SCHEMA_VERSION}"
        )


def open_journal(journal: str | Path | Journal | None) -> tuple[Journal, bool]:
    """A journal for ``select``'s argument, and whether the caller owns (must close) it."""
    if journal is None:
        return InMemoryJournal(), True
    if isinstance(journal, Journal):
        return journal, False
    if isinstance(journal, (str, Path)):
        return SQLiteJournal(journal), True
    raise TypeError(f"journal must be a path, a Journal or None, not {type(journal).__name__}")
