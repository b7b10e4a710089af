"""Journals: a crash-safe record of a selection run, from which the run can be resumed.

A journal is storage only and knows nothing of policies (the model is Optuna's journal
backend): open or create the run header, record that a trial starts, record its outcome, read
the records back, close. What a run does with them (resuming, replaying a posterior for
``dashsel report``) lives with its users, in :mod:`dashsel.run` and :mod:`dashsel.report`.

A journal holds the run's identity (pool fingerprint, policy, evaluator, seed, batch size) and
one record per trial. The trials of a batch are written together, in one transaction, when
they are asked (state ``running``), and each outcome in its own transaction as soon as it
finishes: a killed process loses no finished trial, and a resumed run re-evaluates exactly the
trials that were asked and unfinished (see :func:`dashsel.run.select`).

:class:`SQLiteJournal` is the file backend; :class:`InMemoryJournal` keeps a run without a
file. Other backends subclass :class:`Journal` and implement its abstract methods; everything
else is derived from :meth:`Journal.records`.

Trust (see ``docs/reliability.md``):

* **One writer.** A run (``mode="run"``) holds the journal exclusively for its whole life
  through a lock file beside it (``RUN.db.lock``, removed on release); a second run or a
  ``study`` command is refused at once, naming the holder's pid and host. Study commands
  (``mode="shared"``) take the same lock for one ask or tell at a time and wait for each other.
  The lock (``flock``) and SQLite both need a local or lock-capable filesystem; on NFS-like
  storage drive a journal from one host.
* **Read-only reading.** ``mode="read"`` opens with SQLite's ``mode=ro`` (``immutable=1`` where
  even that is impossible, as in a read-only folder holding a WAL file's journal) and writes
  nothing.
* **Validated reads.** Every row carries a CRC-32 of its content and is type-checked; any
  damage (truncation, flipped bytes, foreign values, undecodable text, a malformed database
  image, another schema) is one :class:`~dashsel.errors.JournalError` naming the file.
* **One file.** A run writes in WAL mode with ``synchronous=NORMAL`` (durable against a killed
  process; a power loss may lose the last commits) and, when it ends in any way short of a
  SIGKILL, checkpoints the WAL and switches back to a rollback journal: a single
  self-contained file. After a SIGKILL, ``RUN.db-wal`` beside the file is part of the journal.
  :func:`backup` copies a journal consistently to one file at any time, even during a run.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dashsel.closeable import Closeable
from dashsel.errors import JournalError, one_line
from dashsel.jsonable import to_jsonable
from dashsel.trial import (
    TRIAL_COLUMNS,
    TrialOutcome,
    TrialRecord,
    TrialSpec,
    TrialState,
    trials_frame,
)

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
_SCHEMA_VERSION = 2
_SQLITE_HEADER = b"SQLite format 3\x00"

#: A failed trial whose error starts with this was given back (``study abandon`` or a pending
#: timeout): it spends no budget and is never evaluated again.
ABANDONED = "abandoned"

# Every row holds a CRC-32 of its content: SQLite checks its own page structure, not the
# values, and a flipped byte inside a reward would otherwise read back as another reward.
_SCHEMA = """
CREATE TABLE run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    meta TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    crc INTEGER NOT NULL
);
CREATE TABLE pool (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n INTEGER NOT NULL,
    ids BLOB NOT NULL,
    groups BLOB NOT NULL,
    crc INTEGER NOT NULL
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
    error TEXT,
    crc INTEGER NOT NULL
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

    return [
        f
        for f in IDENTITY_FIELDS
        if meta_field(stored, f) is not None
        and canon(meta_field(stored, f)) != canon(meta_field(new, f))
    ]


def adopted_fields(stored: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Identity fields the stored run leaves unset (None) and ``new`` sets.

    A study created with ``dashsel study create`` has no evaluator and no batch size; a
    ``dashsel run`` continuing it adopts its own (:func:`identity_mismatches` ignores them).
    """
    return [
        f
        for f in IDENTITY_FIELDS
        if meta_field(stored, f) is None and meta_field(new, f) is not None
    ]


def _set_field(meta: dict[str, Any], field: str, value: Any) -> None:
    *parents, last = field.split(".")
    node = meta
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def is_abandoned(record: TrialRecord) -> bool:
    """Whether a trial was given back (abandoned or timed out while pending)."""
    o = record.outcome
    return (
        record.state is TrialState.FAILED
        and o is not None
        and (o.error or "").startswith(ABANDONED)
    )


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

    def record_starts(
        self,
        specs: Sequence[TrialSpec],
        *,
        groups: Sequence[str | None] | None = None,
        batch: int = 0,
    ) -> None:
        """Record that the trials of one batch start, all or none (one transaction where the
        backend has them): a resumed run then never sees half a batch."""
        for i, spec in enumerate(specs):
            self.record_start(spec, group=None if groups is None else groups[i], batch=batch)

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
        """Specs of trials started but not completed (running, or failed and to be retried;
        abandoned trials are not pending)."""
        return [
            r.spec
            for r in self.records()
            if r.state is not TrialState.COMPLETE and not is_abandoned(r)
        ]

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
            for f in adopted_fields(self._meta, meta):
                _set_field(self._meta, f, meta_field(meta, f))
            self._meta["budget"] = _max_budget(self._meta.get("budget"), meta.get("budget"))
            for key in ("selection", "near_copies"):  # as SQLiteJournal.open_run
                if key in meta:
                    self._meta[key] = meta[key]
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


class JournalBusyError(JournalError):
    """The journal is held by another process (a live run, or a study command)."""


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


class JournalLock:
    """An exclusive lock on a journal, through ``flock`` on a file beside it (``RUN.db.lock``).

    The file holds one line naming the holder (``run pid 123 on host since ...``), read by
    whoever is refused. The operating system releases the lock when its holder dies (a SIGKILL
    leaves no stale lock); the file is removed on release, and a waiter that locked a file
    removed meanwhile tries again, so exactly one process holds the lock at a time.

    Parameters
    ----------
    path : Path
        The journal file.
    kind : {"run", "study"}
        A ``run`` holds the journal for its whole life: others are refused at once. A
        ``study`` command holds it for one ask or tell: other study commands wait for it (up
        to ``wait`` seconds), a run is refused.
    """

    #: Seconds a run waits for a study command's short lock before it is refused.
    RUN_WAIT = 5.0

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.lock_path = _lock_path(path)
        self.kind = kind
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no flock; one writer is the user's job
            return
        deadline = time.monotonic() + wait
        delay = 0.002
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise JournalError(
                    f"journal {self.path}: cannot create its lock file {self.lock_path} "
                    f"({exc.strerror})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                holder = self._holder()
                # A run holds for hours: refuse at once. A study command holds for
                # milliseconds: wait for it (a run waits too, up to RUN_WAIT seconds).
                if holder.startswith("run") or time.monotonic() > deadline:
                    raise JournalBusyError(
                        f"journal {self.path} is in use by {holder or 'another process'}; "
                        "wait for it to finish or use another journal"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released and removed while we waited: lock the new file
                os.close(fd)
                continue
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            text = f"{self.kind} pid {os.getpid()} on {socket.gethostname()} since {stamp}\n"
            os.ftruncate(fd, 0)
            os.write(fd, text.encode())
            self._fd = fd
            return

    def _holder(self) -> str:
        try:
            with open(self.lock_path, encoding="utf-8", errors="replace") as fh:
                return one_line(fh.read(), 200)
        except OSError:
            return ""

    def release(self) -> None:
        if self._fd is None:
            return
        with suppress(OSError):
            os.unlink(self.lock_path)
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


class SQLiteJournal(Journal):
    """A journal in one SQLite file.

    Parameters
    ----------
    path : str or Path
        The journal file; created (with its folder) if missing, except in ``"read"`` mode. An
        existing file must be a dashsel journal, else :class:`~dashsel.errors.JournalError`
        names it.
    mode : {"run", "shared", "read"}, default "run"
        ``"run"``: hold the journal exclusively until :meth:`close` (WAL, ``synchronous=
        NORMAL``; one self-contained file again after close). ``"shared"``: for ``study``
        commands: writes happen inside :meth:`transaction`, which holds the lock only that
        long. ``"read"``: read-only, no lock, works on a read-only file in a read-only folder.
    check : bool, default True
        Run SQLite's ``quick_check`` on open (one pass over the file).

    Notes
    -----
    ``synchronous=NORMAL`` in WAL mode makes every commit durable against a killed process,
    which is what resuming needs; a power loss or OS crash may lose the last commits (never
    corrupt the file). The trials of a batch are one transaction, each outcome another.
    """

    def __init__(self, path: str | Path, *, mode: str = "run", check: bool = True) -> None:
        if mode not in ("run", "shared", "read"):
            raise ValueError(f"mode must be 'run', 'shared' or 'read', not {mode!r}")
        self.path = Path(path)
        self.location = str(self.path)
        self.mode = mode
        self._conn: sqlite3.Connection | None = None
        self._pool_cache: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        # (batch, group) of the trials this object started: an outcome needs no read first
        self._started: dict[int, tuple[int, str | None]] = {}
        self._lock = JournalLock(self.path, "run" if mode == "run" else "study")
        _check_sqlite_header(self.path)
        if mode == "read":
            if not self.path.is_file():
                raise JournalError(f"journal {self.path} does not exist")
            self._conn = self._open_read_only(check)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"journal {self.path}: cannot create its folder ({exc})") from None
        if mode == "run":
            self._lock.acquire(wait=JournalLock.RUN_WAIT)
        try:
            self._conn = self._open_writable(check)
        except BaseException:
            self._lock.release()
            raise

    # --- connection ------------------------------------------------------------------------
    def _connect(self, target: str, uri: bool) -> sqlite3.Connection:
        try:
            # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE).
            conn = sqlite3.connect(target, uri=uri, isolation_level=None, timeout=30.0)
        except _DB_ERRORS as exc:
            raise JournalError(f"journal {self.path}: cannot open ({one_line(exc)})") from None
        conn.row_factory = sqlite3.Row
        return conn

    def _open_writable(self, check: bool) -> sqlite3.Connection:
        conn = self._connect(str(self.path), uri=False)
        try:
            if self.mode == "run":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            else:
                # short-lived study commands: a rollback journal, so nothing lingers beside
                # the file (a WAL left by a killed run is checkpointed into it here)
                with self.transaction_lock():
                    conn.execute("PRAGMA journal_mode=DELETE")
            _init_or_check_schema(conn, self.path, self.mode, check)
        except _DB_ERRORS as exc:
            conn.close()
            raise _damaged(self.path, exc) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_read_only(self, check: bool) -> sqlite3.Connection:
        uri = self.path.resolve().as_uri()
        last: Exception | None = None
        # mode=ro sees a live run's WAL; immutable=1 opens what mode=ro cannot (a read-only
        # folder holding a WAL-mode file) and reads the main file only.
        for query in ("?mode=ro", "?immutable=1"):
            conn = self._connect(uri + query, uri=True)
            try:
                _init_or_check_schema(conn, self.path, "read", check)
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                last = exc
                if "malformed" in str(exc) or "not a database" in str(exc):
                    break
            except ValueError as exc:  # undecodable text in the schema
                conn.close()
                last = exc
                break
            except _DB_ERRORS as exc:
                conn.close()
                last = exc
                break
            except BaseException:
                conn.close()
                raise
        raise _damaged(self.path, last) from None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError(f"journal {self.path} is closed")
        return self._conn

    def close(self) -> None:
        """Close; a run's journal becomes one self-contained file (WAL checkpointed)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                if self.mode == "run":
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    conn.execute("PRAGMA journal_mode=DELETE")
            except _DB_ERRORS:
                pass  # a reader holds the WAL open: the -wal file stays, still consistent
            finally:
                conn.close()
        self._lock.release()

    @contextmanager
    def transaction_lock(self) -> Iterator[None]:
        """Hold the journal's lock for the block (a no-op where it is already held)."""
        if self._lock.held or self.mode != "shared":
            yield
            return
        self._lock.acquire(wait=60.0)
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic read-modify-write: the lock (shared mode) and ``BEGIN IMMEDIATE``.

        Journal writes inside the block join the transaction; all of them commit at the end,
        or none if the block raises.
        """
        if self.mode == "read":
            raise JournalError(f"journal {self.path} is open read-only")
        with self.transaction_lock():
            conn = self.conn
            if conn.in_transaction:
                yield
                return
            self._exec("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._exec("COMMIT")

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except _DB_ERRORS as exc:
            raise _damaged(self.path, exc) from None

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except _DB_ERRORS as exc:
            raise _damaged(self.path, exc) from None

    def _writable(self) -> None:
        if self.mode == "read":
            raise JournalError(f"journal {self.path} is open read-only")

    # --- run -------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        meta = self.header()
        pool = self.pool_structure() if meta else None
        if pool is not None and isinstance(meta.get("pool"), dict):
            meta["pool"]["dataset_ids"] = list(pool[0])
            meta["pool"]["groups"] = list(pool[1])
        return meta

    def header(self) -> dict[str, Any]:
        """The run's metadata without the pool's dataset ids and groups (see
        :meth:`pool_structure`): cheap to read however large the pool."""
        rows = self._fetch("SELECT meta, crc FROM run WHERE id = 1")
        if not rows:
            return {}
        text = rows[0]["meta"]
        if not isinstance(text, str) or zlib.crc32(text.encode()) != rows[0]["crc"]:
            raise JournalError(f"journal {self.path} is damaged: the run header fails its check")
        try:
            meta = json.loads(text)
        except ValueError:
            raise JournalError(
                f"journal {self.path} is damaged: the run header is not JSON"
            ) from None
        if not isinstance(meta, dict):
            raise JournalError(f"journal {self.path} is damaged: the run header is not a table")
        return meta

    def pool_structure(self) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The pool's dataset ids and their groups, as stored once (compressed) at the start
        of the run; None when the run header gave none."""
        if self._pool_cache is None:
            rows = self._fetch("SELECT n, ids, groups, crc FROM pool WHERE id = 1")
            if not rows:
                return None
            self._pool_cache = _decode_pool(self.path, rows[0])
        return self._pool_cache

    def _write_meta(self, meta: dict[str, Any], *, insert: bool) -> None:
        now = time.time()
        text = json.dumps(meta, sort_keys=True)
        if insert:
            self._exec(
                "INSERT INTO run (id, meta, created, updated, crc) VALUES (1, ?, ?, ?, ?)",
                (text, now, now, zlib.crc32(text.encode())),
            )
        else:
            self._exec(
                "UPDATE run SET meta = ?, updated = ?, crc = ? WHERE id = 1",
                (text, now, zlib.crc32(text.encode())),
            )

    def open_run(self, meta: Mapping[str, Any]) -> list[TrialOutcome]:
        meta = to_jsonable(dict(meta))
        pool = meta.get("pool")
        ids = groups = None
        if isinstance(pool, dict):
            # stored once, compressed, in their own table: not an 18 MiB JSON header
            pool = dict(pool)
            ids, groups = pool.pop("dataset_ids", None), pool.pop("groups", None)
            meta["pool"] = pool
        stored = self.meta()
        if stored:
            self._check_identity(stored, meta)
            changed = False
            for f in adopted_fields(stored, meta):
                _set_field(stored, f, meta_field(meta, f))
                changed = True
            budget = _max_budget(stored.get("budget"), meta.get("budget"))
            if budget != stored.get("budget"):
                stored["budget"] = budget
                changed = True
            # the latest run's selection rule and near-copies are those a report applies
            for key in ("selection", "near_copies"):
                if key in meta and meta[key] != stored.get(key):
                    stored[key] = meta[key]
                    changed = True
            if changed:
                self._writable()
                if isinstance(stored.get("pool"), dict):
                    stored["pool"].pop("dataset_ids", None)
                    stored["pool"].pop("groups", None)
                with self.transaction():
                    self._write_meta(stored, insert=False)
        else:
            self._writable()
            meta.setdefault("created", time.time())
            with self.transaction():
                if self.meta():  # another study process created it meanwhile
                    raise JournalError(f"journal {self.path} already holds a run")
                self._write_meta(meta, insert=True)
                if ids is not None and groups is not None:
                    self._write_pool([str(d) for d in ids], [str(g) for g in groups])
        return self.completed()

    def _write_pool(self, ids: Sequence[str], groups: Sequence[str]) -> None:
        blob_ids = zlib.compress("\n".join(ids).encode(), 6)
        blob_groups = zlib.compress("\n".join(groups).encode(), 6)
        self._exec(
            "INSERT INTO pool (id, n, ids, groups, crc) VALUES (1, ?, ?, ?, ?)",
            (len(ids), blob_ids, blob_groups, zlib.crc32(blob_groups, zlib.crc32(blob_ids))),
        )
        self._pool_cache = (tuple(ids), tuple(groups))

    # --- trials ----------------------------------------------------------------------------
    def record(self, number: int) -> TrialRecord | None:
        """The trial numbered ``number`` (None if there is none)."""
        rows = self._fetch("SELECT * FROM trials WHERE number = ?", (int(number),))
        return None if not rows else _record_from_row(rows[0], self.path)

    _record = record

    def record_start(self, spec: TrialSpec, *, group: str | None = None, batch: int = 0) -> None:
        self.record_starts([spec], groups=[group], batch=batch)

    def record_starts(
        self,
        specs: Sequence[TrialSpec],
        *,
        groups: Sequence[str | None] | None = None,
        batch: int = 0,
    ) -> None:
        self._writable()
        now = time.time()
        rows = []
        for i, spec in enumerate(specs):
            values = (
                int(spec.number),
                int(batch),
                str(spec.dataset_id),
                None if groups is None or groups[i] is None else str(groups[i]),
                int(spec.seed),
                int(spec.pull),
                "running",
                None,
                now,
                None,
                None,
                None,
            )
            rows.append((*values, _row_crc(values)))
        insert = (
            'INSERT INTO trials (number, batch, dataset_id, "group", seed, pull, state, reward, '
            "started, finished, duration, error, crc) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        conn = self.conn
        if self.mode == "run" and not conn.in_transaction:
            # The fast path of a run (it holds the lock): new trials need no read first, and a
            # single INSERT is its own atomic transaction.
            try:
                if len(rows) == 1:
                    conn.execute(insert, rows[0])
                else:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.executemany(insert, rows)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
            except sqlite3.IntegrityError:
                pass  # some are on record already (a retry or a resume): checked below
            except _DB_ERRORS as exc:
                raise _damaged(self.path, exc) from None
            else:
                self._started.update({r[0]: (r[1], r[3]) for r in rows})
                return
        with self.transaction():
            for spec, row in zip(specs, rows, strict=True):
                self._check_start(self.record(spec.number), spec)
                self._exec(insert.replace("INSERT", "INSERT OR REPLACE", 1), row)
        self._started.update({r[0]: (r[1], r[3]) for r in rows})

    def record_outcome(self, outcome: TrialOutcome) -> None:
        self._writable()
        spec = outcome.spec
        known = self._started.get(spec.number)
        if known is None:  # started by another process (a study): read where it sits
            rec = self.record(spec.number)
            if rec is None or rec.spec != spec:
                raise JournalError(
                    f"journal {self.path}: outcome for trial {spec.number} that was never "
                    f"started as {spec}"
                )
            known = (rec.batch, rec.group)
        reward = None if outcome.reward is None else float(outcome.reward)
        error = None if outcome.error is None else str(outcome.error)
        values = (
            int(spec.number),
            int(known[0]),
            spec.dataset_id,
            known[1],
            int(spec.seed),
            int(spec.pull),
            str(outcome.state),
            reward,
            float(outcome.started),
            float(outcome.finished),
            float(outcome.finished) - float(outcome.started),
            error,
        )
        # One UPDATE: atomic on its own; it matches only the trial started with this spec.
        cur = self._exec(
            "UPDATE trials SET state = ?, reward = ?, started = ?, finished = ?, duration = ?, "
            "error = ?, crc = ? WHERE number = ? AND dataset_id = ? AND seed = ? AND pull = ? "
            'AND batch = ? AND "group" IS ?',
            (
                *values[6:],
                _row_crc(values),
                spec.number,
                spec.dataset_id,
                int(spec.seed),
                int(spec.pull),
                int(known[0]),
                known[1],
            ),
        )
        if cur.rowcount != 1:
            self._started.pop(spec.number, None)
            raise JournalError(
                f"journal {self.path}: outcome for trial {spec.number} that was never "
                f"started as {spec}"
            )

    def records(self) -> list[TrialRecord]:
        rows = self._fetch("SELECT * FROM trials ORDER BY number")
        return [_record_from_row(r, self.path) for r in rows]


def _row_crc(values: Sequence[Any]) -> int:
    # repr() of a float round-trips exactly, and SQLite stores REAL as the same double.
    return zlib.crc32(repr(tuple(values)).encode("utf-8", "surrogatepass"))


#: What reading a damaged file can raise from the sqlite3 module: its own errors, and
#: UnicodeDecodeError (a ValueError) for undecodable text in the schema.
_DB_ERRORS = (sqlite3.Error, ValueError, OverflowError)


def _damaged(path: Path, exc: BaseException | None) -> JournalError:
    text = one_line(exc) if exc is not None else "unreadable"
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return JournalBusyError(f"journal {path} is busy ({text}); try again")
    if "not a database" in text or "malformed" in text or "decode" in text.lower():
        return JournalError(f"journal {path} is damaged ({text})")
    if "readonly" in text or "read-only" in text:
        return JournalError(f"journal {path} cannot be written ({text})")
    return JournalError(f"journal {path} cannot be read ({text})")


def _decode_pool(path: Path, row: sqlite3.Row) -> tuple[tuple[str, ...], tuple[str, ...]]:
    blob_ids, blob_groups, n = row["ids"], row["groups"], row["n"]
    bad = JournalError(f"journal {path} is damaged: the pool's dataset ids fail their check")
    if not isinstance(blob_ids, bytes) or not isinstance(blob_groups, bytes):
        raise bad
    if zlib.crc32(blob_groups, zlib.crc32(blob_ids)) != row["crc"]:
        raise bad
    try:
        ids = tuple(zlib.decompress(blob_ids).decode().split("\n"))
        groups = tuple(zlib.decompress(blob_groups).decode().split("\n"))
    except (zlib.error, UnicodeDecodeError):
        raise bad from None
    if len(ids) != n or len(groups) != n:
        raise bad
    return ids, groups


def _record_from_row(row: sqlite3.Row, path: Path) -> TrialRecord:
    """A validated record: any damage is one JournalError naming the file and the trial."""
    try:
        values = tuple(row[c] for c in TRIAL_COLUMNS)
        crc = row["crc"]
    except (IndexError, KeyError):
        raise JournalError(f"journal {path} is damaged: a trial row lacks columns") from None
    number = values[0]
    where = f"journal {path} is damaged: trial {number!r}"
    if _row_crc(values) != crc:
        raise JournalError(f"{where} fails its check (its row was changed or corrupted)")
    (number, batch, dataset_id, group, seed, pull, state_text, reward) = values[:8]
    started, finished, _duration, error = values[8:]
    ints = (number, batch, seed, pull)
    if (
        not all(isinstance(v, int) and not isinstance(v, bool) for v in ints)
        or min(number, batch, pull) < 0
    ):
        raise JournalError(f"{where} has a bad number, batch, seed or pull")
    if not isinstance(dataset_id, str) or not dataset_id:
        raise JournalError(f"{where} has a bad dataset id")
    if group is not None and not isinstance(group, str):
        raise JournalError(f"{where} has a bad group")
    try:
        state = TrialState(state_text)
    except ValueError:
        raise JournalError(
            f"{where} has an unknown state {one_line(repr(state_text), 40)}"
        ) from None
    if not _finite(started):
        raise JournalError(f"{where} has a bad start time")
    if state is TrialState.COMPLETE and not _finite(reward):
        raise JournalError(f"{where} is complete without a finite reward")
    if state is not TrialState.RUNNING and not _finite(finished):
        raise JournalError(f"{where} has a bad finish time")
    if error is not None and not isinstance(error, str):
        raise JournalError(f"{where} has a bad error text")
    spec = TrialSpec(number=number, dataset_id=dataset_id, seed=seed, pull=pull)
    outcome = None
    if state is not TrialState.RUNNING:
        outcome = TrialOutcome(
            spec=spec,
            state=state,
            reward=None if reward is None else float(reward),
            started=float(started),
            finished=float(finished),
            error=error,
        )
    return TrialRecord(
        spec=spec, batch=batch, group=group, state=state, started=float(started), outcome=outcome
    )


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


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


def _init_or_check_schema(conn: sqlite3.Connection, path: Path, mode: str, check: bool) -> None:
    tables = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    }
    if not tables and mode != "read":
        conn.execute("BEGIN IMMEDIATE")
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if not tables:  # statement by statement: executescript() would commit
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id != _APPLICATION_ID or not {"run", "trials"} <= tables:
        raise JournalError(
            f"{path} is not a dashsel journal (an SQLite database with tables "
            f"{', '.join(sorted(tables)) or 'none'})"
        )
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version != _SCHEMA_VERSION:
        raise JournalError(
            f"journal {path} has schema version {version}; this dashsel reads version "
            f"{_SCHEMA_VERSION}"
        )
    if check:
        _check_integrity(conn, path)


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """SQLite's own structural check, plus a truncation check SQLite does not make (it reads
    missing pages of a truncated file as zeros)."""
    problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)").fetchall()]
    if problems != ["ok"]:
        raise JournalError(f"journal {path} is damaged ({one_line('; '.join(map(str, problems)))})")
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        actual = os.path.getsize(path)
        if actual < pages * size:
            raise JournalError(
                f"journal {path} is damaged: truncated ({actual} bytes, its header says "
                f"{pages * size})"
            )


def backup(source: str | Path, target: str | Path) -> Path:
    """Copy a journal to one self-contained file, consistently, even while a run writes it.

    Uses SQLite's online backup API (the copy includes what is still in the source's WAL)
    and validates the source first. ``target`` must not exist.

    Returns
    -------
    Path
        ``target``.
    """
    target = Path(target)
    if target.exists():
        raise JournalError(f"backup target {target} exists; give a new file")
    with SQLiteJournal(source, mode="read") as src:
        src.meta()
        src.records()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            dst = sqlite3.connect(target)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"backup target {target}: cannot create ({one_line(exc)})") from None
        try:
            src.conn.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        except _DB_ERRORS as exc:
            dst.close()
            target.unlink(missing_ok=True)
            raise _damaged(Path(source), exc) from None
        dst.close()
    return target


def open_journal(journal: str | Path | Journal | None) -> tuple[Journal, bool]:
    """A journal for ``select``'s argument, and whether the caller owns (must close) it."""
    if journal is None:
        return InMemoryJournal(), True
    if isinstance(journal, Journal):
        return journal, False
    if isinstance(journal, (str, Path)):
        return SQLiteJournal(journal, mode="run"), True
    raise TypeError(f"journal must be a path, a Journal or None, not {type(journal).__name__}")
