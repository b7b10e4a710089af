"""Runs that speak: one log record per finished trial, text or JSON lines."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashsel import select
from dashsel.hierarchy import Hierarchy
from dashsel.log import JsonFormatter, configure, logger, trial_message
from dashsel.pool import Pool
from test_run_failures import Failing  # the shared toy evaluator

GROUPS = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"], "c": ["c0", "c1"]}
SRC = str(Path(__file__).resolve().parents[1] / "src")


def make_pool() -> Pool:
    return Pool.replay_only(Hierarchy.from_mapping(GROUPS), name="toy")


def test_one_record_per_trial_with_its_fields(caplog) -> None:
    caplog.set_level(logging.INFO, logger="dashsel")
    res = select(make_pool(), "dash", Failing({"a0": "raise"}), 12, seed=1)
    trials = [r for r in caplog.records if hasattr(r, "dashsel") and "trial" in r.dashsel]
    assert len(trials) == 12
    fields = [r.dashsel for r in trials]
    assert sorted(f["trial"] for f in fields) == list(range(12))
    done = [f for f in fields if f["state"] == "complete"]
    assert [f["reward"] for f in sorted(done, key=lambda f: f["trial"])] == list(
        res.trials["reward"]
    )
    # best so far is the running maximum of the rewards
    best = float("-inf")
    for f in sorted(fields, key=lambda f: f["trial"]):
        if f["state"] == "complete":
            best = max(best, f["reward"])
            assert f["best"] == best
    failed = [r for r in trials if r.dashsel["state"] == "failed"]
    assert failed and all(r.levelno == logging.WARNING for r in failed)
    assert "failed: OSError" in failed[0].getMessage()
    assert {f["group"] for f in fields} <= set(GROUPS)


def test_library_prints_nothing_by_default(capfd) -> None:
    select(make_pool(), "dash", Failing(), 4, seed=0)
    assert capfd.readouterr().err == ""


def test_trial_message_and_json_lines() -> None:
    fields = {"trial": 2, "budget": 9, "dataset": "d", "group": "g", "state": "complete",
              "reward": 0.5, "best": 0.75}  # fmt: skip
    assert trial_message(fields) == "trial 3/9 dataset d group g reward 0.5000 best 0.7500"
    record = logging.LogRecord("dashsel", logging.INFO, __file__, 1, "hi", None, None)
    record.dashsel = fields
    line = JsonFormatter().format(record)
    assert json.loads(line) | {} == {**fields, "message": "hi", "level": "info",
                                     "time": json.loads(line)["time"]}  # fmt: skip


def test_configure_levels() -> None:
    stream = io.StringIO()
    try:
        configure(log_format="json", quiet=True, stream=stream)
        select(make_pool(), "dash", Failing({"a0": "raise"}), 12, seed=1)
        lines = [json.loads(x) for x in stream.getvalue().splitlines()]
        assert lines and all(x["level"] == "warning" for x in lines)  # only the failure
    finally:
        for h in list(logger.handlers):
            if getattr(h, "_dashsel_cli", False):
                logger.removeHandler(h)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", "dashsel.cli", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    from dashsel.toy import write_toy_table

    return write_toy_table(tmp_path_factory.mktemp("pool") / "table", seed=0)


def test_cli_run_to_a_file_logs_one_line_per_trial(example, tmp_path) -> None:
    done = run_cli("run", str(example), "--budget", "7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    trial_lines = [x for x in lines if " trial " in f" {x}"]
    assert len(trial_lines) == 7, done.stderr
    assert [x.split()[2] for x in trial_lines] == [f"{i}/7" for i in range(1, 8)]
    assert all("reward" in x and "best" in x and "group" in x for x in trial_lines)


def test_cli_json_lines_and_quiet(example, tmp_path) -> None:
    done = run_cli("run", str(example), "--budget", "5", "--log-format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    records = [json.loads(x) for x in done.stderr.splitlines()]
    assert [r["trial"] for r in records if "trial" in r] == list(range(5))
    quiet = run_cli("run", str(example), "--budget", "5", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
