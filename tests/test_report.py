"""``dashsel report``: the run's own selection (same ``selected`` as the run's JSON), its rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dashsel.cli import app
from dashsel.errors import DashselError
from dashsel.jsonable import write_json_atomic
from dashsel.report import describe_rule, selection_rule
from dashsel.toy import write_toy_table

runner = CliRunner()


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_toy_table(tmp_path_factory.mktemp("pool"), seed=0)


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        (["--top-k", "3"], "top-3"),
        (["--percentile", "70"], "percentile 70"),
        ([], "the single best"),
    ],
)
def test_report_json_equals_the_runs_selection(table, tmp_path, rule, text) -> None:
    db, run_json, rep_json = tmp_path / "r.db", tmp_path / "run.json", tmp_path / "rep.json"
    res = runner.invoke(app, ["run", str(table), "--budget", "12", "--seed", "3", "--journal",
                              str(db), "--json", str(run_json), "--no-final", *rule])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", str(db), "--json", str(rep_json)])
    assert res.exit_code == 0, res.output
    assert f"selected by {text} (the run's rule)" in res.output
    ran, reported = json.loads(run_json.read_text()), json.loads(rep_json.read_text())
    assert reported["selected"] == ran["selected"]
    assert reported["selected_groups"] == ran["selected_groups"]
    assert reported["rule"]["source"] == "run" and reported["rule"]["text"] == text
    # another cut may be asked for, and says so
    res = runner.invoke(app, ["report", str(db), "--top-k", "2", "--json", str(rep_json)])
    assert "selected by top-2 (as asked)" in res.output
    assert len(json.loads(rep_json.read_text())["selected"]) == 2


def test_selection_rule_and_words() -> None:
    meta = {"selection": {"k": 3, "percentile": None}}
    assert selection_rule(meta) == (3, None, "run")
    assert selection_rule(meta, percentile=50.0) == (None, 50.0, "asked")
    assert selection_rule({}) == (None, None, "run")  # journals without a rule: the best one
    assert selection_rule({"selection": {"k": "x"}}) == (None, None, "run")
    assert describe_rule(None, 12.5) == "percentile 12.5"


def test_json_written_atomically(tmp_path) -> None:
    out = write_json_atomic({"a": float("nan"), "b": [1, 2]}, tmp_path / "sub" / "o.json")
    assert json.loads(out.read_text()) == {"a": "nan", "b": [1, 2]}
    assert sorted(p.name for p in out.parent.iterdir()) == ["o.json"]  # no temporary left
    with pytest.raises(DashselError, match="is a folder"):
        write_json_atomic({}, tmp_path)
