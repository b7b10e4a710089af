"""Report: aggregation (mean ± std, AVG, reach-Global), markdown tables, files, PNGs, JSON.

Built from hand-written rows with known numbers, so no study runs here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashsel_bench.config import StudyConfig
from dashsel_bench.methods import label
from dashsel_bench.report import (
    markdown_table,
    pm,
    reach,
    reach_summary,
    result_table,
    summarize,
    write_report,
)
from dashsel_bench.results import ROW_COLUMNS, StudyResult

TARGETS = ("a", "b")


def row(study: str, target: str, method: str, budget: int, run: int, acc: float, **kw) -> dict:
    base = dict.fromkeys(ROW_COLUMNS)
    base.update(
        study=study,
        suite="toy",
        target=target,
        method=method,
        label=label(method),
        kind="reference" if method in ("local", "global") else "policy",
        local_fraction=kw.pop("local_fraction", 1.0),
        budget=budget,
        run=run,
        accuracy=acc,
        n_evaluations=kw.pop("n_evaluations", budget),
        evaluation_seconds=0.01,
        overhead_seconds=kw.pop("overhead_seconds", 0.002),
        n_selected=3,
        n_relevant=3,
        n_samples=100,
        selected="a0;a1;a2",
    )
    base.update(kw)
    return base


def main_rows() -> list[dict]:
    rows = []
    for r in (0, 1):
        for t, local, glob in (("a", 0.5, 0.9), ("b", 0.4, 0.8)):
            rows += [
                row("main_table", t, "local", 0, r, local),
                row("main_table", t, "global", 0, r, glob),
            ]
        # dash: a = 0.8, 0.9 ; b = 0.6, 0.7 -> AVG per run 70, 80
        rows.append(row("main_table", "a", "dash", 10, r, 0.8 + 0.1 * r))
        rows.append(row("main_table", "b", "dash", 10, r, 0.6 + 0.1 * r))
        rows.append(row("main_table", "a", "flat", 10, r, 0.7))
        rows.append(row("main_table", "b", "flat", 10, r, 0.75))
    return rows


def curve_rows() -> list[dict]:
    rows = [row("curve", "a", "global", 0, r, 0.9) for r in (0, 1)]
    rows += [row("curve", "a", "local", 0, r, 0.5) for r in (0, 1)]
    for b, acc in ((5, 0.85), (10, 0.895), (20, 0.9)):
        rows.append(row("curve", "a", "dash", b, 0, acc))
    for b, acc in ((5, 0.6), (10, 0.7), (20, 0.8)):
        rows.append(row("curve", "a", "dash", b, 1, acc))
        rows.append(row("curve", "a", "flat", b, 0, acc))
        rows.append(row("curve", "a", "flat", b, 1, acc))
    return rows


def make_result() -> StudyResult:
    config = StudyConfig(
        suite="toy",
        targets=TARGETS,
        methods=("dash", "flat"),
        runs=2,
        budgets=(10,),
        checkpoints=(5, 10, 20),
        command="dashsel bench toy --runs 2",
    )
    frames = {
        "main_table": pd.DataFrame(main_rows(), columns=list(ROW_COLUMNS)),
        "curve": pd.DataFrame(curve_rows(), columns=list(ROW_COLUMNS)),
        "small_budget": pd.DataFrame(
            [row("small_budget", "a", m, 6, 0, 0.7) for m in ("flat", "dash-mixed", "dash")]
            + [row("small_budget", "a", m, 0, 0, 0.6) for m in ("local", "global")],
            columns=list(ROW_COLUMNS),
        ),
        "weak_init": pd.DataFrame(
            [
                row("weak_init", t, m, 10, r, 0.3 + 0.1 * (m == "dash"), local_fraction=f)
                for t in TARGETS
                for m in ("local", "dash")
                for r in (0, 1)
                for f in (0.1, 0.5)
            ],
            columns=list(ROW_COLUMNS),
        ),
        "grouping_ablation": pd.DataFrame(
            [r | {"study": "grouping_ablation"} for r in curve_rows()], columns=list(ROW_COLUMNS)
        ),
    }
    return StudyResult(
        config=config, frames=frames, notes=["skipped x: test"], timings={"total": 1.0}
    )


# --- formatting and aggregation ----------------------------------------------------------------
def test_pm_format() -> None:
    assert pm(89.456, 0.61) == "89.5 ± 0.6"
    assert pm(float("nan"), 1.0) == "–"
    assert pm(3.0, float("nan"), digits=0) == "3 ± 0"


def test_summarize_mean_std_and_avg_per_run() -> None:
    df = pd.DataFrame(main_rows())
    s = summarize(df, TARGETS).set_index(["method", "target"])
    assert s.loc[("dash", "a"), "mean"] == pytest.approx(85.0)
    assert s.loc[("dash", "a"), "std"] == pytest.approx(np.std([80, 90], ddof=1))
    # AVG: mean over targets within a run (70, 80), then mean ± std over runs.
    assert s.loc[("dash", "AVG"), "mean"] == pytest.approx(75.0)
    assert s.loc[("dash", "AVG"), "std"] == pytest.approx(np.std([70, 80], ddof=1))
    assert s.loc[("global", "AVG"), "std"] == 0.0 and s.loc[("dash", "AVG"), "n"] == 2


def test_result_table_rows_columns_and_bold_best() -> None:
    text = result_table(pd.DataFrame(main_rows()), TARGETS, ["dash", "flat"], drops=True)
    lines = text.strip().splitlines()
    assert lines[0] == "| Method | a | b | AVG |"
    names = [line.split("|")[1].strip() for line in lines[2:]]
    assert names == ["Local", "Global", "DaSH", "DaS (flat)"]
    for line in lines[2:]:
        assert line.count("±") == 3  # every target and AVG has mean ± std
    dash, flat = lines[4], lines[5]
    # Best selection method is bold even though Global is higher; references never are.
    assert "**85.0 ± 7.1**" in dash and "**" not in lines[3]
    assert "**75.0 ± 0.0**" in flat and "72.5 ± 0.0 ↓2.5" in flat  # flat AVG = (70+75)/2
    assert "70.0 ± 0.0 ↓15.0" in flat


def test_reach_first_checkpoint_within_tolerance() -> None:
    df = pd.DataFrame(curve_rows())
    per_run = reach(df, 0.01).set_index(["method", "run"])["evaluations"]
    assert per_run[("dash", 0)] == 10  # 0.895 >= 0.9 - 0.01
    assert math.isnan(per_run[("dash", 1)])  # peaks at 0.8
    summary = reach_summary(df, 0.01).set_index("method")
    assert summary.loc["dash", "reached"] == 1 and summary.loc["dash", "runs"] == 2
    assert summary.loc["flat", "reached"] == 0
    # A looser tolerance is reached earlier.
    assert reach(df, 0.06).set_index(["method", "run"])["evaluations"][("dash", 0)] == 5


def test_markdown_table_alignment() -> None:
    assert (
        markdown_table(["x", "y", "z"], [[1, 2, 3]], left=2).splitlines()[1] == "|:---|:---|---:|"
    )


# --- files -----------------------------------------------------------------------------------
def test_write_report_files_pngs_and_json(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    result = make_result()
    out = write_report(result, tmp_path / "rep")
    expected = {
        "results.json",
        "main_table.md",
        "overhead.md",
        "small_budget.md",
        "weak_init.md",
        "grouping.md",
        "README.md",
        "curve_a.png",
        "curves.png",
        "groupings.png",
    }
    assert expected <= {p.name for p in out.iterdir()}
    for png in ("curve_a.png", "curves.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(out / png)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img.std() > 0  # not a blank canvas
    readme = (out / "README.md").read_text()
    assert "dashsel bench toy --runs 2" in readme
    for name in expected - {"README.md"}:
        assert f"`{name}`" in readme
    assert "skipped x: test" in readme
    main = (out / "main_table.md").read_text()
    assert "## Budget 10 evaluations" in main and "Evaluations to come within 1 point" in main
    weak = (out / "weak_init.md").read_text()
    assert "| Target | 10% Init | 10% DaSH | 50% Init | 50% DaSH |" in weak
    assert "| a | 30.0 ± 0.0 | 40.0 ± 0.0 |" in weak
    grouping = (out / "grouping.md").read_text()
    assert "10 ± 0 (1/2)" in grouping and "not reached (0/2)" in grouping

    data = json.loads((out / "results.json").read_text())
    assert data["command"] == "dashsel bench toy --runs 2"
    assert {"python", "numpy", "scikit-learn"} <= set(data["versions"])
    final = data["summaries"]["final_accuracy"]["10"]
    dash_avg = next(r for r in final if r["method"] == "dash" and r["target"] == "AVG")
    assert dash_avg["mean"] == pytest.approx(75.0)
    assert len(data["studies"]["main_table"]) == len(result.frames["main_table"])


def test_json_round_trip(tmp_path: Path) -> None:
    result = make_result()
    out = write_report(result, tmp_path / "rt", plots=False)
    loaded = StudyResult.load(out / "results.json")
    assert loaded.config.to_dict() == result.config.to_dict()
    assert loaded.notes == result.notes
    for name, df in result.frames.items():
        pd.testing.assert_frame_equal(loaded.frames[name], df, check_dtype=False)
    # Writing the loaded result again gives the same tables.
    again = write_report(loaded, tmp_path / "rt2", plots=False)
    for md in ("main_table.md", "grouping.md", "weak_init.md"):
        assert (again / md).read_text() == (out / md).read_text()


def test_engine_and_dash_drawn_last_on_a_log_axis() -> None:
    from dashsel_bench.report import FRONT_STYLES, _draw_curve, _figure, _plot_order

    order = _plot_order(["hits", "flat", "dash-mixed", "dash", "scores-only", "hits-cross"])
    assert order[:2] == ["flat", "scores-only"]
    assert set(order[2:4]) == {"dash-mixed", "dash"} and set(order[4:]) == {"hits", "hits-cross"}
    rows = [
        {
            "target": "a",
            "method": m,
            "budget": b,
            "run": 0,
            "accuracy": acc,
            "n_evaluations": b if m != "scores-only" else 0,
        }
        for m, acc in (("flat", 0.5), ("dash", 0.6), ("hits", 0.7), ("scores-only", 0.65))
        for b in (5, 15, 30)
    ]
    df = pd.DataFrame(rows)
    ax = _figure(4, 3).add_subplot()
    _draw_curve(ax, df, "a")
    assert ax.get_xscale() == "log"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    hits, dash = lines[label("hits")], lines[label("dash")]
    assert hits.get_color() == FRONT_STYLES["hits"]["color"]
    assert dash.get_color() == FRONT_STYLES["dash"]["color"]
    assert hits.get_zorder() > dash.get_zorder() > lines[label("flat")].get_zorder()
    only = lines[label("scores-only")]
    assert list(only.get_xdata()) == [5, 15, 30] and len(set(only.get_ydata())) == 1


def test_caption_and_budget_tables() -> None:
    from dashsel_bench.report import budget_tables_markdown, plot_caption

    result = make_result()
    caption = plot_caption(result)
    assert "band = ± 1 std over runs" in caption and f"{result.config.runs} runs" in caption
    text = budget_tables_markdown(result)
    assert text.count("test accuracy %") == len(
        {int(b) for b in result.frames["main_table"]["budget"] if int(b) > 0}
    )
