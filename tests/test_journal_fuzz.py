"""Property-based damage of journal files: no raw traceback from open, read, report or study.

Each case takes a good journal (a finished run, and a study with pending trials), truncates it
or overwrites bytes at random places, and drives everything that reads a journal: the reader of
``dashsel report`` (read-only), the writable open a resume makes (header, records, identity
check), and the study calls. Every outcome must be a clean read or one
:class:`~dashsel.errors.DashselError` line; anything else is a bug.

The journals are compact (no free pages), so every byte hit belongs to a page in use: the
header, the schema, the run header, the pool's ids, the trials and their indexes.

Profiles: a small one in ``make test``; ``DASHSEL_FUZZ=full`` (``make fuzz``) runs 1,500 cases
per test with a fixed seed (derandomized) in a few minutes::

    DASHSEL_FUZZ=full python -m pytest -p no:xdist -q tests/test_journal_fuzz.py
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashsel import Study, select
from dashsel.errors import DashselError
from dashsel.evaluators.base import Evaluator
from dashsel.hierarchy import Hierarchy
from dashsel.journal import SQLiteJournal
from dashsel.pool import Pool
from dashsel.report import read_journal, report_dict
from dashsel.study import BudgetSpent
from dashsel.trial import TrialSpec

FULL = os.environ.get("DASHSEL_FUZZ", "") == "full"
FUZZ = settings(
    max_examples=1_500 if FULL else 60,
    deadline=None,
    derandomize=True,  # a fixed seed: the same cases on every machine
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

GROUPS = {f"g{g}": [f"g{g}-é{i}" for i in range(4)] for g in range(3)}


class Noisy(Evaluator):
    def evaluate(self, spec: TrialSpec) -> float:
        return 0.5 + 0.1 * float(np.random.default_rng(spec.seed).normal())

    def describe(self) -> dict[str, Any]:
        return {"kind": "noisy"}

    def score(self, dataset_ids, seed, split="test") -> float:
        return 0.0


def pool() -> Pool:
    return Pool.replay_only(Hierarchy.from_mapping(GROUPS), name="fuzz")


class Originals:
    """The good journals' bytes (an object, so a failing case's report does not print them)."""

    def __init__(self, data: dict[str, bytes]) -> None:
        self.data = data

    def __getitem__(self, name: str) -> bytes:
        return self.data[name]

    def items(self):
        return self.data.items()

    def __repr__(self) -> str:
        return f"Originals({', '.join(f'{k}: {len(v)} bytes' for k, v in self.data.items())})"


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> Originals:
    base = tmp_path_factory.mktemp("fuzz-originals")
    run_db = base / "run.db"
    select(pool(), "dash", Noisy(), 10, journal=run_db, seed=2, batch_size=2, k=2,
           score_final=False)  # fmt: skip
    study_db = base / "study.db"
    with Study.create(study_db, pool(), "dash", seed=2, budget=12, pending_timeout=3600) as s:
        for trial, _ in s.ask(4):
            if trial % 2:
                s.tell(trial, 0.5 + trial / 100)
        s.tell(0, failed="boom")
        s.ask(2)
    out = {}
    for p in (run_db, study_db):
        con = sqlite3.connect(p)
        assert con.execute("PRAGMA freelist_count").fetchone()[0] == 0  # every page in use
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        con.close()
        out[p.name] = p.read_bytes()
    return Originals(out)


def exercise(path: Path) -> None:
    """Everything that reads a journal; returns normally or raises a DashselError."""
    meta, frame = read_journal(path)
    report_dict(path, meta, frame)
    with SQLiteJournal(path) as j:  # what a resume does before its first trial
        header = j.meta()
        j.records()
        j.pending()
        if header:
            j.open_run(header)
    with Study.open(path) as s:
        s.recommend()
        s.posterior()
        with contextlib.suppress(BudgetSpent):
            s.ask()


def check_case(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    for side in ("-wal", "-shm", "-journal", ".lock"):
        Path(f"{path}{side}").unlink(missing_ok=True)
    try:
        exercise(path)
    except DashselError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, repr(msg)
        assert len(msg) < 1000


@FUZZ
@given(name=st.sampled_from(["run.db", "study.db"]), data=st.data())
def test_random_truncation(tmp_path, originals, name, data) -> None:
    good = originals[name]
    cut = data.draw(st.integers(0, len(good) - 1), label="keep bytes")
    check_case(tmp_path / "t.db", good[:cut])


@FUZZ
@given(name=st.sampled_from(["run.db", "study.db"]), data=st.data())
def test_random_byte_corruption(tmp_path, originals, name, data) -> None:
    buf = bytearray(originals[name])
    page = 4096
    n_pages = len(buf) // page
    # a page, then a place in it: every page gets hit, not only the large ones
    hits = data.draw(st.integers(1, 4), label="hits")
    for _ in range(hits):
        p = data.draw(st.integers(0, n_pages - 1), label="page")
        at = data.draw(st.integers(0, page - 1), label="offset")
        length = data.draw(st.integers(1, 64), label="length")
        noise = data.draw(st.binary(min_size=length, max_size=length), label="bytes")
        start = p * page + at
        buf[start : start + length] = noise[: max(0, len(buf) - start)]
    check_case(tmp_path / "c.db", bytes(buf[: len(originals[name])]))


def test_the_originals_read_cleanly(tmp_path, originals) -> None:
    for name, good in originals.items():
        path = tmp_path / name
        path.write_bytes(good)
        exercise(path)  # no damage: no error at all
        shutil.rmtree(tmp_path / "x", ignore_errors=True)
