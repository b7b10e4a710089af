"""Journal trust: resume in every kill window, one file, read-only reads, damage as one line."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dashsel import select
from dashsel.errors import JournalError
from dashsel.evaluators.base import Evaluator
from dashsel.hierarchy import Hierarchy
from dashsel.journal import SQLiteJournal, backup
from dashsel.pool import Pool
from dashsel.report import read_journal, replay_posterior, report_dict
from dashsel.trial import TrialSpec

GROUPS = {f"g{g}": [f"g{g}d{i}" for i in range(4)] for g in range(3)}
BASE = {d: 0.4 + 0.1 * g + 0.03 * i for g, ds in enumerate(GROUPS.values()) for i, d in
        enumerate(ds)}  # fmt: skip
KEY = ["number", "batch", "dataset_id", "seed", "pull", "reward"]


def make_pool() -> Pool:
    return Pool.replay_only(Hierarchy.from_mapping(GROUPS), name="trust")


class Snapshotting(Evaluator):
    """Rewards from BASE + seeded noise; before each evaluation it copies the live journal
    (what a SIGKILL at that moment would leave) to ``snap-<trial>.db``."""

    def __init__(self, journal: Path | None = None) -> None:
        self.journal = journal

    def evaluate(self, spec: TrialSpec) -> float:
        if self.journal is not None:
            backup(self.journal, self.journal.with_name(f"snap-{spec.number:03d}.db"))
        return BASE[spec.dataset_id] + 0.05 * float(np.random.default_rng(spec.seed).normal())

    def describe(self) -> dict[str, Any]:
        return {"kind": "snap"}

    def score(self, dataset_ids, seed, split="test") -> float:
        return 0.0


def run(journal=None, evaluator=None, batch_size=2):
    return select(make_pool(), "dash", evaluator or Snapshotting(), 9, journal=journal, seed=4,
                  batch_size=batch_size, k=2, score_final=False)  # fmt: skip


@pytest.mark.parametrize("batch_size", [2, 3])
def test_resume_equals_uninterrupted_in_every_kill_window(tmp_path, batch_size) -> None:
    reference = run(batch_size=batch_size)
    live = tmp_path / "live" / "run.db"
    live.parent.mkdir()
    same = run(live, Snapshotting(live), batch_size)
    assert same.trials[KEY].to_dict("records") == reference.trials[KEY].to_dict("records")
    snaps = sorted(live.parent.glob("snap-*.db"))
    assert len(snaps) == 9
    for snap in snaps:  # each is the journal as a kill inside that trial would leave it
        _, frame = read_journal(snap)
        running = frame[frame["state"] == "running"]
        # unfinished trials are in the window (the last batch_size trials asked) ...
        assert len(running) >= 1 and running["number"].min() >= len(frame) - batch_size
        # ... and every ask is on record whole, never half of it: batch_size trials at first,
        # then one per trial told
        sizes = frame.groupby("batch").size()
        assert list(sizes) == [batch_size] + [1] * (len(sizes) - 1)
        alone = tmp_path / snap.stem / "run.db"  # the single file, moved elsewhere
        alone.parent.mkdir()
        shutil.copy(snap, alone)
        resumed = run(alone, batch_size=batch_size)
        assert resumed.trials[KEY].to_dict("records") == reference.trials[KEY].to_dict("records")
        assert resumed.selected == reference.selected and resumed.posterior == reference.posterior
        assert resumed.n_resumed == int((frame["state"] == "complete").sum())


def only_file(path: Path) -> None:
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


def test_a_finished_or_interrupted_run_leaves_one_file(tmp_path) -> None:
    path = tmp_path / "a" / "run.db"
    res = run(path)
    only_file(path)
    other = tmp_path / "b" / "run.db"
    other.parent.mkdir()
    shutil.copy(path, other)  # copying the one file copies the whole run
    again = run(other)
    assert again.n_resumed == 9 and again.selected == res.selected

    path = tmp_path / "c" / "run.db"

    def stop(outcome):
        if outcome.spec.number == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        select(make_pool(), "dash", Snapshotting(), 9, journal=path, seed=4, callback=stop)
    only_file(path)
    assert len(read_journal(path)[1]) == 5


def test_pool_ids_stored_once_compactly(tmp_path) -> None:
    n = 100_000
    ids = [f"dataset-{i:07d}" for i in range(n)]
    h = Hierarchy(ids, [f"group-{i % 1000:04d}" for i in range(n)])
    path = tmp_path / "run.db"
    pool = {"name": "big", "fingerprint": h.fingerprint(), "dataset_ids": ids,
            "groups": list(h.groups)}  # fmt: skip
    with SQLiteJournal(path) as j:
        j.open_run({"pool": pool, "seed": 1})
    con = sqlite3.connect(path)
    header = con.execute("SELECT meta FROM run").fetchone()[0]
    con.close()
    assert len(header) < 1000 and "dataset-0000001" not in header
    as_json = len(json.dumps(ids)) + len(json.dumps(list(h.groups)))
    assert path.stat().st_size < 0.1 * as_json  # compressed, not a JSON header
    meta, _ = read_journal(path)
    assert meta["pool"]["dataset_ids"] == ids and meta["pool"]["groups"] == list(h.groups)


def test_report_opens_read_only(tmp_path) -> None:
    folder = tmp_path / "ro"
    path = folder / "run.db"
    res = run(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        meta, frame = read_journal(path)
        assert report_dict(path, meta, frame)["selected"] == list(res.selected)
        assert sorted(p.name for p in folder.iterdir()) == ["run.db"]  # nothing written beside
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)


def test_report_reads_a_live_run_and_a_killed_runs_wal(tmp_path) -> None:
    path = tmp_path / "run.db"
    with SQLiteJournal(path) as j:  # a run that holds it, mid-way
        j.open_run({"pool": {"name": "p", "fingerprint": "f"}, "seed": 0})
        j.record_starts([TrialSpec(0, "a", 1, 0), TrialSpec(1, "b", 2, 0)], batch=0)
        assert list(read_journal(path)[1]["state"]) == ["running", "running"]
        # a SIGKILL now would leave the WAL beside the file: it is part of the journal
        assert Path(f"{path}-wal").exists()
        copy = backup(path, tmp_path / "copy.db")
    assert len(read_journal(copy)[1]) == 2
    with pytest.raises(JournalError, match="exists"):
        backup(path, copy)


def test_selection_rule_is_kept(tmp_path) -> None:
    path = tmp_path / "run.db"
    res = select(make_pool(), "dash", Snapshotting(), 9, journal=path, seed=4, percentile=60.0,
                 score_final=False)  # fmt: skip
    meta, frame = read_journal(path)
    rep = report_dict(path, meta, frame)
    assert rep["selected"] == list(res.selected) and len(res.selected) > 1
    assert rep["rule"] == {"k": None, "percentile": 60.0, "source": "run", "text": "percentile 60"}
    assert replay_posterior(meta, frame)[1].datasets == res.selected
    assert report_dict(path, meta, frame, k=1)["rule"]["source"] == "asked"


# --- damage: one JournalError line, never a raw exception -------------------------------------
def read_everything(path: Path) -> None:
    meta, frame = read_journal(path)
    report_dict(path, meta, frame)
    with SQLiteJournal(path) as j:  # the resume path: writable open, header, records
        j.meta()
        j.records()


def assert_clean(path: Path) -> str | None:
    try:
        read_everything(path)
    except JournalError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(path) in msg, msg
        return msg
    return None


@pytest.fixture
def good(tmp_path) -> Path:
    path = tmp_path / "good.db"
    run(path)
    return path


def damaged(good: Path, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    shutil.copy(good, path)
    return path


def edit(path: Path, sql: str, params=()) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA ignore_check_constraints = ON")  # damage the constraints would refuse
    con.execute(sql, params)
    con.commit()
    con.close()


@pytest.mark.parametrize("cut", [100, 1000, 4096, 5000])
def test_truncated(good, tmp_path, cut) -> None:
    path = damaged(good, tmp_path, f"cut{cut}.db")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut])
    assert assert_clean(path) is not None


@pytest.mark.parametrize(
    ("sql", "match"),
    [
        ("UPDATE trials SET state = 'complXte' WHERE number = 1", "fails its check"),
        ("UPDATE trials SET reward = 0.123 WHERE number = 2", "fails its check"),
        ("UPDATE run SET meta = '{not json'", "header fails its check"),
        ("UPDATE trials SET dataset_id = CAST(X'ff00fe' AS TEXT) WHERE number = 0", "damaged"),
        ("UPDATE pool SET ids = X'00'", "pool's dataset ids"),
        ("PRAGMA user_version = 7", "schema version 7"),
        ("DROP TABLE trials", "not a dashsel journal"),
    ],
)
def test_bad_values(good, tmp_path, sql, match) -> None:
    path = damaged(good, tmp_path, "bad.db")
    edit(path, sql)
    msg = assert_clean(path)
    assert msg is not None and match in msg


def test_bad_state_with_a_matching_check_is_still_refused(good, tmp_path) -> None:
    from dashsel.journal import _row_crc

    path = damaged(good, tmp_path, "bad.db")
    con = sqlite3.connect(path)
    row = list(con.execute("SELECT * FROM trials WHERE number = 1").fetchone())
    row[6] = "complXte"
    con.execute("PRAGMA ignore_check_constraints = ON")
    con.execute("UPDATE trials SET state = ?, crc = ? WHERE number = 1",
                (row[6], _row_crc(row[:12])))  # fmt: skip
    con.commit()
    con.close()
    assert "unknown state 'complXte'" in assert_clean(path)


def test_random_byte_corruption_gives_one_line(good, tmp_path) -> None:
    data = good.read_bytes()
    rng = random.Random(10)
    outcomes = {"error": 0, "read": 0}
    for case in range(60):
        buf = bytearray(data)
        at = rng.randrange(len(buf))
        for i in range(rng.randint(1, 64)):
            if at + i < len(buf):
                buf[at + i] = rng.randrange(256)
        path = tmp_path / f"c{case}.db"
        path.write_bytes(bytes(buf))
        outcomes["error" if assert_clean(path) else "read"] += 1
    assert outcomes["error"] > 0  # damage is found, not read back as data


def test_json_header_must_be_a_table(good, tmp_path) -> None:
    path = damaged(good, tmp_path, "list.db")
    text = json.dumps([1, 2])
    edit(path, "UPDATE run SET meta = ?, crc = ?", (text, zlib.crc32(text.encode())))
    assert "not a table" in assert_clean(path)


def test_not_found_and_folder(tmp_path) -> None:
    with pytest.raises(JournalError, match="does not exist"):
        SQLiteJournal(tmp_path / "none.db", mode="read")
    os.mkdir(tmp_path / "dir.db")
    with pytest.raises(JournalError, match="is a folder"):
        read_journal(tmp_path / "dir.db")
