"""How soon does a parallel `dashsel run` start its first trial? Two source trees, interleaved.

Times, for ``--executor process --workers 2`` and ``--executor ray --workers 2`` (a Ray cluster
started beforehand for each run, as in :mod:`parallel`, with the run's tree on its path), the
launch of a whole `dashsel run` process to the start of its first trial (the earliest
``started`` of the trials in its JSON), on :mod:`parallel`'s toy logistic pool, for two source
trees side by side: ``--base SRC`` (e.g. an older commit's ``src`` from ``git archive``) and
this tree's ``src``, alternating run by run so that the machine's load hits both alike. Also
the whole run's wall time and the CPU time of the run's process and the children it waited
for (Ray's workers are not among them). Writes a Markdown report (default
``docs/benchmarks/startup.md``)::

    PYTHONPATH=src nice python benchmarks/startup.py --base /tmp/base/src [--rounds 3]
        [--budget 4] [--no-ray] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from parallel import ROOT, SRC, base_env, describe_pool, start_ray, stop_ray, timed_run, write_pool


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the other tree's src folder")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "startup.md")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=4)
    parser.add_argument("--no-ray", action="store_true")
    opts = parser.parse_args()

    trees = {"base": opts.base.resolve(), "this tree": SRC}
    envs = {}
    for name, src in trees.items():
        env = base_env()
        env["PYTHONPATH"] = str(src)
        env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
        envs[name] = env
    rows: list[tuple[str, str, float, float, float]] = []  # executor, tree, start, wall, cpu
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dashsel-startup-") as tmp:
        work = Path(tmp)
        manifest = write_pool(work / "pool")
        executors = ["process"] if opts.no_ray else ["process", "ray"]
        budget = ["--budget", str(opts.budget), "--seed", "0", "--policy", "dash"]
        for r in range(opts.rounds):
            # Alternate which tree goes first, so neither always follows the other.
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for executor in executors:
                for tree in order:
                    start, wall, cpu = one_run(executor, manifest, budget, envs[tree], work)
                    rows.append((executor, tree, start, wall, cpu))
                    print(
                        f"round {r + 1} {executor} {tree}: first trial at {start:.2f}s, "
                        f"wall {wall:.1f}s, cpu {cpu:.1f}s",
                        flush=True,
                    )
    write_report(opts, trees, rows, load_before, os.getloadavg())


def one_run(
    executor: str, manifest: Path, budget: list[str], env: dict[str, str], work: Path
) -> tuple[float, float, float]:
    """First trial's start from launch, wall time and CPU time of one `dashsel run`.

    A Ray run gets a cluster of its own, started (not timed) with the same tree on its path
    as the run, so Ray's workers import the same dashsel, and stopped after it."""
    args = ["--executor", executor, "--workers", "2"]
    head = None
    ray_temp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # Ray's socket paths are short
    try:
        if executor == "ray":
            head, address = start_ray(env, ray_temp)
            args += ["--address", address]
        cpu0 = children_cpu()
        wall, result = timed_run(manifest, [*budget, *args], env, work / "out.json")
        return result["_startup_s"], wall, children_cpu() - cpu0
    finally:
        if head is not None:
            stop_ray(head)
        shutil.rmtree(ray_temp, ignore_errors=True)


def write_report(opts, trees, rows, load_before, load_after) -> None:
    lines = [
        "# Parallel start-up: launch to the first trial's start",
        "",
        f"Written by `benchmarks/startup.py` on {time.strftime('%Y-%m-%d %H:%M')}: whole "
        f"`dashsel run` processes (budget {opts.budget}, `--policy dash`, `--no-final`) on the "
        f"{describe_pool_text()}, {opts.rounds} rounds, the two trees alternating run by run. "
        f"`base` = `{trees['base']}`; `this tree` = this checkout's `src`. Load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} CPUs.",
        "",
        "`first trial s`: launch to the earliest trial start in the run's JSON (median, with "
        "min-max); `wall s`: the whole process; `cpu s`: user+system CPU of the run's process "
        "and the children it waited for (the process executor's forkserver and workers; not "
        "Ray's workers, which belong to the cluster).",
        "",
        "| executor | tree | first trial s | wall s | cpu s |",
        "|---|---|---|---|---|",
    ]
    for executor in dict.fromkeys(r[0] for r in rows):
        for tree in trees:
            mine = [r for r in rows if r[0] == executor and r[1] == tree]
            if not mine:
                continue
            starts = [r[2] for r in mine]
            lines.append(
                f"| {executor} | {tree} | {statistics.median(starts):.2f} "
                f"({min(starts):.2f}-{max(starts):.2f}) | "
                f"{statistics.median(r[3] for r in mine):.2f} | "
                f"{statistics.median(r[4] for r in mine):.2f} |"
            )
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {opts.out}")


def describe_pool_text() -> str:
    from parallel import POOL

    return describe_pool(POOL)


if __name__ == "__main__":
    main()
