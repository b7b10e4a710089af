"""How long the default training-free scores take on a large synthetic pool.

Candidates are generated in memory on demand (a lazy loader per candidate, so 10^4 candidates
of 10^3 rows never sit in memory together), as ``n_groups`` shifted Gaussian-mixture sources of
``n_classes`` classes; a tenth of the candidates carry mostly wrong labels. Writes a markdown
report with the measured times per score.

Each size is scored with each ``--jobs`` value (worker processes; 1 = in this process).

Usage::

    PYTHONPATH=src nice python benchmarks/scores_scale.py --candidates 1000 10000 \
        --jobs 1 2 --out docs/benchmarks/scores_scale.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from dashsel import scores
from dashsel.pool import ArraySplit, DatasetEntry, Pool
from dashsel.scores import DEFAULT_SCORES, score_pool


def _draw(
    seed: int, n: int, d: int, n_classes: int, shift: float, wrong: float, group: int = 0
) -> ArraySplit:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(12345).normal(size=(n_classes, d)).astype(np.float32)
    y = rng.integers(0, n_classes, size=n)
    X = means[y] + rng.standard_normal((n, d), dtype=np.float32)
    if shift:  # every group is shifted along its own random direction
        direction = np.random.default_rng([777, group]).normal(size=d).astype(np.float32)
        X += np.float32(shift) * direction / np.linalg.norm(direction)
    flip = rng.random(n) < wrong
    y = np.where(flip, rng.integers(0, n_classes, size=n), y)
    return ArraySplit(X, y)


def make_pool(
    n_candidates: int, rows: int, d: int, n_classes: int = 10, n_groups: int = 100
) -> Pool:
    """A pool whose candidates are generated when read (see the module docstring)."""
    entries = []
    for i in range(n_candidates):
        g = i % n_groups
        shift = 0.0 if g == 0 else 3.0 + 9.0 * (g / n_groups)
        wrong = 0.8 if i % 10 == 9 else 0.0
        entries.append(
            DatasetEntry(
                f"d{i}",
                f"g{g}",
                loader=partial(_draw, 1000 + i, rows, d, n_classes, shift, wrong, g),
            )
        )
    return Pool(
        entries,
        local=_draw(1, 50, d, n_classes, 0.0, 0.0),
        validation=_draw(2, 500, d, n_classes, 0.0, 0.0),
        name=f"synthetic-{n_candidates}",
    )


def measure(n_candidates: int, rows: int, d: int, jobs: int) -> dict[str, float]:
    pool = make_pool(n_candidates, rows, d)
    start = time.perf_counter()
    frame = score_pool(pool, which=DEFAULT_SCORES, random_state=0, n_jobs=jobs)
    wall = time.perf_counter() - start
    cost = dict(frame.attrs["cost_seconds"])
    # This process's CPU time and the workers' (while scoring), all threads.
    cost["cpu"] = frame.attrs["cpu_seconds"]
    cost["workers"] = frame.attrs["n_jobs"]
    # Sanity: honest group-0 candidates should rank above the rest on the default score.
    honest = (frame["group"] == "g0") & ~frame.index.str.endswith("9")
    top = frame["score_default"].rank(ascending=False) <= honest.sum()
    cost["wall"] = wall
    cost["top_precision"] = float((top & honest).sum() / max(1, honest.sum()))
    return cost


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, nargs="+", default=[1000])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--features", type=int, default=256)
    ap.add_argument("--jobs", type=int, nargs="+", default=[2])
    ap.add_argument(
        "--blas-threads",
        type=int,
        nargs="+",
        default=[1],
        help="BLAS threads per worker while scoring (the library uses 1; more to compare)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    loads: list[str] = []
    lines = [
        "# Training-free scores at scale",
        "",
        f"Measured by `benchmarks/scores_scale.py` (command: `PYTHONPATH=src "
        f"{'nice ' if os.nice(0) > 0 else ''}python "
        f"{' '.join(['benchmarks/scores_scale.py', *sys.argv[1:]])}`), on "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        "shared with other jobs (other agents' builds and tests; see the load averages below); "
        f"Python {platform.python_version()}, numpy {np.__version__}.",
        "",
        f"Synthetic pool: candidates of {args.rows} rows x {args.features} features, 10 classes, "
        "100 groups (group 0 = the target's distribution, group g shifted by 3 + 9g/100 "
        "along its own random direction; class means have norm ~16, noise 1 per feature), "
        "a tenth of candidates with 80% wrong labels; validation 500 rows, local 50. Scores: "
        f"{', '.join(DEFAULT_SCORES)} (the defaults). Arrays are generated when read; "
        "`load` is that generation time, not part of the scores' cost.",
        "",
        "| candidates | workers | BLAS threads | wall (s) | CPU (s) | load | setup + projection | "
        "mean | mmd | otdd | label_quality | scores without load (s) | ms per candidate | "
        "top precision |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in args.candidates:
        for jobs in args.jobs:
            for threads in args.blas_threads:
                scores._BLAS_THREADS = threads  # a private knob, to compare
                load_before = os.getloadavg()[0]
                c = measure(n, args.rows, args.features, jobs)
                loads.append(
                    f"{n:,} x {jobs} x {threads}: {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
                )
                row = _row(n, c, threads)
                print(row, flush=True)
                lines.append(row)
    lines += [
        "",
        "*workers*: worker processes (`score_pool(n_jobs=...)`, `dashsel score --jobs`; 1 = in "
        "the calling process). *BLAS threads*: per worker while scoring (the library uses 1). "
        "*CPU*: CPU time of the calling process and of the workers while "
        "scoring (`frame.attrs['cpu_seconds']`), all threads; unlike wall time it does not grow "
        "when other jobs share the cores. Columns `load` to `label_quality` are wall seconds "
        "summed over candidates, and over workers (`frame.attrs['cost_seconds']`); `load` is "
        "the generation of the synthetic arrays. *Top precision*: the share of the honest "
        "group-0 candidates found among the same number of top-ranked candidates by "
        "`score_default`.",
        f"Load average (1 min) before -> after each row: {'; '.join(loads)}.",
        "",
    ]
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines))
        print(f"wrote {args.out}")
    return 0


def _row(n: int, c: dict[str, float], threads: int) -> str:
    scoring = c["total"] - c["load"]
    return (
        f"| {n:,} | {c['workers']:.0f} | {threads} | {c['wall']:.1f} | {c['cpu']:.1f} | "
        f"{c['load']:.1f} | {c['setup']:.1f} | {c['mean']:.2f} | "
        f"{c['mmd']:.1f} | {c['otdd']:.1f} | {c['label_quality']:.1f} | {scoring:.1f} | "
        f"{1000 * scoring / n:.2f} | {c['top_precision']:.2f} |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
