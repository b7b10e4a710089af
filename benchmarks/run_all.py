"""Run the paper's full studies on every benchmark suite (``make bench``).

For ``digits5`` (5 targets) and ``spam`` (3 targets): 5 runs per cell, budgets 15, 45 and 150,
every study (main table, curves, small budget, weak initial model, grouping ablation,
instance-level baselines, peers) and every method. Results go to
``docs/benchmarks/<suite>/`` (tables, plots, ``results.json``, README). Evaluations are cached
under ``$DASHSEL_CACHE`` (default ``~/.cache/dashsel``), so a rerun only retrains what changed.

Usage::

    python benchmarks/run_all.py                   # both suites, full settings
    python benchmarks/run_all.py --suites spam     # one suite
    python benchmarks/run_all.py --runs 2 --budgets 15,45 --out /tmp/bench   # a smoke run
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from dashsel_bench.harness import STUDIES, StudyConfig, headline_markdown, run_study, write_report

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("digits5", "spam")


class Progress:
    """Prints at most one progress line every ``every`` seconds (studies have thousands of
    cells)."""

    def __init__(self, suite: str, every: float = 10.0) -> None:
        self.suite = suite
        self.every = every
        self.start = time.perf_counter()
        self.last = -every

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None:
        now = time.perf_counter() - self.start
        if now - self.last >= self.every or message == "done":
            self.last = now
            where = f"[{done}/{total}] " if done is not None else ""
            print(f"  {self.suite} {now:6.0f}s {where}{message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=",".join(SUITES), help="comma-separated suites")
    parser.add_argument("--runs", type=int, default=5, help="runs (seeds) per cell")
    parser.add_argument("--budgets", default="15,45,150", help="comma-separated budgets")
    parser.add_argument("--studies", default=None, help="comma-separated studies (default all)")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default all)")
    parser.add_argument("--targets", default=None, help="comma-separated targets (default all)")
    parser.add_argument("--workers", type=int, default=2, help="processes filling reward banks")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "benchmarks", help="parent output folder"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    command = " ".join(["python", "benchmarks/run_all.py", *(argv or sys.argv[1:])])
    start = time.perf_counter()
    for suite in [s.strip() for s in args.suites.split(",") if s.strip()]:
        t0 = time.perf_counter()
        studies = [s.strip() for s in (args.studies or ",".join(STUDIES)).split(",") if s.strip()]
        if suite == "digits5":
            studies = [s for s in studies if s != "weak_init"]  # run below, on its own pool
        if not studies:
            continue
        config = StudyConfig.from_options(
            suite,
            methods=args.methods,
            runs=args.runs,
            budgets=args.budgets,
            studies=",".join(studies),
            targets=args.targets,
            command=command,
            workers=args.workers,
        )
        result = run_study(config, progress=Progress(suite))
        out = write_report(result, args.out / suite)
        for note in result.notes:
            print(f"  note: {note}")
        print(f"{suite}: wrote {out} in {time.perf_counter() - t0:.0f}s", flush=True)
        print(headline_markdown(result))
    if "digits5" in args.suites and (args.studies is None or "weak_init" in args.studies):
        # The weak-initial-model study needs a larger local set to cut 10/20/50 % from: with
        # the default 20 images every fraction falls to the floor of one image per class.
        from dashsel_bench.digits5 import Digits5

        t0 = time.perf_counter()
        config = StudyConfig.from_options(
            Digits5(local_size=100),
            runs=args.runs,
            budgets=args.budgets,
            studies="weak_init",
            targets=args.targets,
            command=command + "  # weak_init with Digits5(local_size=100)",
            workers=args.workers,
        )
        result = run_study(config, progress=Progress("digits5-weak-init"))
        out = write_report(result, args.out / "digits5-weak-init")
        print(f"digits5-weak-init: wrote {out} in {time.perf_counter() - t0:.0f}s", flush=True)
    print(f"total time: {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
