"""Do parallel runs pay for themselves? `dashsel run` wall times, serial against parallel.

On a toy pool whose logistic trials train for about 0.3 s each (one BLAS thread, the default;
see :data:`POOL`), times whole `dashsel run` processes (budget 32, `--policy dash` so that
every run spends its whole budget, `--no-final`), side by side in one sitting:

* serial (the default in-process executor, default threads);
* serial with ``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1`` (the reference for thread limits);
* ``--executor process --workers 2``;
* ``--executor ray --workers 2 --address ADDR`` against a Ray cluster started beforehand
  (``ray start --head`` on a free port, with its own temp folder; stopped at the end by
  killing only the processes it started).

Targets (issue 11): process <= 0.65x serial, Ray <= 0.75x serial, serial <= 1.2x the
one-thread run. Writes a Markdown report (default ``docs/benchmarks/parallel.md``)::

    PYTHONPATH=src nice python benchmarks/parallel.py [--out FILE] [--budget 32] [--rounds N]
        [--no-ray]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for var in THREAD_VARS:
        env.pop(var, None)
    return env


#: The toy pool of this benchmark, sized so that a logistic trial trains for about 0.3 s with
#: one BLAS thread, the default (30 classes and 288 features; the pool of 10 classes and 256
#: features it had before the default became one thread trains in about 0.09 s). The report
#: gives the mean trial time it measured.
POOL: dict[str, int] = {
    "n_features": 288,
    "n_per_dataset": 4000,
    "n_classes": 30,
    "n_local": 400,
    "n_validation": 1000,
    "n_test": 500,
}


def describe_pool(pool: dict[str, int]) -> str:
    return (
        f"toy logistic pool, 12 datasets of {pool['n_per_dataset']} rows x "
        f"{pool['n_features']} features, {pool['n_classes']} classes"
    )


def write_pool(directory: Path, **overrides: int) -> Path:
    """The toy pool (:data:`POOL`, with ``overrides``) and its manifest in ``directory``."""
    from dashsel.toy import write_toy_manifest

    return write_toy_manifest(
        directory,
        evaluator={"kind": "logistic", "C": 100.0, "max_iter": 400},
        **{**POOL, **overrides},
    )


def timed_run(
    manifest: Path, args: list[str], env: dict[str, str], out: Path
) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "dashsel.cli", "run", str(manifest), "--no-final", "--quiet",
           "--json", str(out), *args]  # fmt: skip
    launched = time.time()  # the clock of the trials' start and end times in the JSON
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr}")
    result = json.loads(out.read_text())
    # Start-up (launch to the first trial's start) and exit (the last trial's end to the
    # process's end and its output closed, as a caller reading it through a pipe sees it).
    trials = result["trials"]
    result["_startup_s"] = min(t["started"] for t in trials) - launched
    result["_exit_s"] = launched + wall - max(t["finished"] for t in trials)
    return wall, result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ray(env: dict[str, str], temp: Path) -> tuple[subprocess.Popen, str]:
    """A Ray head with 2 CPUs on a free port, in its own process group and temp folder."""
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    port = free_port()
    cmd = [ray_bin, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
           "--node-ip-address=127.0.0.1",
           "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]  # fmt: skip
    # Its own process group (stopped with killpg) but this session: where the kernel shares
    # CPU between sessions (autogroup), a new session would give the cluster a share of its
    # own on a loaded machine, which the other runs do not get.
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    probe = "import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False); ray.shutdown()"
    while time.monotonic() < deadline:
        ok = subprocess.run([sys.executable, "-c", probe, address], env=env, capture_output=True)
        if ok.returncode == 0:
            return proc, address
        time.sleep(2)
    stop_ray(proc)
    raise SystemExit("the Ray head did not come up in 120 s")


def stop_ray(proc: subprocess.Popen) -> None:
    # Only the processes this script started (its own session), never `ray stop`, which
    # would end every Ray cluster on the machine.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "parallel.md")
    parser.add_argument("--budget", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="run every configuration N times")
    parser.add_argument("--no-ray", action="store_true")
    opts = parser.parse_args()

    env = base_env()
    one_thread = {**env, **dict.fromkeys(THREAD_VARS, "1")}
    rounds: list[list[tuple[str, float, dict, str]]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dashsel-par-") as tmp:
        work = Path(tmp)
        manifest = write_pool(work / "pool")
        # `dash` spends the whole budget: the default engine stops once a deterministic pool
        # is exhausted (12 datasets here), which would leave the executors nothing to share.
        budget = ["--budget", str(opts.budget), "--seed", "0", "--policy", "dash"]
        runs: list[tuple[str, list[str], dict[str, str]]] = [
            ("serial (inprocess, default threads)", budget, env),
            ("serial, OPENBLAS/OMP_NUM_THREADS=1", budget, one_thread),
            ("process --workers 2", [*budget, "--executor", "process", "--workers", "2"], env),
        ]
        for r in range(opts.rounds):
            rows: list[tuple[str, float, dict, str]] = []
            rounds.append(rows)
            for name, args, run_env in runs:
                wall, result = timed_run(manifest, args, run_env, work / "out.json")
                rows.append((name, wall, result, ""))
                print(f"round {r + 1} {name}: {wall:.1f}s", flush=True)
            if not opts.no_ray:
                rows.append(ray_row(manifest, budget, env, work))
                print(f"round {r + 1} ray: {rows[-1][1]:.1f}s", flush=True)
    load_after = os.getloadavg()
    write_report(opts, rounds, load_before, load_after)


def ray_row(
    manifest: Path, budget: list[str], env: dict[str, str], work: Path
) -> tuple[str, float, dict, str]:
    """One `--executor ray` run against a cluster started (and stopped) around it."""
    # A private test cluster: no token authentication (Ray >= 2.5x enables it).
    ray_env = {**env, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    t0 = time.perf_counter()
    # Short path: Ray's socket paths must fit in 107 characters.
    ray_temp = Path(tempfile.mkdtemp(prefix="rp", dir="/tmp"))
    head, address = start_ray(ray_env, ray_temp)
    startup = time.perf_counter() - t0
    try:
        args = [*budget, "--executor", "ray", "--workers", "2", "--address", address]
        wall, result = timed_run(manifest, args, ray_env, work / "out.json")
        return ("ray --workers 2 (cluster started)", wall, result,
                f"cluster start-up {startup:.0f}s, not counted")  # fmt: skip
    finally:
        stop_ray(head)
        shutil.rmtree(ray_temp, ignore_errors=True)


def span(result: dict) -> float:
    """Seconds from the first trial's start to the last trial's end."""
    trials = result["trials"]
    return max(t["finished"] for t in trials) - min(t["started"] for t in trials)


def busy(result: dict, phase: float) -> float:
    """Share of the trial phase the run kept its ``batch_size`` trial slots busy: the trials'
    summed evaluation time over slots x phase (1.0: never a slot idle). Unlike the wall
    times, it hardly depends on how much CPU the machine's load leaves the run."""
    return result["evaluation_seconds"] / (max(1, result["batch_size"]) * phase)


def autogroup() -> bool:
    """Whether the kernel shares CPU time between sessions first (Linux autogroup)."""
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def write_report(opts, rounds, load_before, load_after) -> None:
    loaded = max(load_before[0], load_after[0]) >= 1.0
    lines = [
        "# Parallel runs: wall time of `dashsel run`, serial against parallel",
        "",
        "Written by `benchmarks/parallel.py` (" + " ".join(["python", *sys.argv]) + "), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, on {platform.platform()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}.",
        "",
        (
            f"**Measured under load**: the machine was shared (load average "
            f"{load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} "
            f"CPUs); {len(rounds)} round(s), the configurations run one after the other in "
            "each. Read the ratios as indicative, not as the library's best case."
            if loaded
            else f"Measured on a quiet machine (load average {load_before[0]:.1f} before, "
            f"{load_after[0]:.1f} after, on {os.cpu_count()} CPUs); {len(rounds)} round(s), "
            "the configurations run one after the other in each, so expect some noise."
        ),
        "",
        f"Pool: {describe_pool(POOL)}; budget {opts.budget}, `--policy dash`, `--no-final`; "
        "whole processes (start-up included).",
    ]
    if loaded and autogroup():
        lines += [
            "",
            "This kernel shares CPU time between sessions first (autogroup: "
            "`/proc/sys/kernel/sched_autogroup_enabled` is 1), and every run here is in one "
            "session (the Ray cluster too): while other sessions keep the CPUs busy, the share "
            "of that session is bounded whatever the number of processes it runs, so two "
            "trials at once can each get less CPU than one trial alone (compare the parallel "
            "rows' `mean trial s` with the serial rows').",
        ]
    met_count: dict[str, list[bool]] = {}
    per_trial: list[float] = []
    for i, rows in enumerate(rounds):
        serial = rows[0][1]
        targets = {
            "serial (inprocess, default threads)": ("<= 1.2x the one-thread run", rows[1][1] * 1.2),
            "process --workers 2": ("<= 0.65x serial", serial * 0.65),
            "ray --workers 2 (cluster started)": ("<= 0.75x serial", serial * 0.75),
        }
        if len(rounds) > 1:
            lines += ["", f"Round {i + 1} of {len(rounds)}:"]
        lines += [
            "",
            "| run | wall s | x serial | trial phase s | x serial | start-up s | exit s "
            "| mean trial s | batch | slots busy | target | met |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        serial_span = span(rows[0][2])
        for name, wall, result, note in rows:
            n = max(1, result["n_evaluations"])
            phase = span(result)
            target, limit = targets.get(name, ("", None))
            met = "" if limit is None else ("yes" if wall <= limit else "no")
            if limit is not None:
                met_count.setdefault(name, []).append(wall <= limit)
            per_trial.append(result["evaluation_seconds"] / n)
            extra = f" ({note})" if note else ""
            lines.append(
                f"| {name}{extra} | {wall:.1f} | {wall / serial:.2f} | {phase:.1f} | "
                f"{phase / serial_span:.2f} | {result['_startup_s']:.1f} | "
                f"{result['_exit_s']:.1f} | "
                f"{result['evaluation_seconds'] / n:.3f} | {result['batch_size']} | "
                f"{busy(result, phase):.2f} | {target} | {met} |"
            )
    if len(rounds) > 1:
        lines += [
            "",
            "Targets met: "
            + "; ".join(f"{name}: {sum(m)} of {len(m)} rounds" for name, m in met_count.items())
            + ".",
        ]
    lines += [
        "",
        f"The mean trial time ranged from {min(per_trial):.3f} s to {max(per_trial):.3f} s "
        "across these runs of the same trials' kind: when it differs much, the load on the "
        "machine changed between runs (or two trials shared the 2 cores with other work) and "
        "the ratios say as much about the load as about the executors.",
        "",
        "`wall s` is the whole `dashsel run` process (imports, reading the pool, fingerprinting "
        "its data, worker or Ray start-up, the trials, exit); `trial phase s` runs from the "
        "first trial's start to the last one's end (from the trials in the result JSON), the "
        "part that parallel executors can shorten; `start-up s` runs from the process's launch "
        "to the first trial's start, `exit s` from the last trial's end to the process's end "
        "(its output closed: worker processes that hold it count). Targets are judged on the "
        "whole process.",
        "",
        "`slots busy` is the trials' summed evaluation time over batch x trial phase: how well "
        "the run kept its trial slots busy (a slot waits while the policy is told and asks, "
        "and whenever a trial may not start yet); it depends little on the machine's load.",
        "",
        "`mean trial s` is the mean evaluation time inside the trials (from the result JSON); "
        "`batch` is the batch size the run used (`--workers 2` alone gives 2: two trials in "
        "flight, the next one asked and started as soon as the oldest has finished and been "
        "told). A run with batch 2 makes different trials than a run with batch 1 (the promise "
        "is: a seed and a batch size give the same trials whatever the executor).",
        "",
    ]
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text("\n".join(lines))
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
