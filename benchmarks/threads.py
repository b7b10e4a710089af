"""BLAS threads of a serial run: the default (cores / workers) against one thread.

On the toy pool of ``benchmarks/parallel.py`` (12 datasets of 4000 rows x 256 features, 10
classes; logistic trials of about 0.3 s), whole ``dashsel run --policy dash --no-final``
processes in three settings, interleaved round by round so that all see the same load:

* ``default``: the in-process executor with its default threads per trial (1 unless the
  environment sets ``*_NUM_THREADS``);
* ``--threads-per-trial CORES``: cores // workers, the default before this benchmark;
* ``env 1``: ``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1`` in the
  environment (the reference of issue 11: a serial run within 1.2x of it).

Reports per setting the min / median / max wall time and mean time inside a trial, and the
per-round ratios to the ``env 1`` run. Writes Markdown (default ``docs/benchmarks/threads.md``)::

    PYTHONPATH=src nice python benchmarks/threads.py [--out FILE] [--budget 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parallel import THREAD_VARS, base_env, timed_run, write_pool

from dashsel.executors import available_cpus

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "threads.md")
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    env = base_env()
    one = {**env, **dict.fromkeys(THREAD_VARS, "1")}
    common = ["--budget", str(opts.budget), "--seed", "0", "--policy", "dash"]
    cores = available_cpus()
    settings = {
        "default (1 thread, or the *_NUM_THREADS set)": (common, env),
        f"--threads-per-trial {cores} (cores // workers, the former default)": (
            [*common, "--threads-per-trial", str(cores)],
            env,
        ),
        "env 1 (OPENBLAS/OMP/MKL_NUM_THREADS=1)": (common, one),
    }
    walls: dict[str, list[float]] = {name: [] for name in settings}
    trials: dict[str, list[float]] = {name: [] for name in settings}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dashsel-thr-") as tmp:
        work = Path(tmp)
        # The pool this report describes (parallel.py's own has since grown to 0.3 s trials).
        manifest = write_pool(work / "pool", n_features=256, n_classes=10)
        for r in range(opts.rounds):
            for name, (args, run_env) in settings.items():
                wall, res = timed_run(manifest, args, run_env, work / "out.json")
                walls[name].append(wall)
                trials[name].append(res["evaluation_seconds"] / max(1, res["n_evaluations"]))
                print(f"round {r + 1} {name}: {wall:.2f} s, {trials[name][-1]:.3f} s/trial",
                      flush=True)  # fmt: skip
    load1 = os.getloadavg()[0]
    write_report(opts, walls, trials, (load0, load1))


def write_report(opts, walls, trials, load) -> None:  # type: ignore[no-untyped-def]
    names = list(walls)
    ref = names[-1]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# BLAS threads of a serial run",
        "",
        f"Written by `benchmarks/threads.py` (`python benchmarks/threads.py --budget "
        f"{opts.budget} --rounds {opts.rounds}`), {stamp}, {platform.platform()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. "
        f"Load average {load[0]:.1f} before and {load[1]:.1f} after on {os.cpu_count()} CPUs "
        "(a shared machine: other jobs ran meanwhile; the settings are interleaved round by "
        "round so that each round's runs see about the same load).",
        "",
        "Pool: the toy logistic pool of `benchmarks/parallel.py` (12 datasets of 4000 rows x "
        f"256 features, 10 classes); `dashsel run --policy dash --budget {opts.budget} "
        "--no-final`, in process, whole processes (start-up included).",
        "",
        "| setting | wall s (min / median / max) | mean trial s (min / median / max) "
        "| wall / env-1 run, per round |",
        "|---|---|---|---|",
    ]
    for name in names:
        w, t = walls[name], trials[name]
        ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(w, walls[ref], strict=True))
        lines.append(
            f"| {name} | {min(w):.2f} / {np.median(w):.2f} / {max(w):.2f} "
            f"| {min(t):.3f} / {np.median(t):.3f} / {max(t):.3f} | {ratios} |"
        )
    med = {n: float(np.median(walls[n])) for n in names}
    lines += [
        "",
        f"Median wall time over the `env 1` run: default {med[names[0]] / med[ref]:.2f}x, "
        f"cores // workers {med[names[1]] / med[ref]:.2f}x (target for a serial run: "
        f"≤ {TARGET}x).",
    ]
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
