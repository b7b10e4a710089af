"""`dashsel run`: output checked before the first trial, atomic JSON, Ctrl-C with a hung trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


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


@pytest.mark.parametrize("where", ["directory", "under-a-file"])
def test_bad_json_path_fails_before_any_trial(example, tmp_path, where) -> None:
    if where == "directory":
        target = tmp_path / "out"
        target.mkdir()
        expected = "is a directory"
    else:
        (tmp_path / "file.txt").write_text("x")
        target = tmp_path / "file.txt" / "result.json"
        expected = "cannot create folder"
    journal = tmp_path / "run.db"
    done = run_cli("run", str(example), "--budget", "5", "--json", str(target),
                   "--journal", str(journal), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --json ") and expected in lines[0]
    assert "Traceback" not in done.stderr
    assert not journal.exists()  # nothing ran


def test_json_written_atomically(example, tmp_path) -> None:
    out = tmp_path / "new" / "result.json"
    done = run_cli("run", str(example), "--budget", "4", "--json", str(out), "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["n_evaluations"] == 4 and data["failed_datasets"] == {}
    assert [p.name for p in out.parent.iterdir()] == ["result.json"]  # no temporary left


HANG = """
import time
from pathlib import Path

from dashsel.evaluators import register_evaluator
from dashsel.evaluators.base import Evaluator
from dashsel.evaluators.registry import EvaluatorKind


class Hang(Evaluator):
    def __init__(self, marker):
        self.marker = marker

    def evaluate(self, spec):
        Path(self.marker).touch()
        time.sleep(60)
        return 0.5

    def describe(self):
        return {"kind": "hang"}


def parse(config, ctx):
    return {"marker": config["marker"]}


def build(kwargs, pool, base, ctx):
    return Hang(kwargs["marker"])


register_evaluator(EvaluatorKind("hang", parse, build, trains=False))
"""


def test_sigint_with_a_hung_trial_exits_130_within_seconds(tmp_path) -> None:
    (tmp_path / "hangmod.py").write_text(textwrap.dedent(HANG))
    marker = tmp_path / "started"
    (tmp_path / "manifest.toml").write_text(
        textwrap.dedent(f"""
        [pool]
        name = "hung"

        [evaluator]
        kind = "hang"
        marker = "{marker}"

        [[datasets]]
        id = "d0"
        group = "g"

        [[datasets]]
        id = "d1"
        group = "g"
    """)
    )
    script = "import hangmod\nfrom dashsel.cli import app\napp()\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(tmp_path)])}
    journal = tmp_path / "run.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "run", "manifest.toml", "--budget", "4",
         "--executor", "process", "--workers", "1", "--journal", str(journal)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the trial never started"
            time.sleep(0.1)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert took < 10, took
    assert "interrupted" in err and "Traceback" not in err
    # The journal is left resumable: the hung trial is on record, unfinished.
    from dashsel.report import read_journal

    _, frame = read_journal(journal)
    assert list(frame["state"]) == ["running"]


#: Runs `dashsel run ...` and writes, when the first trial is submitted to a worker, which
#: scikit-learn modules the main process has imported by then.
FIRST_SUBMIT_PROBE = """
import json, sys

def patch(out):
    import dashsel.executors as ex

    for cls in (ex._ProcessStream, ex._RayStream):
        def submit(self, spec, _orig=cls.submit):
            try:
                open(out, "x").write(json.dumps(
                    sorted(m for m in sys.modules if m.split(".")[0] == "sklearn")))
            except FileExistsError:
                pass
            return _orig(self, spec)

        cls.submit = submit

if __name__ == "__main__":  # the forkserver imports this module too
    patch(sys.argv[1])
    from dashsel.cli import app

    sys.argv = ["dashsel", *sys.argv[2:]]
    app()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the process executor's forkserver")
def test_process_run_imports_no_sklearn_before_its_first_trial(tmp_path) -> None:
    from dashsel.toy import write_toy_manifest

    manifest = write_toy_manifest(
        tmp_path / "pool", evaluator={"kind": "logistic", "C": 10.0}, n_per_dataset=60,
        n_local=40, n_validation=60, n_test=40,
    )  # fmt: skip
    probe, marker = tmp_path / "probe.py", tmp_path / "marker.json"
    probe.write_text(FIRST_SUBMIT_PROBE)
    journal, out = tmp_path / "j.jsonl", tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": SRC}
    run = [sys.executable, str(probe), str(marker), "run", str(manifest), "--seed", "3",
           "--journal", str(journal), "--no-final", "--quiet"]  # fmt: skip
    proc = subprocess.run(
        [*run, "--budget", "4", "--executor", "process", "--workers", "2", "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(marker.read_text()) == []  # no scikit-learn module at the first submit
    result = json.loads(out.read_text())
    assert len(result["trials"]) == 4 and not result["failed_datasets"]
    assert all(t["reward"] is not None for t in result["trials"])
    # The journal's evaluator description (read from scikit-learn's source) is the one an
    # in-process run (which makes the estimator first) computes: it resumes the journal
    # (same batch size: part of the run's identity).
    resumed = subprocess.run(
        [*run, "--budget", "6", "--batch-size", "2", "--json", str(out)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(out.read_text())["n_resumed"] == 4
