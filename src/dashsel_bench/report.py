"""Turn a :class:`~dashsel_bench.results.StudyResult` into markdown tables, plots and JSON.

Every number shown is aggregated here from the raw per-run rows: accuracies are in percent,
``mean ± std`` over runs (sample std, ddof=1; 0 for a single run). The AVG column averages the
targets within each run first, then reports mean ± std of those per-run averages.

Files written by :func:`write_report`:

``results.json`` (config, command, versions, notes, timings, raw rows, summaries),
``main_table.md``, ``small_budget.md``, ``weak_init.md``, ``grouping.md``, ``overhead.md``,
``curve_<target>.png``, ``curves.png`` and ``README.md`` (an index of the folder). A file is
written only when its study ran.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashsel_bench.config import GROUPING_METHODS
from dashsel_bench.methods import label
from dashsel_bench.results import StudyResult

REFERENCES = ("local", "global")
#: Rows of the final-accuracy tables come from these studies.
FINAL_STUDIES = ("main_table", "instance_baselines", "peers")


# --- formatting ------------------------------------------------------------------------------
def pm(mean: float, std: float, digits: int = 1) -> str:
    """``"89.5 ± 0.6"``; ``"–"`` for a missing mean."""
    if mean is None or not math.isfinite(mean):
        return "–"
    std = 0.0 if std is None or not math.isfinite(std) else std
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _std(values: Sequence[float] | np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """A GitHub markdown table (the first ``left`` columns left-aligned, the rest right)."""
    lines = [
        "| " + " | ".join(str(h) for h in header) + " |",
        "|" + "|".join([":---"] * left + ["---:"] * (len(header) - left)) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- aggregation -----------------------------------------------------------------------------
def _per_run(df: pd.DataFrame, targets: Sequence[str]) -> dict[str, dict[int, dict[str, float]]]:
    """``{method: {run: {target: accuracy %}}}``, with ``AVG`` per run when every target is
    present. Plain dictionaries: the frames are small and pandas' per-call cost dominates."""
    acc: dict[str, dict[int, dict[str, list[float]]]] = {}
    for m, r, t, a in zip(df["method"], df["run"], df["target"], df["accuracy"], strict=True):
        acc.setdefault(str(m), {}).setdefault(int(r), {}).setdefault(str(t), []).append(
            100.0 * float(a)
        )
    out: dict[str, dict[int, dict[str, float]]] = {}
    for m, runs in acc.items():
        out[m] = {}
        for r, by_target in runs.items():
            cells = {t: float(np.mean(v)) for t, v in by_target.items()}
            if all(t in cells for t in targets):
                cells["AVG"] = float(np.mean([cells[t] for t in targets]))
            out[m][r] = cells
    return out


def summarize(df: pd.DataFrame, targets: Sequence[str]) -> pd.DataFrame:
    """Mean and std (over runs) of accuracy % per method and target, and ``AVG``.

    ``df`` holds rows of one budget and one local fraction. AVG averages the targets within
    each run, then takes mean ± std over runs (runs missing a target are left out of AVG).
    Returns a tidy frame with columns ``method, target, mean, std, n``.
    """
    rows = []
    for method, runs in _per_run(df, targets).items():
        for t in [*targets, "AVG"]:
            vals = np.array([cells[t] for cells in runs.values() if t in cells])
            if vals.size:
                rows.append(
                    {
                        "method": method,
                        "target": t,
                        "mean": float(vals.mean()),
                        "std": _std(vals),
                        "n": int(vals.size),
                    }
                )
    return pd.DataFrame(rows, columns=["method", "target", "mean", "std", "n"])


def _lookup(summary: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(method, target): (mean, std)}`` of a :func:`summarize` frame."""
    return {
        (str(r.method), str(r.target)): (float(r.mean), float(r.std)) for r in summary.itertuples()
    }


def _ordered_methods(df: pd.DataFrame, methods: Sequence[str] | None = None) -> list[str]:
    present = list(dict.fromkeys(df["method"]))
    order = [m for m in REFERENCES if m in present]
    order += [m for m in (methods or present) if m in present and m not in order]
    return order + [m for m in present if m not in order]


def result_table(
    df: pd.DataFrame,
    targets: Sequence[str],
    methods: Sequence[str] | None = None,
    *,
    bold_best: bool = True,
    drops: bool = False,
) -> str:
    """Table 1 style: rows Local, Global, then methods; columns targets + AVG; ``mean ± std``.

    The best selection method (highest mean, references excluded) is bold in each column; with
    ``drops`` every other selection method also shows its gap to that best (``↓x``), as in the
    paper.
    """
    stats = _lookup(summarize(df, targets))
    cols = [*targets, "AVG"]
    order = _ordered_methods(df, methods)
    best: dict[str, float] = {}
    for (m, t), (mean, _) in stats.items():
        if m not in REFERENCES and math.isfinite(mean):
            best[t] = max(best.get(t, -math.inf), mean)
    rows = []
    for m in order:
        cells = [label(m)]
        for t in cols:
            if (m, t) not in stats:
                cells.append("–")
                continue
            mean, std = stats[(m, t)]
            text = pm(mean, std)
            if m not in REFERENCES and t in best:
                if bold_best and math.isclose(mean, best[t], abs_tol=1e-9):
                    text = f"**{text}**"
                elif drops and math.isfinite(mean):
                    text += f" ↓{best[t] - mean:.1f}"
            cells.append(text)
        rows.append(cells)
    return markdown_table(["Method", *cols], rows)


def final_rows(result: StudyResult, budget: int | None = None) -> pd.DataFrame:
    """Final-accuracy rows (main table, instance baselines, peers) at ``budget`` plus the
    budget-free references, full local data; one row per (target, method, run)."""
    frames = [result.frame(s) for s in FINAL_STUDIES]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=result.frame("main_table").columns)
    df = pd.concat(frames, ignore_index=True)
    df = df[np.isclose(df["local_fraction"].astype(float), 1.0)]
    if budget is not None:
        df = df[(df["budget"] == budget) | df["method"].isin(REFERENCES)]
    return df.drop_duplicates(subset=["target", "method", "budget", "run"])


def reach(df: pd.DataFrame, tolerance: float = 0.01) -> pd.DataFrame:
    """Evaluations each (target, method, run) needed to come within ``tolerance`` of Global.

    ``df`` holds a curve-like study: method rows at increasing budgets and ``global`` rows
    (same targets and runs). For each run, the first checkpoint whose accuracy is at least that
    run's Global accuracy minus ``tolerance`` counts; its evaluations are reported, NaN when no
    checkpoint reached it. Resolution is the checkpoint grid.

    Returns columns ``target, method, run, evaluations`` (float, NaN = not reached).
    """
    cols = ["target", "method", "run", "evaluations"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    glob = {
        (str(t), int(r)): float(a)
        for t, r, m, a in zip(df["target"], df["run"], df["method"], df["accuracy"], strict=True)
        if m == "global"
    }
    points: dict[tuple[str, str, int], list[tuple[int, float, float]]] = {}
    for t, m, r, b, a, n in zip(
        df["target"],
        df["method"],
        df["run"],
        df["budget"],
        df["accuracy"],
        df["n_evaluations"],
        strict=True,
    ):
        if m not in REFERENCES:
            points.setdefault((str(t), str(m), int(r)), []).append((int(b), float(a), float(n)))
    rows = []
    for (t, m, r), pts in points.items():
        threshold = glob.get((t, r), float("nan")) - tolerance
        hits = [n for _, a, n in sorted(pts) if a >= threshold - 1e-12]
        evals = hits[0] if hits else float("nan")
        rows.append({"target": t, "method": m, "run": r, "evaluations": evals})
    return pd.DataFrame(rows, columns=cols)


def reach_summary(df: pd.DataFrame, tolerance: float = 0.01) -> pd.DataFrame:
    """Per (target, method): mean ± std of :func:`reach` over the runs that reached Global,
    and how many did (``reached`` of ``runs``)."""
    per_run = reach(df, tolerance)
    rows = []
    for (t, m), g in per_run.groupby(["target", "method"], sort=False):
        vals = g["evaluations"].dropna().to_numpy(dtype=float)
        rows.append(
            {
                "target": t,
                "method": m,
                "mean": float(vals.mean()) if vals.size else float("nan"),
                "std": _std(vals),
                "reached": int(vals.size),
                "runs": len(g),
            }
        )
    return pd.DataFrame(rows, columns=["target", "method", "mean", "std", "reached", "runs"])


def _reach_text(row: pd.Series) -> str:
    if row["reached"] == 0:
        return f"not reached (0/{row['runs']})"
    text = pm(row["mean"], row["std"], digits=0)
    return text if row["reached"] == row["runs"] else f"{text} ({row['reached']}/{row['runs']})"


def curve_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (target, method, budget): mean evaluations and accuracy % mean ± std over runs."""
    curves = df[~df["method"].isin(REFERENCES)]
    g = curves.groupby(["target", "method", "budget"], sort=False)
    out = g.agg(
        evaluations=("n_evaluations", "mean"),
        mean=("accuracy", lambda s: 100 * float(s.mean())),
        std=("accuracy", lambda s: 100 * _std(s)),
        runs=("run", "nunique"),
    )
    return out.reset_index()


def overhead_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (method, budget): evaluations used and seconds per run inside / outside evaluations."""
    df = df[~df["method"].isin(REFERENCES)]
    g = df.groupby(["method", "budget"], sort=False)
    out = g.agg(
        evaluations=("n_evaluations", "mean"),
        evaluation_s=("evaluation_seconds", "mean"),
        overhead_s=("overhead_seconds", "mean"),
        overhead_std=("overhead_seconds", _std),
        runs=("run", "count"),
    )
    return out.reset_index()


# --- study sections --------------------------------------------------------------------------
def _targets(result: StudyResult, df: pd.DataFrame) -> list[str]:
    configured = list(result.config.targets or [])
    present = list(dict.fromkeys(df["target"])) if not df.empty else []
    return [t for t in configured if t in present] + [t for t in present if t not in configured]


def main_table_markdown(result: StudyResult) -> str:
    """One Table 1 per budget (instance baselines and peers join the main budget's table)."""
    parts = [
        "# Main table (Table 1 style)\n\n",
        f"Test accuracy (%) on the target domain, mean ± std over {result.config.runs} runs. "
        "Local: local data only; Global: local + every same-domain candidate (oracle). "
        "Bold: best selection method per column; ↓: gap to it. Methods keep the top "
        "k datasets by posterior mean. Local and Global have no spread when the final "
        "model's training is deterministic (fixed splits, full-batch solver): the spread of a "
        "method is that of its selections.\n",
    ]
    budgets = sorted({int(b) for b in final_rows(result)["budget"] if int(b) > 0})
    for b in budgets:
        df = final_rows(result, b)
        methods = [*result.config.methods]
        parts.append(f"\n## Budget {b} evaluations\n\n")
        parts.append(result_table(df, _targets(result, df), methods, drops=True))
    return "".join(parts)


def headline_markdown(result: StudyResult) -> str:
    """The main budget's table (or the first study with final accuracies)."""
    df = final_rows(result, result.config.main_budget)
    if df.empty:
        return "(no final-accuracy study was run)\n"
    return (
        f"Budget {result.config.main_budget}, {result.config.runs} runs, accuracy %:\n\n"
        + result_table(df, _targets(result, df), result.config.methods, drops=False)
    )


def budget_tables_markdown(result: StudyResult) -> str:
    """One accuracy table per budget (what ``dashsel demo`` prints)."""
    parts = []
    for b in sorted({int(b) for b in final_rows(result)["budget"] if int(b) > 0}):
        df = final_rows(result, b)
        parts.append(
            f"Budget {b} evaluations, {result.config.runs} runs, test accuracy %:\n\n"
            + result_table(df, _targets(result, df), result.config.methods, drops=False)
        )
    return "\n".join(parts) if parts else "(no final-accuracy study was run)\n"


def small_budget_markdown(result: StudyResult) -> str:
    df = result.frame("small_budget")
    budgets = sorted({int(b) for b in df["budget"] if int(b) > 0})
    return (
        "# Small exploration budget (Figure 5 style)\n\n"
        f"Budget {', '.join(map(str, budgets))} evaluations (default: one per candidate). "
        f"Test accuracy %, mean ± std over {result.config.runs} runs.\n\n"
        + result_table(df, _targets(result, df), ["flat", "dash-mixed", "dash"], drops=False)
    )


def weak_init_markdown(result: StudyResult) -> str:
    df = result.frame("weak_init")
    targets = _targets(result, df)
    fractions = sorted({float(f) for f in df["local_fraction"]})
    header = ["Target"]
    for f in fractions:
        header += [f"{f:.0%} Init", f"{f:.0%} DaSH"]
    cells: dict[tuple[str, float, str], str] = {}
    for f in fractions:
        sub = summarize(df[np.isclose(df["local_fraction"].astype(float), f)], targets)
        for r in sub.itertuples():
            cells[(str(r.target), f, str(r.method))] = pm(float(r.mean), float(r.std))
    rows = []
    for t in [*targets, "AVG"]:
        row = [t]
        for f in fractions:
            row += [cells.get((t, f, "local"), "–"), cells.get((t, f, "dash"), "–")]
        rows.append(row)
    return (
        "# Weak initial model (Table 3 style)\n\n"
        "The local model keeps only a fraction of its training data (Init: local only); DaSH "
        f"then selects datasets with budget {result.config.main_budget}. Test accuracy %, "
        f"mean ± std over {result.config.runs} runs.\n\n" + markdown_table(header, rows)
    )


def grouping_markdown(result: StudyResult) -> str:
    df = result.frame("grouping_ablation")
    targets = _targets(result, df)
    main = result.config.main_budget
    tol = result.config.reach_tolerance
    acc = _lookup(summarize(df[(df["budget"] == main) | df["method"].isin(REFERENCES)], targets))
    steps = {(str(r.target), str(r.method)): r for _, r in reach_summary(df, tol).iterrows()}
    header = ["Target", "Method", f"Accuracy % (budget {main})", "Evaluations to Global"]
    rows = []
    for t in targets:
        for m in _ordered_methods(df, list(GROUPING_METHODS)):
            rows.append(
                [
                    t,
                    label(m),
                    pm(*acc[(m, t)]) if (m, t) in acc else "–",
                    _reach_text(steps[(t, m)]) if (t, m) in steps else "–",
                ]
            )
    return (
        "# Grouping ablation (Table 4 style)\n\n"
        "Perfect groups (one domain each), mixed groups (one foreign dataset per group), "
        "cross-domain groups (one dataset of every domain per group) and no hierarchy (flat). "
        f"Evaluations to Global: first checkpoint within {100 * tol:g} point(s) of the run's "
        "Global accuracy, mean ± std over the runs that reached it (checkpoints "
        f"{', '.join(str(c) for c in sorted({int(b) for b in df['budget'] if int(b) > 0}))})."
        "\n\n" + markdown_table(header, rows, left=2)
    )


def curve_markdown(result: StudyResult) -> str:
    df = result.frame("curve")
    tol = result.config.reach_tolerance
    steps = {(str(r.target), str(r.method)): r for _, r in reach_summary(df, tol).iterrows()}
    targets = _targets(result, df)
    methods = [m for m in _ordered_methods(df) if m not in REFERENCES]
    rows = [
        [label(m), *(_reach_text(steps[(t, m)]) if (t, m) in steps else "–" for t in targets)]
        for m in methods
    ]
    return (
        "## Evaluations to come within "
        f"{100 * tol:g} point(s) of Global (Figure 4's question)\n\n"
        "Mean ± std over runs that reached it; (r/n) when only r of n runs did. Resolution: "
        f"the checkpoints {', '.join(str(c) for c in sorted({int(b) for b in df['budget'] if b}))}"
        ".\n\n" + markdown_table(["Method", *targets], rows)
    )


def overhead_markdown(result: StudyResult) -> str:
    df = final_rows(result)
    summary = overhead_summary(df)
    rows = [
        [
            label(r.method),
            int(r.budget),
            f"{r.evaluations:.1f}",
            f"{r.evaluation_s:.3f}",
            pm(1000 * r.overhead_s, 1000 * r.overhead_std, digits=2),
            int(r.runs),
        ]
        for r in summary.itertuples()
    ]
    total = result.timings.get("total")
    banks = result.timings.get("reward_banks")
    return (
        "# Cost: evaluations and time outside evaluations\n\n"
        "Per run (mean over targets × runs). Policies replay a reward bank, so their "
        "evaluation seconds are replay time; a real run costs one training per evaluation. "
        "Overhead is the time spent deciding (policy ask/tell/recommend, selectors), outside "
        "evaluations and the final model's training. pyDVL evaluates real subsets.\n\n"
        + markdown_table(
            [
                "Method",
                "Budget",
                "Evaluations",
                "Evaluation s",
                "Overhead ms (mean ± std)",
                "Rows",
            ],
            rows,
        )
        + f"\nFilling the reward banks took {banks if banks is not None else '–'} s; the whole "
        f"study {total if total is not None else '–'} s.\n"
    )


# --- plots -----------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    # The object-oriented API (no pyplot): no global state, no GUI backend, and about 3 s less
    # import time on a busy machine; Figure.savefig renders with Agg.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


#: Strong, distinct colours for the two methods every plot puts in front (drawn last).
FRONT_STYLES: dict[str, dict[str, Any]] = {
    "hits": {"color": "#d62728", "lw": 2.4, "zorder": 6},
    "dash": {"color": "#1f3fbf", "lw": 2.4, "zorder": 5},
}
#: Muted colours for everything else, in order of appearance.
BACK_COLOURS: tuple[str, ...] = (
    "#8c8c8c",
    "#b5a642",
    "#7fb77e",
    "#c49c94",
    "#9edae5",
    "#c5b0d5",
    "#f7b6d2",
    "#bcbd22",
    "#17becf",
    "#ff9896",
)
#: Line style of a regrouped variant (``-mixed``, ``-cross``) of a method.
GROUPING_STYLES: dict[str, str] = {"perfect": "-", "mixed": "--", "cross": ":"}


def _split_grouping(method: str) -> tuple[str, str]:
    base, _, grouping = method.rpartition("-")
    if base and grouping in GROUPING_STYLES:
        return base, grouping
    return method, "perfect"


def _plot_order(methods: Sequence[str]) -> list[str]:
    """Methods in drawing order: the engine and DaSH (and their variants) last."""

    def rank(m: str) -> int:
        base, _ = _split_grouping(m)
        return {"dash": 1, "hits": 2}.get(base, 0)

    return sorted(methods, key=rank)


def plot_caption(result: StudyResult, study: str = "curve") -> str:
    """The one-line caption under every curve plot: what is plotted and what the band is."""
    return (
        f"Test accuracy (%) of the final top-k selection vs evaluation budget (log axis), "
        f"mean of {result.config.runs} runs; band = ± 1 std over runs; "
        "dashed grey = Global, dotted grey = Local."
    )


def _draw_curve(ax: Any, df: pd.DataFrame, target: str) -> None:
    sub = df[df["target"] == target]
    summary = curve_summary(sub)
    methods = list(dict.fromkeys(summary["method"]))
    colours: dict[str, str] = {}
    for m in _plot_order(methods):
        g = summary[summary["method"] == m].sort_values("budget")
        # x = the budget, not the evaluations used: a method that spends none (scores only)
        # is then a flat line across the axis instead of a point at 0 on a log axis.
        x = g["budget"].to_numpy(float)
        y = g["mean"].to_numpy(float)
        s = g["std"].to_numpy(float)
        base, grouping = _split_grouping(str(m))
        style: dict[str, Any] = dict(FRONT_STYLES.get(base, {"lw": 1.3, "zorder": 2}))
        if "color" not in style:
            if base not in colours:
                colours[base] = BACK_COLOURS[len(colours) % len(BACK_COLOURS)]
            style["color"] = colours[base]
        ls = GROUPING_STYLES[grouping]
        if base == "scores-only":  # flat by construction: black dash-dot, never hidden
            ls, style["color"], style["zorder"] = "-.", "black", 4
        ax.plot(x, y, marker="o", ms=3, ls=ls, label=label(str(m)), **style)
        ax.fill_between(
            x, y - s, y + s, color=style["color"], alpha=0.12, zorder=style["zorder"] - 1
        )
    for ref, style in (("local", ":"), ("global", "--")):
        vals = sub[sub["method"] == ref]["accuracy"]
        if len(vals):
            ax.axhline(100 * float(vals.mean()), color="grey", ls=style, lw=1, label=label(ref))
    ax.set_xscale("log")
    budgets = sorted({int(b) for b in summary["budget"]})
    ax.set_xticks(budgets)
    ax.set_xticklabels([str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_title(target)
    ax.set_xlabel("evaluation budget (log)")
    ax.set_ylabel("test accuracy %")
    ax.grid(alpha=0.3)


def _plot_study(
    result: StudyResult, study: str, out_dir: Path, prefix: str, each: bool = True
) -> list[Path]:
    df = result.frame(study)
    if df.empty:
        return []
    targets = _targets(result, df)
    caption = plot_caption(result, study)
    paths = []
    for t in targets if each else []:
        fig = _figure(5.4, 4.2)
        ax = fig.add_subplot()
        _draw_curve(ax, df, t)
        ax.legend(fontsize=6, ncol=2)
        fig.text(0.01, 0.01, caption, fontsize=5.5, wrap=True)
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.19, top=0.93)
        path = out_dir / f"{prefix}_{t}.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
    ncol = min(3, len(targets))
    nrow = math.ceil(len(targets) / ncol)
    height = 3.3 * nrow + 1.4
    fig = _figure(4.4 * ncol, height)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, t in zip(axes.flat, targets, strict=False):
        _draw_curve(ax, df, t)
    for ax in list(axes.flat)[len(targets) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.3 / height),
        ncol=min(6, len(labels)),
        fontsize=8,
    )
    fig.text(0.5, 0.04 / height, caption, fontsize=8, ha="center", va="bottom")
    # Room in inches for the x labels, the shared legend and the caption below the last row.
    fig.subplots_adjust(left=0.07, right=0.98, top=1 - 0.3 / height, bottom=1.85 / height)
    fig.subplots_adjust(hspace=0.45)
    path = out_dir / f"{prefix}s.png"
    fig.savefig(path, dpi=100)
    return [*paths, path]


def plot_curves(result: StudyResult, out_dir: Path) -> list[Path]:
    """``curve_<target>.png`` per target and ``curves.png`` with all targets."""
    return _plot_study(result, "curve", out_dir, "curve")


def plot_grouping(result: StudyResult, out_dir: Path) -> list[Path]:
    """``groupings.png``: the grouping ablation (perfect / mixed / cross), a plot of its own."""
    return _plot_study(result, "grouping_ablation", out_dir, "grouping", each=False)


# --- JSON and the folder ---------------------------------------------------------------------
def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records"))


def summaries(result: StudyResult) -> dict[str, Any]:
    """Every aggregated number the markdown files show, as JSON-ready records."""
    out: dict[str, Any] = {}
    fin = final_rows(result)
    if not fin.empty:
        out["final_accuracy"] = {}
        for b in sorted({int(b) for b in fin["budget"] if int(b) > 0}):
            df = final_rows(result, b)
            out["final_accuracy"][str(b)] = _records(summarize(df, _targets(result, df)))
        out["overhead"] = _records(overhead_summary(fin))
    tol = result.config.reach_tolerance
    for study in ("curve", "grouping_ablation"):
        df = result.frame(study)
        if not df.empty:
            out[f"{study}_points"] = _records(curve_summary(df))
            out[f"{study}_reach"] = _records(reach_summary(df, tol))
    for study in ("small_budget",):
        df = result.frame(study)
        if not df.empty:
            out[study] = _records(summarize(df, _targets(result, df)))
    df = result.frame("weak_init")
    if not df.empty:
        out["weak_init"] = {
            f"{f:g}": _records(
                summarize(
                    df[np.isclose(df["local_fraction"].astype(float), f)], _targets(result, df)
                )
            )
            for f in sorted({float(f) for f in df["local_fraction"]})
        }
    return out


def write_report(result: StudyResult, out_dir: str | Path, *, plots: bool = True) -> Path:
    """Write every file of the report into ``out_dir`` (created) and return it.

    ``plots=False`` skips the PNGs (the slow part), e.g. for quick checks.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, str]] = []

    def put(name: str, text: str, what: str) -> None:
        (out / name).write_text(text)
        written.append((name, what))

    def ran(study: str) -> bool:
        return not result.frame(study).empty

    if any(ran(s) for s in FINAL_STUDIES):
        text = main_table_markdown(result)
        if ran("curve"):
            text += "\n" + curve_markdown(result)
        put("main_table.md", text, "Table 1: accuracy per target and budget, Local and Global")
        put("overhead.md", overhead_markdown(result), "evaluations and seconds outside them")
    elif ran("curve"):
        put("main_table.md", curve_markdown(result), "evaluations to reach Global")
    if ran("small_budget"):
        put("small_budget.md", small_budget_markdown(result), "Figure 5: small budget")
    if ran("weak_init"):
        put("weak_init.md", weak_init_markdown(result), "Table 3: weak initial model")
    if ran("grouping_ablation"):
        put("grouping.md", grouping_markdown(result), "Table 4: grouping ablation")
    for path in plot_curves(result, out) if plots else []:
        written.append((path.name, "Figure 4: accuracy vs evaluations"))
    for path in plot_grouping(result, out) if plots else []:
        written.append((path.name, "grouping ablation: accuracy vs evaluations"))
    data = result.to_dict()
    data["command"] = result.config.command
    data["summaries"] = summaries(result)
    (out / "results.json").write_text(json.dumps(data, indent=1, default=_json_default))
    written.append(("results.json", "every raw row and summary, config, versions"))
    put("README.md", _readme(result, written), "this index")
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _readme(result: StudyResult, written: list[tuple[str, str]]) -> str:
    cfg = result.config
    cmd = cfg.command or "dashsel bench " + cfg.suite_name
    title = (
        f"{cfg.suite_name}"
        + (f", {cfg.n_subsets} subsets per domain" if cfg.n_subsets != 3 else "")
        + (", with traps" if cfg.traps else "")
    )
    lines = [
        f"# {title}: study results\n",
        "Produced by:\n",
        f"```\n{cmd}\n```\n",
        "## Files\n",
        *[f"* [`{name}`]({name}): {what}" for name, what in written],
        "* `README.md`: this index\n",
        "## Setup\n",
        f"* targets: {', '.join(cfg.targets or [])}; runs: {cfg.runs} (seeds 0..{cfg.runs - 1}); "
        f"budgets: {', '.join(map(str, cfg.budgets))} (main budget {cfg.main_budget})",
        f"* evaluator: {cfg.evaluator_name}; {cfg.n_subsets} subsets per domain; split seed "
        f"{cfg.split_seed}",
        f"* methods: {', '.join(cfg.methods)}",
        "* traps: "
        + (
            "yes: target-look datasets with 70% wrong labels, with a few classes only, and "
            "near-duplicates of the target's candidates, in groups of their own and mixed into "
            "honest groups (the suite's `make_pool(traps=True)`)"
            if cfg.traps
            else "no"
        ),
        "* training-free scores (`hits`, `hits-*`, `scores-only`): `dashsel.scores.score_pool` "
        "defaults, cached per pool; the engine gets `otdd`, `label_quality` and `mmd` as prior "
        "covariates, `scores-only` keeps the top k by `score_default` (0 evaluations)",
        f"* reward bank: every candidate evaluated with {cfg.n_seeds} seeds (cached); policies "
        "replay reward[dataset][trial seed mod n_seeds]; final models are trained for real "
        "and scored on the test split",
        "* final selection: top-k datasets by posterior mean, k = "
        + (str(cfg.k) if cfg.k else f"number of same-domain candidates ({cfg.n_subsets})")
        + (f" (percentile {cfg.percentile})" if cfg.percentile is not None else ""),
        "* instance-level baselines: sample budget = number of samples in the datasets DaSH "
        "chose in the same run and budget; candidates = union of every candidate dataset",
        "* pyDVL Banzhaf evaluates real subsets (it cannot use the single-dataset reward bank) "
        "with the same evaluation budget",
        "* numbers: accuracy %, mean ± std (ddof=1) over runs; AVG = mean over targets per run",
        "",
        "## Timings (s)\n",
        *[f"* {k}: {v}" for k, v in result.timings.items()],
        "",
    ]
    if result.notes:
        lines += ["## Notes\n", *[f"* {n}" for n in result.notes], ""]
    lines += ["## Versions\n", *[f"* {k}: {v}" for k, v in result.versions.items()], ""]
    return "\n".join(lines)
