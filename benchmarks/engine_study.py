"""Engine study on replay pools with known truth (issue 8, "Measure it").

Runs the engine (``hits``), ``dash``, flat Thompson sampling (``flat``), ``ucb``,
``roundrobin``, the ``group-mean`` heuristic and the engine with scores (``hits+scores``,
reported but not part of the targets) on the replay suites of
:mod:`dashsel_bench.replay_suites`, with a direct ask/tell loop. Each run evaluates up to one
evaluation per dataset and records the top-k choice (k = 10) at budgets of 1/16, 1/8, 1/4, 1/2
and 1 evaluation per dataset (policies do not know the budget, so one run gives every budget).
Pools of run r use seed ``seed_start + r``; the policy seed is r.

Tune on seeds 0-99 (``--seed-start 0``), report on held-out seeds (default 1000+)::

    nice -n 10 python benchmarks/engine_study.py --out docs/benchmarks/engine
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dashsel.policies import UCB1, DaSH, FlatTS, RoundRobin  # noqa: E402
from dashsel.policies.engine import HiTS  # noqa: E402
from dashsel.policies.heuristic import GroupMean  # noqa: E402
from dashsel_bench.replay_suites import KINDS, make_replay_pool  # noqa: E402

K = 10
GAP = 0.01  # "within 0.01 of the best set's utility" (utility units, like 1 accuracy point)
SE_TARGET = 0.01  # the standard error of a cell's paired difference the issue asks for
FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
METHODS = ("hits", "dash", "flat", "ucb", "roundrobin", "group-mean", "hits+scores")
BASELINES = ("dash", "flat", "ucb", "roundrobin", "group-mean")
ENGINE = "hits"
SIDE = ("hits+scores",)  # reported, not part of the targets: run on the full-budget pools only
# Pools per budget (1/16, 1/8, 1/4, 1/2, 1): small budgets are cheap and their cells noisy.
# Sized from the previous run's standard errors so that every cell's SE of Δ is below SE_TARGET.
# 1/16 and 1/8 run 4,000 pools: with 1,000 the uninformative 1/8 cell read -0.013 +- 0.005,
# an SE half the 0.01 tolerance, too coarse to say on which side of it the cell lies.
RUNS = "1/16:4000,1/8:4000,1/4:400,1/2:240,1:60"
RUNS_LARGE = "1/16:440,1/8:170,1/4:170,1/2:50,1:36"


def _policy(name: str, deterministic: bool):
    if name in ("hits", "hits+scores"):
        return HiTS(k=K, deterministic=deterministic)
    return {
        "dash": DaSH,
        "flat": FlatTS,
        "ucb": UCB1,
        "roundrobin": RoundRobin,
        "group-mean": GroupMean,
    }[name]()


def run_one(task: tuple[str, int, int, tuple[str, ...], int]) -> dict[str, Any]:
    """One pool (kind, seed_start + run) and every method on it, up to budget ``FRACTIONS[last]``.

    Pools that run the full budget also record, per method, the evaluations after which the
    chosen top-k stays within ``GAP`` (utility units) of the best k's mean utility.
    """
    kind, seed_start, run, methods, last = task
    pool = make_replay_pool(kind, seed_start + run)
    h, n = pool.hierarchy, pool.n_datasets
    budgets = [max(1, round(f * n)) for f in FRACTIONS[: last + 1]]
    track = last == len(FRACTIONS) - 1
    u = pool.utility
    best_mean = float(np.sort(u)[-K:].mean())
    out: dict[str, Any] = {"kind": kind, "seed": seed_start + run, "methods": {}}
    for name in methods:
        policy = _policy(name, pool.deterministic)
        if name == "hits+scores":
            policy.reset(h, run, covariates=pool.scores)
        else:
            policy.reset(h, run)
        noise = np.random.default_rng([seed_start + run, 99])  # same reward noise stream for all
        counts = np.zeros(n, dtype=np.int64)
        repeats, utils, t0 = 0, [], time.perf_counter()
        within_since: int | None = None  # first t of the current run of steps within GAP
        for t in range(1, budgets[-1] + 1):
            d = policy.ask()
            i = h.index(d)
            if counts[i] and (counts == 0).any():
                repeats += 1
            counts[i] += 1
            policy.tell(d, pool.reward(i, noise))
            if t in budgets or track:
                chosen = policy.recommend(k=K).datasets
                if t in budgets:
                    utils.append(pool.normalized_utility(chosen, K))
                if track:
                    idx = [h.index(c) for c in chosen]
                    ok = best_mean - float(u[idx].mean()) <= GAP + 1e-12
                    within_since = (within_since or t) if ok else None
        out["methods"][name] = {
            "utility": utils,
            "repeats": repeats,
            "seconds": time.perf_counter() - t0,
            "evals_to_target": within_since if track else None,
        }
    out["budgets"] = budgets
    return out


def summarise(raw: list[dict[str, Any]], methods: tuple[str, ...]) -> dict[str, Any]:
    """Per kind and budget: mean ± SE over the pools that reached the budget, paired Δ of the
    engine against the best baseline, and evaluations to within GAP of the best set."""
    res: dict[str, Any] = {}
    seen = {r["kind"] for r in raw}
    for kind in [k for k in KINDS if k in seen]:
        rows = [r for r in raw if r["kind"] == kind]
        full = max(len(r["budgets"]) for r in rows)
        budgets = next(r["budgets"] for r in rows if len(r["budgets"]) == full)
        cells = []
        for b in range(full):
            reached = [r for r in rows if len(r["budgets"]) > b]
            u = {
                m: np.array([r["methods"][m]["utility"][b] for r in reached if m in r["methods"]])
                for m in methods
            }
            cell: dict[str, Any] = {
                "fraction": FRACTIONS[b],
                "budget": budgets[b],
                "pools": len(reached),
                "pools_scores": int(u["hits+scores"].size) if "hits+scores" in u else 0,
            }
            for m in methods:
                x = u[m]
                cell[m] = {"mean": float(x.mean()), "se": _se(x)}
            base = [m for m in BASELINES if m in methods]
            if ENGINE in methods and base:
                best = max(base, key=lambda m: cell[m]["mean"])
                diff = u[ENGINE] - u[best]
                cell["best_baseline"] = best
                cell["engine_minus_best"] = {"mean": float(diff.mean()), "se": _se(diff)}
            cells.append(cell)
        tracked = [r for r in rows if len(r["budgets"]) == len(FRACTIONS)]
        target: dict[str, Any] = {}
        for m in methods:
            ev = [r["methods"][m]["evals_to_target"] for r in tracked]
            got = np.array([e for e in ev if e is not None], dtype=float)
            # Median over every tracked pool, a pool that never got there counting as
            # "more than the budget": defined only when at least half got there.
            med = float(np.median(np.r_[got, np.full(len(ev) - got.size, np.inf)])) if ev else None
            target[m] = {
                "share": got.size / len(ev) if ev else None,
                "median": med if med is not None and math.isfinite(med) else None,
                "evals": [e for e in ev],
            }
        res[kind] = {
            "runs": len(rows),
            "tracked": len(tracked),
            "budget": budgets[-1],
            "seeds": [min(r["seed"] for r in rows), max(r["seed"] for r in rows)],
            "cells": cells,
            "target": target,
            "repeats": {
                m: float(np.mean([r["methods"][m]["repeats"] for r in tracked])) for m in methods
            }
            if tracked
            else {},
            "seconds_per_run": {
                m: float(np.mean([r["methods"][m]["seconds"] for r in tracked])) for m in methods
            }
            if tracked
            else {},
        }
    return res


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")


STYLE = {
    "flat": ("#8c8c8c", "-"),
    "ucb": ("#b5a642", "-"),
    "roundrobin": ("#a0c4e8", "-"),
    "group-mean": ("#9467bd", "--"),
    "hits+scores": ("#ff9896", ":"),
    "dash": ("#1f4fd1", "-"),  # strong blue
    "hits": ("#d62728", "-"),  # strong red
}


def _order(methods: tuple[str, ...]) -> list[str]:
    # The engine and dash drawn last, on top.
    return [m for m in methods if m not in ("dash", "hits")] + [
        m for m in ("dash", "hits") if m in methods
    ]


def plot(res: dict[str, Any], methods: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(res)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.8), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, kind in zip(axes, kinds, strict=True):
        cells = res[kind]["cells"]
        x = [c["fraction"] for c in cells]
        for m in _order(methods):
            mean = np.array([c[m]["mean"] for c in cells])
            se = np.array([c[m]["se"] for c in cells])
            color, ls = STYLE[m]
            lw = 2.6 if m in ("hits", "dash") else 1.3
            ax.plot(x, mean, ls, color=color, lw=lw, label=m, marker="o", ms=3)
            ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)  # log budget axis: the small-budget regime gets room
        ax.set_xticks(x, [f"{_frac(c['fraction'])}\n({c['budget']})" for c in cells])
        pools = "/".join(str(c["pools"]) for c in cells)
        ax.set_title(f"{kind}\npools per budget {pools}", fontsize=9)
        ax.set_xlabel("evaluations per dataset (evaluations)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"normalized utility of top-{K}")
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"Normalized utility of the chosen top-{K} (0 = average dataset, 1 = best {K}) vs budget "
        "on held-out replay pools; band = ±1 standard error of the mean over pools",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_target(res: dict[str, Any], methods: tuple[str, ...], path: Path) -> None:
    """Share of pools whose choice is within GAP of the best set from t evaluations on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in res if res[k]["tracked"]]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.8), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, kind in zip(axes, kinds, strict=True):
        r = res[kind]
        budget = r["budget"]
        t = np.unique(np.geomspace(1, budget, 200).round().astype(int))
        for m in _order(methods):
            ev = np.array([e if e is not None else np.inf for e in r["target"][m]["evals"]])
            share = (ev[None, :] <= t[:, None]).mean(axis=1)
            # Band: ±1 binomial standard error of the share.
            se = np.sqrt(share * (1 - share) / ev.size)
            color, ls = STYLE[m]
            lw = 2.6 if m in ("hits", "dash") else 1.3
            ax.step(t, share, ls, where="post", color=color, lw=lw, label=m)
            ax.fill_between(t, share - se, share + se, step="post", color=color, alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.set_xlim(max(1, budget // 32), budget)
        ax.set_title(f"{kind} ({r['tracked']} pools, budget {budget})", fontsize=9)
        ax.set_xlabel("evaluations")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"share of pools within {GAP} of the best {K}")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(
        f"Share of held-out pools whose chosen top-{K} is within {GAP} of the best {K}'s mean "
        "utility from that many evaluations on; band = ±1 binomial standard error",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme(res: dict[str, Any], methods: tuple[str, ...], meta: dict[str, Any]) -> str:
    lines = [
        "# Engine study: replay pools with known truth",
        "",
        f"Generated by `{meta['command']}` ({meta['minutes']:.1f} min on {meta['workers']} "
        f"workers). Pool seeds from {meta['seed_start']} "
        + (
            "(held out: the engine's settings were chosen on seeds 0-99). k = "
            if meta["seed_start"] >= 100
            else "(NOT held out: the engine's settings were chosen on seeds 0-99). k = "
        )
        + f"{K}; every method with its default settings; the engine gets `k={K}` and "
        "`deterministic=True` on the deterministic kind. `hits+scores` is the engine with the "
        "pool's noisy score as covariate (not part of the targets; run on the full-budget pools "
        "only, so its cells have fewer pools). Small budgets are cheap, so "
        "more pools run them: a pool runs up to the largest budget whose pool count covers it "
        f"(counts: `{meta['runs']}`, large: `{meta['runs_large']}`), and every cell uses every "
        "pool that reached its budget.",
        "",
        "![normalized utility by budget](engine_study.png)",
        "",
        f"*Normalized utility of the chosen top-{K} by budget (log axis); band = ±1 standard "
        "error of the mean over pools.*",
        "",
        f"![evaluations to within {GAP} of the best set](engine_target.png)",
        "",
        f"*Share of the full-budget pools whose chosen top-{K} stays within {GAP} (utility units, "
        f"like one accuracy point) of the best {K}'s mean utility from that many evaluations on "
        "(log axis); band = ±1 binomial standard error.*",
        "",
        f"Normalized utility of the chosen top-{K} (0 = average dataset, 1 = best {K}), mean ± "
        "standard error over pools. `Δ` = engine minus the best of dash, flat, ucb, roundrobin "
        "and group-mean in that cell (paired over pools), ± its standard error; a `*` marks a "
        f"standard error of Δ at or above {SE_TARGET}.",
        "",
    ]
    for kind, r in res.items():
        lines += [f"## {kind} ({r['runs']} pools, seeds {r['seeds'][0]}-{r['seeds'][1]})", ""]
        lines.append("| budget | pools | " + " | ".join(methods) + " | Δ (best baseline) |")
        lines.append("|---" * (len(methods) + 3) + "|")
        for c in r["cells"]:
            row = [f"{c['budget']} ({_frac(c['fraction'])})", str(c["pools"])]
            row += [f"{c[m]['mean']:.3f} ± {c[m]['se']:.3f}" for m in methods]
            d = c.get("engine_minus_best")
            star = "*" if d and not d["se"] < SE_TARGET else ""
            row.append(
                f"{d['mean']:+.3f} ± {d['se']:.3f}{star} ({c['best_baseline']})" if d else ""
            )
            lines.append("| " + " | ".join(row) + " |")
        if r["tracked"]:
            tg = r["target"]
            lines += [
                "",
                f"Evaluations to within {GAP} of the best {K}'s utility (and staying there), "
                f"{r['tracked']} full-budget pools: share of pools that got there within the "
                f"budget of {r['budget']}, median evaluations (over all pools; `>{r['budget']}` "
                "when fewer than half got there)",
                "",
                "| | " + " | ".join(methods) + " |",
                "|---" * (len(methods) + 1) + "|",
                "| share | " + " | ".join(f"{tg[m]['share']:.2f}" for m in methods) + " |",
                "| median | "
                + " | ".join(
                    f"{tg[m]['median']:.0f}" if tg[m]["median"] is not None else f">{r['budget']}"
                    for m in methods
                )
                + " |",
                "",
                "Repeated evaluations of an already evaluated dataset while unevaluated ones "
                "remain (mean per full-budget run): "
                + ", ".join(f"{m} {r['repeats'][m]:.1f}" for m in methods),
            ]
        lines.append("")
    lines += _verdict(res)
    return "\n".join(lines)


def _verdict(res: dict[str, Any]) -> list[str]:
    """Where the targets hold and where the engine loses, from the numbers above."""
    out = ["## Targets", ""]
    losses, close, noisy = [], [], []
    for kind, r in res.items():
        for c in r["cells"]:
            d = c.get("engine_minus_best")
            if not d:
                continue
            where = f"{kind} {_frac(c['fraction'])}"
            line = (
                f"* {kind}, budget {_frac(c['fraction'])}: engine {c[ENGINE]['mean']:.3f} vs "
                f"{c['best_baseline']} {c[c['best_baseline']]['mean']:.3f} "
                f"(Δ {d['mean']:+.3f} ± {d['se']:.3f})"
            )
            if d["mean"] < -0.01:
                losses.append(line)
            elif d["mean"] - d["se"] < -0.01:
                close.append(line)
            if not d["se"] < SE_TARGET:
                noisy.append(f"{where} ({d['se']:.3f})")
    n_cells = sum(len(r["cells"]) for r in res.values())
    out.append(
        f"Within 0.01 of the best baseline (or above it) in {n_cells - len(losses)} of "
        f"{n_cells} cells. Where the engine loses by more than 0.01:"
    )
    out += ["", *(losses or ["* nowhere"]), ""]
    if close:
        out += [
            "Within the tolerance, but a loss beyond it lies within one standard error of Δ:",
            "",
            *close,
            "",
        ]
    out.append(
        f"Standard error of Δ below {SE_TARGET} in {n_cells - len(noisy)} of {n_cells} cells"
        + (f"; at or above it in: {', '.join(noisy)}." if noisy else ".")
    )
    out.append("")
    if "deterministic" in res and res["deterministic"]["repeats"]:
        rep = res["deterministic"]["repeats"]
        out.append(
            "Repeated evaluations of deterministic datasets while unevaluated ones remain "
            "(mean per run): " + ", ".join(f"{m} {v:.1f}" for m, v in rep.items()) + "."
        )
        out.append("")
    half = []
    for kind in ("informative", "deterministic", "large"):
        if kind in res and "dash" in res[kind]["cells"][0] and len(res[kind]["cells"]) == 5:
            cells = res[kind]["cells"]
            e_half = next(c for c in cells if c["fraction"] == 0.5)[ENGINE]
            d_full = next(c for c in cells if c["fraction"] == 1.0)["dash"]
            ok = "holds" if e_half["mean"] >= d_full["mean"] - 0.01 else "does not hold"
            half.append(
                f"{kind}: engine at 1/2 {e_half['mean']:.3f} ± {e_half['se']:.3f} vs dash at 1 "
                f"{d_full['mean']:.3f} ± {d_full['se']:.3f} ({ok})"
            )
    if half:
        out += [
            "Half-budget aim (engine at half the budget vs dash at the full budget, "
            "informative groups): " + "; ".join(half) + ".",
            "",
        ]
    return out


def _frac(f: float) -> str:
    return "1" if f == 1 else f"1/{round(1 / f)}"


def parse_runs(spec: str) -> tuple[int, ...]:
    """Pools per budget, ``"1/16:1200,1/8:800,1/4:300,1/2:120,1:60"`` (one count per budget of
    FRACTIONS, non-increasing) or a single count for every budget."""
    if ":" not in spec:
        return (int(spec),) * len(FRACTIONS)
    got = {}
    for part in spec.split(","):
        f, c = part.split(":")
        num, _, den = f.partition("/")
        got[float(num) / float(den or 1)] = int(c)
    counts = tuple(got[f] for f in FRACTIONS)
    if any(a < b for a, b in pairwise(counts)) or counts[-1] < 2:
        raise SystemExit("--runs: counts must not increase with the budget, at least 2 at 1")
    return counts


def make_tasks(
    kinds: tuple[str, ...],
    runs: tuple[int, ...],
    runs_large: tuple[int, ...],
    seed_start: int,
    methods: tuple[str, ...],
) -> list[tuple[str, int, int, tuple[str, ...], int]]:
    """One task per pool: pool r runs up to the largest budget whose count exceeds r."""
    tasks = []
    for kind in kinds:
        counts = runs_large if kind == "large" else runs
        for r in range(counts[0]):
            last = max(b for b, c in enumerate(counts) if c > r)
            # The engine with scores is not part of the targets: full-budget pools only.
            ms = (
                methods
                if last == len(FRACTIONS) - 1
                else tuple(m for m in methods if m not in SIDE)
            )
            tasks.append((kind, seed_start, r, ms, last))
    # Longest tasks first so the workers finish together.
    tasks.sort(key=lambda t: (t[0] != "large", -t[4]))
    return tasks


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=RUNS, help=f"pools per budget (default {RUNS})")
    ap.add_argument(
        "--runs-large", default=RUNS_LARGE, help=f"pools per budget, large (default {RUNS_LARGE})"
    )
    ap.add_argument("--seed-start", type=int, default=1000, help="first pool seed (tune: 0)")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None, help="write README.md, results.json, PNGs here")
    ap.add_argument(
        "--render", default=None, help="only rewrite README.md and the PNGs from a results.json"
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        default=None,
        help="merge the kinds of several results.json (runs split by kind) into --out",
    )
    args = ap.parse_args(argv)
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        res = {k: v for p in parts for k, v in p["results"].items()}
        res = {k: res[k] for k in KINDS if k in res}
        meta = dict(parts[0]["meta"])
        meta["command"] = "`, then `".join(
            [p["meta"]["command"] for p in parts]
            + ["python benchmarks/engine_study.py " + " ".join(argv or sys.argv[1:])]
        )
        meta["minutes"] = sum(p["meta"]["minutes"] for p in parts)
        methods = tuple(m for m in METHODS if m in next(iter(res.values()))["cells"][0])
        out = Path(args.out or ".")
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"meta": meta, "results": res}, indent=1))
        _write(out, res, methods, meta)
        print("merged into", out)
        return
    if args.render:
        data = json.loads(Path(args.render).read_text())
        res, meta = data["results"], data["meta"]
        methods = tuple(m for m in METHODS if m in next(iter(res.values()))["cells"][0])
        out = Path(args.render).parent
        _write(out, res, methods, meta)
        print("rendered", out)
        return
    kinds = tuple(args.kinds.split(","))
    methods = tuple(args.methods.split(","))
    tasks = make_tasks(
        kinds, parse_runs(args.runs), parse_runs(args.runs_large), args.seed_start, methods
    )
    t0 = time.time()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as ex:
            raw = list(ex.map(run_one, tasks, chunksize=4))
    else:
        raw = [run_one(t) for t in tasks]
    res = summarise(raw, methods)
    minutes = (time.time() - t0) / 60
    for kind, r in res.items():
        print(f"== {kind} ({r['runs']} pools)")
        for c in r["cells"]:
            d = c.get("engine_minus_best", {})
            print(
                f"  {_frac(c['fraction']):>4} n={c['pools']} "
                + " ".join(f"{m}={c[m]['mean']:.3f}" for m in methods)
                + (f"  Δ={d['mean']:+.3f}±{d['se']:.3f} vs {c['best_baseline']}" if d else "")
            )
        if r["tracked"]:
            print(
                "  to target:",
                {m: (round(v["share"], 2), v["median"]) for m, v in r["target"].items()},
            )
            print("  repeats:", {m: round(v, 1) for m, v in r["repeats"].items()})
            print("  s/run:", {m: round(v, 2) for m, v in r["seconds_per_run"].items()})
    print(f"{minutes:.1f} min")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "command": "python benchmarks/engine_study.py " + " ".join(argv or sys.argv[1:]),
            "minutes": minutes,
            "workers": args.workers,
            "seed_start": args.seed_start,
            "runs": args.runs,
            "runs_large": args.runs_large,
            "k": K,
            "gap": GAP,
            "cpu_count": os.cpu_count(),
        }
        (out / "results.json").write_text(json.dumps({"meta": meta, "results": res}, indent=1))
        _write(out, res, methods, meta)
        print("wrote", out)


def _write(out: Path, res: dict[str, Any], methods: tuple[str, ...], meta: dict[str, Any]) -> None:
    plot(res, methods, out / "engine_study.png")
    plot_target(res, methods, out / "engine_target.png")
    (out / "README.md").write_text(readme(res, methods, meta))


if __name__ == "__main__":
    main()
