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
FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
METHODS = ("hits", "dash", "flat", "ucb", "roundrobin", "group-mean", "hits+scores")
BASELINES = ("dash", "flat", "ucb", "roundrobin", "group-mean")
ENGINE = "hits"


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


def run_one(task: tuple[str, int, int, tuple[str, ...]]) -> dict[str, Any]:
    """One pool (kind, seed_start + run) and every method on it."""
    kind, seed_start, run, methods = task
    pool = make_replay_pool(kind, seed_start + run)
    h, n = pool.hierarchy, pool.n_datasets
    budgets = [max(1, round(f * n)) for f in FRACTIONS]
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
        for t in range(1, budgets[-1] + 1):
            d = policy.ask()
            i = h.index(d)
            if counts[i] and (counts == 0).any():
                repeats += 1
            counts[i] += 1
            policy.tell(d, pool.reward(i, noise))
            if t in budgets:
                utils.append(pool.normalized_utility(policy.recommend(k=K).datasets, K))
        out["methods"][name] = {
            "utility": utils,
            "repeats": repeats,
            "seconds": time.perf_counter() - t0,
        }
    out["budgets"] = budgets
    return out


def summarise(raw: list[dict[str, Any]], methods: tuple[str, ...]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for kind in dict.fromkeys(r["kind"] for r in raw):
        rows = [r for r in raw if r["kind"] == kind]
        u = {m: np.array([r["methods"][m]["utility"] for r in rows]) for m in methods}
        cells = []
        for b, frac in enumerate(FRACTIONS):
            cell: dict[str, Any] = {"fraction": frac, "budget": rows[0]["budgets"][b]}
            for m in methods:
                x = u[m][:, b]
                cell[m] = {"mean": float(x.mean()), "se": float(x.std(ddof=1) / math.sqrt(x.size))}
            base = [m for m in BASELINES if m in methods]
            if ENGINE in methods and base:
                best = max(base, key=lambda m: cell[m]["mean"])
                diff = u[ENGINE][:, b] - u[best][:, b]
                cell["best_baseline"] = best
                cell["engine_minus_best"] = {
                    "mean": float(diff.mean()),
                    "se": float(diff.std(ddof=1) / math.sqrt(diff.size)),
                }
            cells.append(cell)
        res[kind] = {
            "runs": len(rows),
            "seeds": [r["seed"] for r in rows],
            "cells": cells,
            "repeats": {
                m: float(np.mean([r["methods"][m]["repeats"] for r in rows])) for m in methods
            },
            "seconds_per_run": {
                m: float(np.mean([r["methods"][m]["seconds"] for r in rows])) for m in methods
            },
        }
    return res


def plot(res: dict[str, Any], methods: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(res)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    style = {
        "flat": ("#8c8c8c", "-"),
        "ucb": ("#b5a642", "-"),
        "roundrobin": ("#a0c4e8", "-"),
        "group-mean": ("#9467bd", "--"),
        "hits+scores": ("#ff9896", ":"),
        "dash": ("#1f4fd1", "-"),  # strong blue
        "hits": ("#d62728", "-"),  # strong red
    }
    order = [m for m in methods if m not in ("dash", "hits")] + [
        m for m in ("dash", "hits") if m in methods
    ]  # engine and dash drawn last, on top
    for ax, kind in zip(axes, kinds, strict=True):
        cells = res[kind]["cells"]
        x = [c["fraction"] for c in cells]
        for m in order:
            mean = np.array([c[m]["mean"] for c in cells])
            se = np.array([c[m]["se"] for c in cells])
            color, ls = style[m]
            lw = 2.6 if m in ("hits", "dash") else 1.3
            ax.plot(x, mean, ls, color=color, lw=lw, label=m, marker="o", ms=3)
            ax.fill_between(x, mean - se, mean + se, color=color, alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, ["1/16", "1/8", "1/4", "1/2", "1"])
        ax.set_title(f"{kind} ({res[kind]['runs']} pools)")
        ax.set_xlabel("evaluations per dataset")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"normalized utility of top-{K}")
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"Normalized utility of the chosen top-{K} (0 = average dataset, 1 = best {K}) vs budget "
        "on held-out replay pools; band = ±1 standard error over pools",
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
        "(held out: the engine's settings were chosen on seeds 0-99). k = "
        f"{K}; every method with its default settings; the engine gets `k={K}` and "
        "`deterministic=True` on the deterministic kind. `hits+scores` is the engine with the "
        "pool's noisy score as covariate (not part of the targets).",
        "",
        "![normalized utility by budget](engine_study.png)",
        "",
        f"Normalized utility of the chosen top-{K} (0 = average dataset, 1 = best {K}), mean ± "
        "standard error over pools. `Δ` = engine minus the best of dash, flat, ucb, roundrobin "
        "and group-mean in that cell (paired over pools), ± its standard error.",
        "",
    ]
    for kind, r in res.items():
        lines += [f"## {kind} ({r['runs']} pools)", ""]
        lines.append("| budget | " + " | ".join(methods) + " | Δ (best baseline) |")
        lines.append("|---" * (len(methods) + 2) + "|")
        for c in r["cells"]:
            row = [f"{c['budget']} ({_frac(c['fraction'])})"]
            row += [f"{c[m]['mean']:.3f} ± {c[m]['se']:.3f}" for m in methods]
            d = c.get("engine_minus_best")
            row.append(f"{d['mean']:+.3f} ± {d['se']:.3f} ({c['best_baseline']})" if d else "")
            lines.append("| " + " | ".join(row) + " |")
        lines += [
            "",
            "Repeated evaluations of an already evaluated dataset while unevaluated ones remain "
            "(mean per run, full budget): "
            + ", ".join(f"{m} {r['repeats'][m]:.1f}" for m in methods),
            "",
        ]
    return "\n".join(lines)


def _frac(f: float) -> str:
    return "1" if f == 1 else f"1/{round(1 / f)}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=60, help="pools per kind (default 60)")
    ap.add_argument(
        "--runs-large", type=int, default=30, help="pools of the large kind (default 30)"
    )
    ap.add_argument("--seed-start", type=int, default=1000, help="first pool seed (tune: 0)")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None, help="write README.md, results.json, PNG here")
    args = ap.parse_args(argv)
    kinds = tuple(args.kinds.split(","))
    methods = tuple(args.methods.split(","))
    tasks = [
        (kind, args.seed_start, r, methods)
        for kind in kinds
        for r in range(args.runs_large if kind == "large" else args.runs)
    ]
    # Large pools first so the workers finish together.
    tasks.sort(key=lambda t: t[0] != "large")
    t0 = time.time()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as ex:
            raw = list(ex.map(run_one, tasks, chunksize=1))
    else:
        raw = [run_one(t) for t in tasks]
    res = summarise(raw, methods)
    minutes = (time.time() - t0) / 60
    for kind, r in res.items():
        print(f"== {kind} ({r['runs']} pools)")
        for c in r["cells"]:
            d = c.get("engine_minus_best", {})
            print(
                f"  {_frac(c['fraction']):>4} "
                + " ".join(f"{m}={c[m]['mean']:.3f}" for m in methods)
                + (f"  Δ={d['mean']:+.3f}±{d['se']:.3f} vs {c['best_baseline']}" if d else "")
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
            "cpu_count": os.cpu_count(),
        }
        (out / "results.json").write_text(json.dumps({"meta": meta, "results": res}, indent=1))
        plot(res, methods, out / "engine_study.png")
        (out / "README.md").write_text(readme(res, methods, meta))
        print("wrote", out)


if __name__ == "__main__":
    main()
