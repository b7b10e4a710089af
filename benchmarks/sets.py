"""The best set, not the best members: the set-aware choice and set refinement on digits5-100,
with and without traps (k = 20).

Methods (see :mod:`dashsel_bench.methods`): the engine as the library runs it (``hits``: a
near-copy of a chosen dataset gives way to the next one), the engine without that
(``hits-nodedupe``), the engine spending 10 % of the budget on evaluating the chosen set and
swaps (``hits-set``), and the two answers that need no evaluation: ``scores-only`` and
``scores-only-dedupe``. Each new set costs a real training (about 5-20 s on a shared 2-core
machine), hence the default of 3 runs at one budget. Writes
``docs/benchmarks/sets.md`` and ``sets.json`` (the raw rows) with the command.

Usage::

    python benchmarks/sets.py --runs 3 --budgets 30
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashsel_bench.config import StudyConfig
from dashsel_bench.methods import label, set_evaluations
from dashsel_bench.runner import StudyRunner

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "sets.md"
METHODS = ("hits", "hits-nodedupe", "hits-set", "scores-only", "scores-only-dedupe")
TARGETS = ("svhn", "mnistm", "syn")
SET_SHARE = 0.1


def run_pool(
    traps: bool, runs: int, budgets: tuple[int, ...], command: str, targets: tuple[str, ...]
) -> Any:
    config = StudyConfig(
        suite="digits5",
        n_subsets=20,
        targets=targets,
        methods=METHODS,
        budgets=budgets,
        checkpoints=budgets,
        studies=("main_table",),
        traps=traps,
        runs=runs,
        workers=1,
        command=command,
    )
    runner = StudyRunner(config, progress=None)
    t0 = time.perf_counter()
    result = runner.run()
    seconds = time.perf_counter() - t0
    detection = []
    for t in targets:
        pool = runner.pool(t, 1.0)
        red = runner.near_copies(t, 1.0)
        planted = {
            (e.id, str(e.meta["copy_of"]))
            for e in pool.entries
            if e.meta.get("trap") == "duplicate"
        }
        found = {(p.copy, p.of) for p in red.pairs}
        und = found | {(b, a) for a, b in found}
        detection.append(
            {
                "target": t,
                "candidates": len(pool),
                "planted": len(planted),
                "found": sum(p in found for p in planted),
                "false": len(
                    {frozenset(p) for p in und if p not in planted and p[::-1] not in planted}
                ),
                "max_ratio_planted": max(
                    (p.ratio for p in red.pairs if (p.copy, p.of) in planted), default=float("nan")
                ),
                "min_ratio_other": min(
                    (
                        p.ratio
                        for p in red.pairs
                        if (p.copy, p.of) not in planted and (p.of, p.copy) not in planted
                    ),
                    default=float("nan"),
                ),
                "seconds": red.seconds,
            }
        )
    return result.frames["main_table"], detection, seconds


def _kind(dataset: str, target: str) -> str:
    m = re.match(r"trap-(\w+?)\d+$", dataset)
    if m:
        return m.group(1)
    return "target" if dataset.startswith(target) else "other"


def accuracy_table(rows: pd.DataFrame, budgets: tuple[int, ...]) -> list[str]:
    """Mean over targets within each run, then mean ± standard error over runs."""
    refs = rows[rows.kind == "reference"]
    out = ["| Method | " + " | ".join(f"{b} evals" for b in budgets) + " |"]
    out.append("|:---|" + "---:|" * len(budgets))
    for m in METHODS:
        cells = []
        for b in budgets:
            sub = rows[(rows.method == m) & (rows.budget == b)]
            per_run = sub.groupby("run").accuracy.mean() * 100
            se = per_run.std(ddof=1) / np.sqrt(len(per_run)) if len(per_run) > 1 else 0.0
            cells.append(f"{per_run.mean():.1f} ± {se:.1f}")
        out.append(f"| {label(m)} | " + " | ".join(cells) + " |")
    for ref in ("global", "local"):
        acc = refs[refs.method == ref].groupby("run").accuracy.mean().mean() * 100
        out.append(f"| {label(ref)} | " + " | ".join(f"{acc:.1f}" for _ in budgets) + " |")
    return out


def composition_table(
    rows: pd.DataFrame, budgets: tuple[int, ...], copy_of: dict[str, dict[str, str]]
) -> list[str]:
    """What the chosen 20 hold, on average per (target, run). A near-duplicate counts as
    *redundant* when its original is chosen too, as a *stand-in* when it is chosen alone (it
    then does its original's job)."""
    kinds = ("target", "other", "redundant copy", "stand-in copy", "mislabelled", "fewclass")
    out = ["| Method | budget | " + " | ".join(kinds) + " |", "|:---|---:|" + "---:|" * len(kinds)]
    for m in METHODS:
        for b in budgets:
            sub = rows[(rows.method == m) & (rows.budget == b)]
            counts = dict.fromkeys(kinds, 0.0)
            for _, r in sub.iterrows():
                chosen = set(filter(None, str(r.selected).split(";")))
                for d in chosen:
                    kind = _kind(d, r.target)
                    if kind == "duplicate":
                        original = copy_of.get(r.target, {}).get(d)
                        kind = "redundant copy" if original in chosen else "stand-in copy"
                    counts[kind] += 1
            n = max(1, len(sub))
            out.append(
                f"| {label(m)} | {b} | " + " | ".join(f"{counts[k] / n:.1f}" for k in kinds) + " |"
            )
    return out


def per_target_table(rows: pd.DataFrame, budget: int) -> list[str]:
    """Accuracy % per target (mean over runs)."""
    targets = list(dict.fromkeys(rows.target))
    out = ["| Method | " + " | ".join(targets) + " |", "|:---|" + "---:|" * len(targets)]
    for m in (*METHODS, "global"):
        sub = rows[(rows.method == m) & ((rows.budget == budget) | (rows.kind == "reference"))]
        accs = sub.groupby("target").accuracy.mean() * 100
        out.append(f"| {label(m)} | " + " | ".join(f"{accs[t]:.1f}" for t in targets) + " |")
    return out


def paired(rows: pd.DataFrame, a: str, b: str, budget: int) -> tuple[float, float, int]:
    """Mean ± standard error over runs of (a - b), accuracy points, each run averaged over the
    targets; ``b`` may be ``"global"``."""

    def per_run(m: str) -> pd.Series:
        sub = rows[(rows.method == m) & ((rows.budget == budget) | (rows.kind == "reference"))]
        return sub.groupby("run").accuracy.mean() * 100

    d = (per_run(a) - per_run(b)).dropna()
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se, len(d)


def margins(targets: tuple[str, ...], traps: bool) -> list[dict[str, Any]]:
    """Every compared pair's ratio (threshold 0.99): the smallest between candidates that are
    not a planted copy pair, the largest of a planted pair."""
    from dashsel.sets import find_near_copies
    from dashsel_bench.suites import resolve_suite

    suite = resolve_suite("digits5")
    out = []
    for t in targets:
        pool = suite.make_pool(
            t, n_subsets=20, grouping="perfect", local_fraction=1.0, seed=0, traps=traps
        )
        planted = {
            frozenset((e.id, str(e.meta["copy_of"])))
            for e in pool.entries
            if e.meta.get("trap") == "duplicate"
        }
        red = find_near_copies(pool, threshold=0.99)
        other = [p.ratio for p in red.pairs if frozenset((p.copy, p.of)) not in planted]
        mine = [p.ratio for p in red.pairs if frozenset((p.copy, p.of)) in planted]
        out.append(
            {
                "target": t,
                "largest_planted": max(mine, default=float("nan")),
                "smallest_other": min(other, default=float("nan")),
                "copy_of": {
                    e.id: str(e.meta["copy_of"])
                    for e in pool.entries
                    if e.meta.get("trap") == "duplicate"
                },
            }
        )
    return out


def reading(results: dict[str, Any], budget: int) -> list[str]:
    """The page's conclusions, worded from the measured differences (nothing typed in)."""

    def verdict(m: float, se: float) -> str:
        if not np.isfinite(se) or abs(m) <= 2 * se:
            return "no difference beyond the noise"
        return "better" if m > 0 else "worse"

    out = ["## Reading", ""]
    for key, title in (("traps", "with traps"), ("plain", "without traps")):
        if key not in results:
            continue
        rows = results[key][0]
        d1 = paired(rows, "hits", "hits-nodedupe", budget)
        d2 = paired(rows, "hits-set", "hits", budget)
        d3 = paired(rows, "scores-only-dedupe", "scores-only", budget)
        d4 = paired(rows, "scores-only-dedupe", "hits", budget)
        g1 = paired(rows, "hits", "global", budget)
        out.append(
            f"* {title.capitalize()}, at {budget} evaluations: the set-aware engine against the "
            f"engine without it {d1[0]:+.1f} ± {d1[1]:.1f} points ({verdict(*d1[:2])}); set "
            f"refinement against the engine {d2[0]:+.1f} ± {d2[1]:.1f} "
            f"({verdict(*d2[:2])}; the engine's gap to Global is {g1[0]:+.1f} ± {g1[1]:.1f}); "
            f"the scores' top-k deduplicated against the plain one {d3[0]:+.1f} ± {d3[1]:.1f}, "
            f"and against the engine {d4[0]:+.1f} ± {d4[1]:.1f} ({verdict(*d4[:2])})."
        )
    return out


def render(
    results: dict[str, Any], command: str, runs: int, budgets: tuple[int, ...], targets: list[str]
) -> list[str]:
    set_evals = ", ".join(f"{set_evaluations(b, SET_SHARE)} of {b}" for b in budgets)
    lines = [
        "# The best set, not the best members",
        "",
        f"Generated by `{command}` (`benchmarks/sets.py`). digits5 with 20 subsets per domain "
        f"(100 candidates; with traps 130: 10 mislabelled, 10 few-class, 10 near-duplicates of "
        f"the target's own subsets), targets {', '.join(targets)}, k = 20, {runs} runs; "
        "accuracy: test accuracy % of local + the chosen 20, averaged over the targets within a "
        "run, mean ± standard error over runs. The engine's evaluations replay the study's "
        "reward bank (single-dataset rewards); *Engine + set refinement* gives "
        f"{set_evals} evaluations to the set instead (one model on local + the whole set, "
        "validation accuracy; then the weakest member swapped for the next candidate of the "
        "engine's ranking, kept if the set's validation accuracy improves). Each new set is a "
        "real training, which is why the study is small; its standard errors say how small.",
        "",
    ]
    lines += [*reading(results, budgets[-1]), ""]
    for key, title in (("traps", "with traps"), ("plain", "without traps")):
        if key not in results:
            continue
        rows, detection, seconds = results[key]
        lines += [f"## digits5-100 {title}", "", *accuracy_table(rows, budgets), ""]
        lines += ["Paired differences (accuracy points, mean ± standard error over runs):", ""]
        for a, b in (
            ("hits", "hits-nodedupe"),
            ("hits-set", "hits"),
            ("hits", "global"),
            ("scores-only-dedupe", "scores-only"),
            ("scores-only-dedupe", "global"),
            ("scores-only-dedupe", "hits"),
        ):
            for budget in budgets:
                m, se, n = paired(rows, a, b, budget)
                lines.append(
                    f"* {label(a)} − {label(b)} at {budget}: {m:+.1f} ± {se:.1f} ({n} runs)"
                )
        lines.append("")
        lines += [
            "Per target (mean over runs, at the largest budget):",
            "",
            *per_target_table(rows, budgets[-1]),
            "",
        ]
        if key == "traps":
            copy_of = {d["target"]: d.get("copy_of", {}) for d in detection}
            lines += [
                "What the chosen 20 hold, on average per (target, run): target-domain subsets, "
                "other domains, near-duplicates (redundant: their original is chosen too; "
                "stand-in: chosen without it) and the other traps.",
                "",
                *composition_table(rows, budgets, copy_of),
                "",
            ]
        lines += [
            "Near-copy search on the pool (`dashsel.sets.find_near_copies`, defaults, threshold "
            "0.3): planted near-duplicates found (trap -> its original), other pairs flagged; "
            "then, from a search with the threshold at 0.99 (every compared pair), the largest "
            "ratio of a planted pair and the smallest of any other pair: the margin on either "
            "side of 0.3.",
            "",
            "| target | candidates | planted | found | other pairs flagged | seconds "
            "| largest planted ratio | smallest other ratio |",
            "|:---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for d in detection:
            lines.append(
                f"| {d['target']} | {d['candidates']} | {d['planted']} | {d['found']} | "
                f"{d['false']} | {d['seconds']:.1f} | {d.get('largest_planted', float('nan')):.3f} "
                f"| {d.get('smallest_other', float('nan')):.3f} |"
            )
        lines += ["", f"Study wall time: {seconds:.0f} s (a shared, loaded machine).", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--budgets", type=int, nargs="+", default=[30])
    ap.add_argument("--targets", nargs="+", default=list(TARGETS))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--from-json", type=Path, default=None, help="render the page again from a sets.json"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    budgets = tuple(args.budgets)
    command = "python benchmarks/sets.py " + " ".join(argv if argv is not None else sys.argv[1:])
    command = command.strip()
    results: dict[str, Any] = {}
    if args.from_json is not None:
        raw = json.loads(args.from_json.read_text())
        command = raw["command"]
        for key in ("traps", "plain"):
            if key in raw:
                v = raw[key]
                results[key] = (pd.DataFrame(v["rows"]), v["near_copies"], v["seconds"])
        budgets = tuple(raw.get("budgets", budgets))
        args.runs = int(raw.get("runs", args.runs))
        args.targets = list(raw.get("targets", args.targets))
    else:
        for traps in (True, False):
            targets = tuple(args.targets)
            rows, detection, seconds = run_pool(traps, args.runs, budgets, command, targets)
            results["traps" if traps else "plain"] = (rows, detection, seconds)
            print(f"traps={traps}: {seconds:.0f}s", flush=True)
    for key, (_, detection, _) in results.items():
        if "largest_planted" not in detection[0]:
            for d, m in zip(detection, margins(tuple(args.targets), key == "traps"), strict=True):
                d.update(m)
    lines = render(results, command, args.runs, budgets, args.targets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    raw_out = {
        "command": command,
        "runs": args.runs,
        "budgets": list(budgets),
        "targets": list(args.targets),
        **{
            k: {"rows": v[0].to_dict(orient="records"), "near_copies": v[1], "seconds": v[2]}
            for k, v in results.items()
        },
    }
    args.out.with_suffix(".json").write_text(json.dumps(raw_out, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
