"""``dashsel study ...`` from a shell: the worked example of docs/cluster.md, exit statuses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from dashsel import select
from dashsel.cli import app
from dashsel.evaluators.base import Evaluator
from dashsel.manifest import load_manifest
from dashsel.policies import DEFAULT_POLICY
from dashsel.report import read_journal
from dashsel.trial import TrialSpec

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def shell_loop() -> str:
    text = (ROOT / "docs" / "cluster.md").read_text()
    block = re.search(r"<!-- shell-loop:begin -->\n```bash\n(.*?)```\n<!-- shell-loop:end -->",
                      text, re.S)  # fmt: skip
    assert block, "docs/cluster.md lost its shell-loop block"
    return block.group(1)


class FirstRow(Evaluator):
    """What train.py in the docs computes: the first logged reward of the dataset."""

    def __init__(self, csv: Path) -> None:
        frame = pd.read_csv(csv, dtype={"dataset": str})
        self.first = frame.groupby("dataset", sort=False)["reward"].first().to_dict()

    def evaluate(self, spec: TrialSpec) -> float:
        return float(self.first[spec.dataset_id])

    def describe(self) -> dict[str, Any]:
        return {"kind": "first-row"}

    def score(self, dataset_ids, seed, split="test") -> float:
        return 0.0


@pytest.mark.skipif(sys.platform == "win32", reason="a bash loop")
def test_the_documented_shell_loop_runs_and_equals_select(tmp_path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # `dashsel` and `python` as a user would have them on PATH, from this source tree
    (bindir / "dashsel").write_text(f'#!/bin/sh\nexec {sys.executable} -m dashsel.cli "$@"\n')
    (bindir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    for f in bindir.iterdir():
        f.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT / "src"),
    }
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        ["bash", "-c", shell_loop()], cwd=work, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shown = json.loads((work / "selection.json").read_text())
    assert shown["rule"]["text"] == "top-2" and shown["n_complete"] == 5

    m = load_manifest(work / "pools" / "table" / "manifest.toml")
    evaluator = FirstRow(work / "pools" / "table" / "rewards.csv")
    res = select(m.pool, DEFAULT_POLICY, evaluator, 5, seed=0, k=2, score_final=False)
    _, frame = read_journal(work / "run.db")
    key = ["number", "dataset_id", "seed", "pull", "reward"]
    assert frame[key].to_dict("records") == res.trials[key].to_dict("records")
    assert shown["selected"] == list(res.selected)


def test_exit_statuses_and_one_line_errors(tmp_path) -> None:
    pools = tmp_path / "pools"
    assert runner.invoke(app, ["data", "example", str(pools)]).exit_code == 0
    db, manifest = str(tmp_path / "run.db"), str(pools / "table" / "manifest.toml")
    r = runner.invoke(app, ["study", "create", db, manifest, "--budget", "3", "--serial"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["study", "ask", db, "--n", "2"])
    assert r.exit_code == 0
    lines = r.stdout.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["0", "1"]
    assert runner.invoke(app, ["study", "ask", db]).exit_code == 4  # serial: pending
    assert runner.invoke(app, ["study", "tell", db, "0", "0.5"]).exit_code == 0
    r = runner.invoke(app, ["study", "tell", db, "1", "abc"])
    assert r.exit_code == 2 and "not a number" in r.output
    assert runner.invoke(app, ["study", "abandon", db, "1"]).exit_code == 0
    assert runner.invoke(app, ["study", "ask", db, "--n", "5"]).exit_code == 0  # 2 left
    r = runner.invoke(app, ["study", "ask", db])
    assert r.exit_code == 3 and "budget" in r.output
    r = runner.invoke(app, ["study", "tell", db, "0", "0.5"])
    assert r.exit_code == 2 and "already told" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["study", "create", db, manifest])
    assert r.exit_code == 2 and "already holds a run" in r.output
    out = tmp_path / "copy.db"
    assert runner.invoke(app, ["journal", "backup", db, str(out)]).exit_code == 0
    r = runner.invoke(app, ["report", str(out), "--json", str(tmp_path / "rep.json")])
    assert r.exit_code == 0 and "selected by the single best (the run's rule)" in r.output
