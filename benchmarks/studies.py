"""The engine's studies on the real pools: the engine (HiTS, with and without training-free
scores) beside DaSH, flat Thompson sampling, UCB, round robin, random datasets, the trivial
heuristic and the scores alone, with and without trap datasets.

Each preset writes ``docs/benchmarks/<preset>/`` (tables, plots, ``results.json``, README):

* ``digits5-100-engine``: 100 candidates (20 subsets per domain, k = 20), targets svhn, mnistm, syn,
  budgets 5-60, plus the shuffled / reversed score checks;
* ``digits5-100-traps``: the same pools plus 30 trap datasets (``traps=True``);
* ``digits5-engine`` / ``digits5-engine-traps``: the paper's 15-candidate layout, 5 targets;
* ``spam-engine`` / ``spam-engine-traps``: the spam pools (36 candidates, 3 targets).

Usage::

    python benchmarks/studies.py digits5-100-engine --runs 5
    python benchmarks/studies.py all --runs 5
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from dashsel_bench.config import ENGINE_STUDY_METHODS, SCORE_CHECK_METHODS, StudyConfig
from dashsel_bench.report import headline_markdown, write_report
from dashsel_bench.runner import run_study

ROOT = Path(__file__).resolve().parents[1]
#: Budgets of the 100-candidate pools (and the curves' checkpoints).
BUDGETS_100 = (5, 15, 30, 60)
#: Budgets of the 15-candidate digits5 and the 36-candidate spam pools.
BUDGETS_SMALL = (5, 10, 15, 30, 45)
PRESETS: dict[str, dict[str, Any]] = {
    "digits5-100-engine": dict(
        suite="digits5",
        n_subsets=20,
        targets=("svhn", "mnistm", "syn"),
        methods=(*ENGINE_STUDY_METHODS, *SCORE_CHECK_METHODS),
        budgets=BUDGETS_100,
        checkpoints=BUDGETS_100,
        studies=("main_table", "curve"),
    ),
    "digits5-100-traps": dict(
        suite="digits5",
        n_subsets=20,
        targets=("svhn", "mnistm", "syn"),
        methods=ENGINE_STUDY_METHODS,
        budgets=BUDGETS_100,
        checkpoints=BUDGETS_100,
        studies=("main_table", "curve"),
        traps=True,
    ),
    "digits5-engine": dict(
        suite="digits5",
        methods=ENGINE_STUDY_METHODS,
        budgets=BUDGETS_SMALL,
        checkpoints=BUDGETS_SMALL,
        studies=("main_table", "curve", "grouping_ablation"),
    ),
    "digits5-engine-traps": dict(
        suite="digits5",
        methods=ENGINE_STUDY_METHODS,
        budgets=BUDGETS_SMALL,
        checkpoints=BUDGETS_SMALL,
        studies=("main_table", "curve"),
        traps=True,
    ),
    "spam-engine": dict(
        suite="spam",
        methods=ENGINE_STUDY_METHODS,
        budgets=BUDGETS_SMALL,
        checkpoints=BUDGETS_SMALL,
        studies=("main_table", "curve", "grouping_ablation"),
    ),
    "spam-engine-traps": dict(
        suite="spam",
        methods=ENGINE_STUDY_METHODS,
        budgets=BUDGETS_SMALL,
        checkpoints=BUDGETS_SMALL,
        studies=("main_table", "curve"),
        traps=True,
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", help=f"comma-separated: {', '.join(PRESETS)} or all")
    parser.add_argument("--runs", type=int, default=5, help="runs (seeds) per cell")
    parser.add_argument("--targets", default=None, help="comma-separated targets (override)")
    parser.add_argument("--workers", type=int, default=2, help="processes filling reward banks")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "benchmarks", help="parent output folder"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names = list(PRESETS) if args.presets == "all" else args.presets.split(",")
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    for name in names:
        if name not in PRESETS:
            parser.error(f"unknown preset {name!r}: use {', '.join(PRESETS)} or all")
        params = dict(PRESETS[name])
        if args.targets:
            params["targets"] = tuple(t.strip() for t in args.targets.split(","))
        t0 = time.perf_counter()
        config = StudyConfig(
            **params,
            runs=args.runs,
            workers=args.workers,
            command=f"python benchmarks/studies.py {argv_text}".strip(),
        )
        result = run_study(config, progress=_progress(name))
        out = write_report(result, args.out / name)
        print(f"{name}: wrote {out} in {time.perf_counter() - t0:.0f}s", flush=True)
        print(headline_markdown(result), flush=True)
    return 0


def _progress(name: str, every: float = 20.0) -> Any:
    start = time.perf_counter()
    last = [-every]

    def report(message: str, done: int | None = None, total: int | None = None) -> None:
        now = time.perf_counter() - start
        if now - last[0] >= every or message == "done":
            last[0] = now
            where = f"[{done}/{total}] " if done is not None else ""
            print(f"  {name} {now:6.0f}s {where}{message}", flush=True)

    return report


if __name__ == "__main__":
    sys.exit(main())
