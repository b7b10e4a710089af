"""Journals: records, crash safety of writes, identity checks, refusing foreign files."""

from __future__ import annotations

import sqlite3

import pytest

from dashsel.errors import JournalError
from dashsel.journal import (
    IDENTITY_FIELDS,
    InMemoryJournal,
    Journal,
    SQLiteJournal,
    identity_mismatches,
)
from dashsel.report import read_journal
from dashsel.testing import JournalConformance
from dashsel.trial import TrialOutcome, TrialSpec, TrialState

META = {
    "pool": {"name": "toy", "fingerprint": "abc123"},
    "policy": {"name": "dash", "params": {"alpha": 1.0, "sigma": (0.1, 0.2)}},
    "evaluator": {"kind": "toy", "noise": 0.1},
    "seed": 3,
    "batch_size": 2,
    "budget": 10,
}


def changed(field: str, value) -> dict:
    """META with the dotted ``field`` set to ``value``."""
    meta = {k: dict(v) if isinstance(v, dict) else v for k, v in META.items()}
    head, _, tail = field.partition(".")
    if tail:
        meta[head][tail] = value
    else:
        meta[head] = value
    return meta


def spec(n: int, d: str = "a0", pull: int = 0) -> TrialSpec:
    return TrialSpec(number=n, dataset_id=d, seed=100 + n, pull=pull)


def done(s: TrialSpec, reward: float = 0.5) -> TrialOutcome:
    return TrialOutcome(s, TrialState.COMPLETE, reward, 10.0 + s.number, 11.5 + s.number)


@pytest.fixture(params=["sqlite", "memory"])
def journal(request, tmp_path) -> Journal:
    j = SQLiteJournal(tmp_path / "run.db") if request.param == "sqlite" else InMemoryJournal()
    yield j
    j.close()


def test_records_start_outcome_and_order(journal: Journal) -> None:
    assert journal.open_run(META) == []
    for n in (1, 0, 2):  # out of order on purpose: reads come back in number order
        journal.record_start(spec(n, f"a{n}"), group="a", batch=n // 2)
    journal.record_outcome(done(spec(2, "a2"), 0.25))
    journal.record_outcome(done(spec(0, "a0"), 0.75))
    failed = TrialOutcome(spec(1, "a1"), TrialState.FAILED, None, 5.0, 6.0, "ValueError: boom")
    journal.record_outcome(failed)

    assert [o.spec.number for o in journal.completed()] == [0, 2]
    assert journal.completed()[0] == done(spec(0, "a0"), 0.75)
    assert journal.pending() == [spec(1, "a1")]
    frame = journal.trials_frame()
    assert list(frame["number"]) == [0, 1, 2]
    assert list(frame["state"]) == ["complete", "failed", "complete"]
    assert list(frame["batch"]) == [0, 0, 1]
    assert frame.loc[1, "error"] == "ValueError: boom"
    assert frame.loc[0, "duration"] == pytest.approx(1.5)


def test_retry_of_failed_allowed_complete_refused(journal: Journal) -> None:
    journal.open_run(META)
    journal.record_start(spec(0))
    journal.record_outcome(TrialOutcome(spec(0), TrialState.FAILED, None, 1.0, 2.0, "X: y"))
    journal.record_start(spec(0))  # retry with the same spec
    assert journal.records()[0].state is TrialState.RUNNING
    with pytest.raises(JournalError, match="trial 0 was started as"):
        journal.record_start(spec(0, "b1"))
    journal.record_outcome(done(spec(0)))
    with pytest.raises(JournalError, match="already complete"):
        journal.record_start(spec(0))
    with pytest.raises(JournalError, match="never started"):
        journal.record_outcome(done(spec(7)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", 4),
        ("policy.params", {"alpha": 2.0, "sigma": [0.1, 0.2]}),
        ("pool.fingerprint", "zzz"),
        ("evaluator", {"kind": "toy", "noise": 0.2}),
        ("batch_size", 1),
        ("policy.name", "flat"),
    ],
)
def test_identity_mismatch_names_field(tmp_path, field: str, value) -> None:
    path = tmp_path / "run.db"
    with SQLiteJournal(path) as j:
        j.open_run(META)
    with SQLiteJournal(path) as j, pytest.raises(JournalError) as info:
        j.open_run(changed(field, value))
    msg = str(info.value)
    assert field in msg and str(path) in msg and "\n" not in msg
    assert [f for f in IDENTITY_FIELDS if f"{f}:" in msg] == [field]
    # what is not identity may change: pool name, budget
    with SQLiteJournal(path) as j:
        j.open_run(changed("pool.name", "renamed"))


def test_budget_may_change_and_tuples_equal_lists(tmp_path) -> None:
    path = tmp_path / "run.db"
    with SQLiteJournal(path) as j:
        j.open_run(META)
        j.record_start(spec(0))
        j.record_outcome(done(spec(0)))
    # sigma as a list (JSON round trip) is the same run; a larger budget continues it
    with SQLiteJournal(path) as j:
        prior = j.open_run(
            {**changed("policy.params", {"sigma": [0.1, 0.2], "alpha": 1}), "budget": 20}
        )
        assert prior == [done(spec(0))]
        assert j.meta()["budget"] == 20
        assert j.meta()["created"] == pytest.approx(read_journal(path)[0]["created"])


def test_identity_mismatches_helper() -> None:
    assert identity_mismatches(META, dict(META)) == []
    other = {**changed("policy.params", {}), "seed": 9}
    assert identity_mismatches(META, other) == ["policy.params", "seed"]


def test_writes_are_committed_immediately(tmp_path) -> None:
    # A second connection (as after a kill) sees every write without close() or commit().
    path = tmp_path / "run.db"
    j = SQLiteJournal(path)
    j.open_run(META)
    j.record_start(spec(0))
    j.record_outcome(done(spec(0)))
    j.record_start(spec(1, "b0"))
    other = sqlite3.connect(path)
    rows = other.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    assert rows == [(0, "complete"), (1, "running")]
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.records()


def test_not_sqlite_file_refused(tmp_path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, not a database\n")
    with pytest.raises(JournalError, match=r"notes\.txt is not a dashsel journal"):
        SQLiteJournal(path)
    assert path.read_text() == "hello, not a database\n"  # untouched


def test_foreign_sqlite_refused(tmp_path) -> None:
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(JournalError, match=r"other\.db is not a dashsel journal.*users"):
        SQLiteJournal(path)


def test_folder_refused(tmp_path) -> None:
    with pytest.raises(JournalError, match="is a folder"):
        SQLiteJournal(tmp_path)


def test_read_journal(tmp_path) -> None:
    path = tmp_path / "sub" / "run.db"  # folders are created
    with SQLiteJournal(path) as j:
        j.open_run(META)
        j.record_start(spec(0), group="a")
        j.record_outcome(done(spec(0), 0.9))
    meta, frame = read_journal(path)
    assert meta["seed"] == 3 and meta["policy"]["params"]["sigma"] == [0.1, 0.2]
    assert frame.to_dict("records")[0]["reward"] == 0.9
    assert frame.to_dict("records")[0]["group"] == "a"
    with pytest.raises(JournalError, match=r"missing\.db does not exist"):
        read_journal(tmp_path / "missing.db")
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(JournalError, match=r"empty\.db is empty"):
        read_journal(empty)


def test_nonfinite_meta_values_serialise(tmp_path) -> None:
    with SQLiteJournal(tmp_path / "run.db") as j:
        j.open_run(changed("policy.params", {"prior_std": float("inf")}))
        assert j.meta()["policy"]["params"] == {"prior_std": "inf"}


# --- the conformance suite on every backend --------------------------------------------------
class TestSQLiteJournalConformance(JournalConformance):
    @pytest.fixture
    def journal(self, tmp_path):
        with SQLiteJournal(tmp_path / "run.db") as j:
            yield j

    def reopen(self, journal: Journal) -> Journal:
        # the first is still open and holds the journal: a second writer would be refused
        assert isinstance(journal, SQLiteJournal)
        return SQLiteJournal(journal.path, mode="read")


class TestInMemoryJournalConformance(JournalConformance):
    @pytest.fixture
    def journal(self):
        with InMemoryJournal() as j:
            yield j


def test_the_suite_catches_a_journal_that_forgets_outcomes(tmp_path) -> None:
    class Forgetful(InMemoryJournal):
        def record_outcome(self, outcome: TrialOutcome) -> None:
            if outcome.state is TrialState.COMPLETE:
                super().record_outcome(outcome)

    suite = TestInMemoryJournalConformance()
    with pytest.raises(AssertionError):
        suite.test_records_come_back_in_number_order(Forgetful())
