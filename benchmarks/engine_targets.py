"""Check issue 12's targets against the measured studies and write the comparison with and
without traps (``docs/benchmarks/engine-targets.md``).

Reads the ``results.json`` that ``benchmarks/studies.py`` wrote; computes every number here
from their raw rows (nothing is typed in by hand). Usage::

    python benchmarks/engine_targets.py [--root docs/benchmarks] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dashsel_bench.config import ENGINE_STUDY_METHODS, SCORE_CHECK_METHODS
from dashsel_bench.methods import label
from dashsel_bench.report import markdown_table, reach
from dashsel_bench.results import StudyResult

ROOT = Path(__file__).resolve().parents[1]
#: (folder without traps, folder with traps, title) pairs compared side by side.
PAIRS: tuple[tuple[str, str, str], ...] = (
    ("digits5-100-engine", "digits5-100-traps", "digits5-100 (100 candidates, k = 20)"),
    ("digits5-engine", "digits5-engine-traps", "digits5 (15 candidates, k = 3)"),
    ("spam-engine", "spam-engine-traps", "spam (36 candidates, k = 3)"),
)
METHODS = (*ENGINE_STUDY_METHODS, *SCORE_CHECK_METHODS)
TOL = 1.0  # accuracy points


def per_run_avg(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy % averaged over targets, per (method, budget, run)."""
    d = df.assign(acc=100 * df["accuracy"].astype(float))
    return d.groupby(["method", "budget", "run"], as_index=False)["acc"].mean()


def _sem(v: np.ndarray) -> float:
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def cell(avg: pd.DataFrame, method: str, budget: int) -> np.ndarray:
    g = avg[(avg["method"] == method) & ((avg["budget"] == budget) | (avg["budget"] == 0))]
    return g.sort_values("run")["acc"].to_numpy(float)


def accuracy_table(result: StudyResult) -> tuple[str, pd.DataFrame]:
    df = result.frame("main_table")
    avg = per_run_avg(df)
    budgets = sorted({int(b) for b in df["budget"] if int(b) > 0})
    glob = cell(avg, "global", 0)
    present = [m for m in METHODS if m in set(df["method"])]
    rows = []
    for m in present:
        row = [label(m)]
        for b in budgets:
            v = cell(avg, m, b)
            row.append(f"{v.mean():.1f} ± {_sem(v):.1f}" if v.size else "–")
        rows.append(row)
    rows.append(["Global", *[f"{glob.mean():.1f}"] * len(budgets)])
    loc = cell(avg, "local", 0)
    rows.append(["Local", *[f"{loc.mean():.1f}"] * len(budgets)])
    return markdown_table(["Method", *[f"{b} evals" for b in budgets]], rows), avg


def reach_table(result: StudyResult) -> str:
    df = result.frame("curve")
    r = reach(df, TOL / 100)
    rows = []
    for m in [m for m in METHODS if m in set(r["method"])]:
        g = r[r["method"] == m]["evaluations"].to_numpy(float)
        ok = g[np.isfinite(g)]
        med = f"{np.median(ok):.0f}" if ok.size else "–"
        rows.append([label(m), f"{ok.size}/{g.size}", med])
    grid = sorted({int(b) for b in df["budget"] if int(b) > 0})
    return (
        f"Evaluations to come within {TOL:g} point of Global (per target and run; checkpoints "
        f"{', '.join(map(str, grid))}): runs that got there, and the median evaluations "
        "among them.\n\n" + markdown_table(["Method", "reached", "median evals"], rows)
    )


def paired(avg: pd.DataFrame, a: str, b: str, budget: int) -> tuple[float, float] | None:
    x, y = cell(avg, a, budget), cell(avg, b, budget)
    if not x.size or x.size != y.size:
        return None
    d = x - y
    return float(d.mean()), _sem(d)


def checks(results: dict[str, StudyResult]) -> list[list[str]]:
    rows: list[list[str]] = []
    if "digits5-100-engine" in results:
        res = results["digits5-100-engine"]
        avg = per_run_avg(res.frame("main_table"))
        glob = cell(avg, "global", 0).mean()
        v = cell(avg, "hits", 5)
        r = reach(res.frame("curve"), TOL / 100)
        g = r[r["method"] == "hits"]["evaluations"].to_numpy(float)
        share = f"{int(np.sum(g <= 5))}/{g.size} (target, run) within 1 point at 5"
        rows.append(
            [
                "digits5-100, no traps: engine within 1 point of Global after ≤ 5 evaluations",
                f"engine {v.mean():.1f} ± {_sem(v):.1f} vs Global {glob:.1f} at 5; {share}",
                "met" if v.mean() >= glob - TOL else "not met",
            ]
        )
        for other in ("hits-shuffled", "hits-reversed"):
            p = paired(avg, other, "hits-noscores", 30)
            if p is None:
                continue
            rows.append(
                [
                    f"{label(other)} within 1 point of the engine without scores at 30",
                    f"difference {p[0]:+.1f} ± {p[1]:.1f} points (paired over runs)",
                    "met" if abs(p[0]) <= TOL else "not met",
                ]
            )
    if "digits5-100-traps" in results:
        avg = per_run_avg(results["digits5-100-traps"].frame("main_table"))
        for b in (5, 15):
            for other in ("scores-only", "hits-noscores"):
                p = paired(avg, "hits", other, b)
                if p is None:
                    continue
                rows.append(
                    [
                        f"digits5-100 with traps: engine beats {label(other)} at {b}",
                        f"engine − {label(other)} = {p[0]:+.1f} ± {p[1]:.1f} points",
                        "met" if p[0] > 0 else "not met",
                    ]
                )
        # Not an issue target: the cheap answer the engine must also be judged against.
        for b in (5, 15, 30):
            p = paired(avg, "hits", "scores-only-dedupe", b)
            if p is None:
                continue
            verdict = (
                "engine ahead"
                if p[0] > 2 * p[1]
                else "cheap answer ahead"
                if p[0] < -2 * p[1]
                else "tie (within 2 standard errors)"
            )
            rows.append(
                [
                    f"digits5-100 with traps: engine against {label('scores-only-dedupe')} at "
                    f"{b} (a cheap answer, not an issue target)",
                    f"engine − {label('scores-only-dedupe')} = {p[0]:+.1f} ± {p[1]:.1f} points",
                    verdict,
                ]
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results = {
        p.parent.name: StudyResult.load(p)
        for p in sorted(args.root.glob("*/results.json"))
        if p.parent.name in {n for pair in PAIRS for n in pair[:2]}
    }
    parts = [
        "# The engine with and without traps, and issue 12's targets\n\n",
        "Generated by `python benchmarks/engine_targets.py` from the `results.json` of each "
        "folder (written by `python benchmarks/studies.py`). Accuracy: test accuracy % "
        "averaged over the targets within each run, mean ± standard error over runs.\n\n",
        "## Targets\n\n",
        markdown_table(["target", "measured", "verdict"], checks(results)),
    ]
    for plain, trapped, title in PAIRS:
        for name, what in ((plain, "without traps"), (trapped, "with traps")):
            if name not in results:
                continue
            res = results[name]
            table, _ = accuracy_table(res)
            parts.append(
                f"\n## {title}, {what} ([`{name}/`]({name}/README.md), "
                f"{res.config.runs} runs × {len(res.config.targets or ())} targets)\n\n"
            )
            parts.append(table + "\n" + reach_table(res))
    text = "".join(parts)
    out = args.out or args.root / "engine-targets.md"
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
