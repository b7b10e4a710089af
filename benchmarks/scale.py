"""Speed at scale: the policies' step, the end of a run and a whole ``dashsel run`` process,
for pools of 10^3 to 10^6 datasets, each beside a minimal numpy reference.

For n datasets in round(sqrt(n)) groups (10^3 groups at 10^6) and each of DaSH and FlatTS:

* **ask+tell**: median wall time of one ``policy.ask()`` + ``policy.tell()`` with a synthetic
  reward, interleaved step by step with a minimal numpy implementation of the same step
  (below: one generator seeded from (seed, step); DaSH: one draw per group, one per member
  of the chosen group; FlatTS: one draw per dataset, argmax; O(1) update; no validation).
* **end of run**: time :func:`dashsel.select` spends after its last trial finishes
  (recommend, posterior, result), budget 100.
* **journal**: extra time per trial of the same ``select`` with an SQLite journal (the
  journal as it is in this checkout, opening it included), over no journal.
* **memory**: peak bytes allocated per dataset (tracemalloc) while the policy is reset, run
  for the steps above and asked for its posterior (the pool's hierarchy is built before).

End to end (10^6 datasets in 10^3 groups): a ``dashsel run`` subprocess on a table of
datasets plus a replay (``table``) evaluator with one reward row per dataset, budget 100,
``--no-final``, no journal, against a Python process that imports numpy and pandas, reads the
same two tables with pandas and argsorts 10^6 random numbers. Wall time (min over repeats)
and peak RSS of each child (``os.wait4``).

Usage (repository root)::

    python benchmarks/scale.py [OUT.md] [--sizes 1000,10000] [--repeats 3]
    python benchmarks/scale.py [OUT.md] --e2e-only [--repeats 5]

Writes OUT.md (default docs/benchmarks/scale.md) and a plot next to it (scale.png); with
``--e2e-only``, runs only the end-to-end comparison and rewrites that section of an existing
OUT.md. The load average at the start and end is recorded: a shared machine makes timings
noisy. The end-to-end children run with a bytecode cache in their temporary directory (an
installed package has one), after one untimed run of each process.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# This checkout's code, first: an installed dashsel (e.g. an editable install of another
# checkout) would otherwise be what the in-process measurements time, while the end-to-end
# children run this checkout's (their PYTHONPATH is set below).
sys.path.insert(0, str(ROOT / "src"))
import dashsel  # noqa: E402
from dashsel.evaluators.base import Evaluator  # noqa: E402 - after the path set-up
from dashsel.hierarchy import Hierarchy  # noqa: E402
from dashsel.policies import DaSH, FlatTS, HiTS  # noqa: E402
from dashsel.policies.base import Policy  # noqa: E402
from dashsel.run import select  # noqa: E402
from dashsel.trial import TrialSpec  # noqa: E402

SIZES = (1_000, 10_000, 100_000, 1_000_000)
POLICIES: dict[str, Callable[[], Policy]] = {"dash": DaSH, "flat": FlatTS, "hits": HiTS}
BUDGET = 100
SEED = 0
#: Targets of issue 11.
TARGET_STEP = {"dash": 2.0, "flat": 1.5}
TARGET_E2E_TIME = 3.0
TARGET_E2E_BYTES = 200
#: The end-to-end runs: the default policy (the engine, hits) and DaSH.
E2E_RUNS: dict[str, list[str]] = {"default (hits)": [], "dash": ["--policy", "dash"]}


def n_groups(n: int) -> int:
    return max(1, round(math.sqrt(n)))


def make_hierarchy(n: int) -> tuple[Hierarchy, np.ndarray]:
    g = n_groups(n)
    ids = [f"d{i}" for i in range(n)]
    groups = [f"g{i % g}" for i in range(n)]
    rng = np.random.default_rng(0)
    utility = rng.uniform(0.3, 0.9, g)[np.arange(n) % g] + rng.normal(0, 0.05, n)
    return Hierarchy(ids, groups), utility


# --- minimal numpy references ------------------------------------------------------------------
class RefDaSH:
    """The DaSH step with nothing else: same priors and closed forms, arrays only."""

    def __init__(self, group_of: np.ndarray, n_groups: int, seed: int) -> None:
        self.mu0, self.s0, self.sh, self.sr = 0.5, 0.25, 0.1, 0.05
        self.seed = seed
        self.group_of = group_of
        order = np.argsort(group_of, kind="stable")
        sizes = np.bincount(group_of, minlength=n_groups)
        self.members = np.split(order, np.cumsum(sizes)[:-1])
        self.n = np.zeros(group_of.size)
        self.mean = np.zeros(group_of.size)
        self.gn = np.zeros(n_groups)
        self.gmean = np.zeros(n_groups)
        self.gpm = np.full(n_groups, self.mu0)  # group posterior mean and variance
        self.gpv = np.full(n_groups, self.s0**2)
        self.t = 0

    def ask(self) -> int:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.t]))
        self.t += 1
        g = int(np.argmax(self.gpm + np.sqrt(self.gpv) * rng.standard_normal(self.gpm.size)))
        m = self.members[g]
        v = 1.0 / (1.0 / self.sh**2 + self.n[m] / self.sr**2)
        mean = v * (self.gpm[g] / self.sh**2 + self.n[m] * self.mean[m] / self.sr**2)
        return int(m[np.argmax(mean + np.sqrt(v) * rng.standard_normal(m.size))])

    def tell(self, i: int, r: float) -> None:
        g = self.group_of[i]
        self.n[i] += 1
        self.mean[i] += (r - self.mean[i]) / self.n[i]
        self.gn[g] += 1
        self.gmean[g] += (r - self.gmean[g]) / self.gn[g]
        obs = self.sh**2 + self.sr**2 / self.gn[g]
        v = 1.0 / (1.0 / self.s0**2 + 1.0 / obs)
        self.gpv[g] = v
        self.gpm[g] = v * (self.mu0 / self.s0**2 + self.gmean[g] / obs)


class RefFlat:
    """The flat Thompson step: one draw per dataset, argmax, O(1) update."""

    def __init__(self, n: int, seed: int) -> None:
        self.mu0, self.s0, self.sr = 0.5, 0.27, 0.05
        self.seed = seed
        self.n = np.zeros(n)
        self.mean_r = np.zeros(n)
        self.pm = np.full(n, self.mu0)
        self.ps = np.full(n, self.s0)
        self.t = 0

    def ask(self) -> int:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.t]))
        self.t += 1
        draw = rng.standard_normal(self.pm.size)
        draw *= self.ps
        draw += self.pm
        return int(np.argmax(draw))

    def tell(self, i: int, r: float) -> None:
        self.n[i] += 1
        self.mean_r[i] += (r - self.mean_r[i]) / self.n[i]
        v = 1.0 / (1.0 / self.s0**2 + self.n[i] / self.sr**2)
        self.pm[i] = v * (self.mu0 / self.s0**2 + self.n[i] * self.mean_r[i] / self.sr**2)
        self.ps[i] = math.sqrt(v)


# --- measurements ------------------------------------------------------------------------------
def steps_for(n: int) -> int:
    return 300 if n <= 100_000 else 100


def step_times(name: str, h: Hierarchy, utility: np.ndarray) -> tuple[float, float]:
    """(dashsel, reference) median seconds per ask+tell, the two interleaved step by step so
    that both see the same load. The engine (hits) has no minimal reference: nan."""
    n = h.n_datasets
    policy = POLICIES[name]().reset(h, random_state=SEED)
    ref: RefDaSH | RefFlat | None
    if name == "dash":
        ref = RefDaSH(np.asarray(h.group_index), h.n_groups, SEED)
    elif name == "flat":
        ref = RefFlat(n, SEED)
    else:
        ref = None
    noise = np.random.default_rng(1).normal(0, 0.03, steps_for(n))
    ours, theirs = [], []
    for k in range(steps_for(n)):
        t0 = time.perf_counter()
        d = policy.ask()
        policy.tell(d, float(utility[h.index(d)] + noise[k]))
        t1 = time.perf_counter()
        if ref is not None:
            i = ref.ask()
            ref.tell(i, float(utility[i] + noise[k]))
        t2 = time.perf_counter() if ref is not None else math.nan
        ours.append(t1 - t0)
        theirs.append(t2 - t1)
    return float(np.median(ours)), float(np.median(theirs))


class Synthetic(Evaluator):
    """A reward from a fixed utility table: no training, so only dashsel's own time counts."""

    can_train = False

    def __init__(self, h: Hierarchy, utility: np.ndarray) -> None:
        self.h, self.utility = h, utility

    def evaluate(self, spec: TrialSpec) -> float:
        return float(self.utility[self.h.index(spec.dataset_id)])

    def describe(self) -> dict[str, Any]:
        return {"kind": "synthetic"}


def run_times(
    name: str, h: Hierarchy, utility: np.ndarray, repeats: int = 3
) -> tuple[float, float]:
    """(seconds after the last trial, min over ``repeats`` runs; journal seconds per trial)
    of a ``select`` run."""
    afters, totals = [], []
    for _ in range(repeats):
        last: list[float] = []

        def stamp(outcome: Any, last: list[float] = last) -> None:
            last.append(time.perf_counter())

        t0 = time.perf_counter()
        select(h, POLICIES[name](), Synthetic(h, utility), BUDGET, seed=SEED,
               score_final=False, callback=stamp)  # fmt: skip
        end = time.perf_counter()
        afters.append(end - last[-1])
        totals.append(end - t0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        select(h, POLICIES[name](), Synthetic(h, utility), BUDGET, seed=SEED, score_final=False,
               journal=Path(tmp) / "j.sqlite")  # fmt: skip
        with_journal = time.perf_counter() - t0
    return min(afters), (with_journal - min(totals)) / BUDGET


def memory_per_dataset(name: str, h: Hierarchy, utility: np.ndarray) -> float:
    """Peak bytes allocated per dataset by reset + steps + posterior (tracemalloc)."""
    h.group_ids  # noqa: B018 - the pool's structure exists before the run
    tracemalloc.start()
    policy = POLICIES[name]().reset(h, random_state=SEED)
    for _ in range(min(steps_for(h.n_datasets), 50)):
        d = policy.ask()
        policy.tell(d, float(utility[h.index(d)]))
    policy.recommend()
    post = policy.posterior()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del post
    return peak / h.n_datasets


# --- end to end --------------------------------------------------------------------------------
BASELINE = """\
import sys
import numpy as np
import pandas as pd
datasets = pd.read_csv(sys.argv[1])
rewards = pd.read_csv(sys.argv[2])
np.argsort(np.random.default_rng(0).random(len(datasets)))
"""


def write_tables(directory: Path, n: int) -> Path:
    import pandas as pd

    g = n_groups(n)
    ids = np.char.add("d", np.arange(n).astype(str))
    groups = np.char.add("g", (np.arange(n) % g).astype(str))
    pd.DataFrame({"id": ids, "group": groups}).to_csv(directory / "datasets.csv", index=False)
    rewards = np.random.default_rng(0).random(n).round(6)
    pd.DataFrame({"dataset": ids, "reward": rewards}).to_csv(directory / "rewards.csv", index=False)
    manifest = directory / "manifest.toml"
    manifest.write_text(
        '[pool]\nname = "scale"\ndatasets = "datasets.csv"\n\n'
        '[evaluator]\nkind = "table"\npath = "rewards.csv"\n'
    )
    return manifest


LAUNCHER = """\
import json, os, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
err = proc.stderr.read().decode()
print(json.dumps({"wall": wall, "rss_kib": usage.ru_maxrss,
                  "rc": os.waitstatus_to_exitcode(status), "err": err[-2000:]}))
"""


def run_child(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process.

    The child is started by a small launcher process: on Linux a child's peak RSS counts the
    memory of the process it was forked from, and this benchmark's own process is large by
    the time it gets here.
    """
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # Bytecode cached as for an installed package (pip compiles it; numpy and pandas, which
    # the reference imports, come compiled): a PYTHONDONTWRITEBYTECODE environment would
    # otherwise make every child compile dashsel's sources again (0.1-0.2 s per process).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cwd / "pycache")
    out = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *cmd], cwd=cwd, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"launcher failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res['rc']}): {res['err']}")
    return float(res["wall"]), int(res["rss_kib"]) * 1024  # Linux reports KiB


def end_to_end(n: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        manifest = write_tables(d, n)
        (d / "baseline.py").write_text(BASELINE)
        base_cmd = [sys.executable, "baseline.py", "datasets.csv", "rewards.csv"]
        run_cmd = [sys.executable, "-m", "dashsel.cli", "run", str(manifest),
                   "--budget", str(BUDGET), "--no-final", "--seed", str(SEED)]  # fmt: skip
        out: dict[str, Any] = {"n": n, "baseline": [], **{name: [] for name in E2E_RUNS}}
        # One untimed run of each first: writes the bytecode cache and reads the tables into
        # the page cache, for every process alike.
        run_child(base_cmd, d)
        for extra in E2E_RUNS.values():
            run_child(run_cmd + extra, d)
        for _ in range(repeats):  # interleaved, so all see the same load
            out["baseline"].append(run_child(base_cmd, d))
            for name, extra in E2E_RUNS.items():
                out[name].append(run_child(run_cmd + extra, d))
    return out


# --- report ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default=str(ROOT / "docs" / "benchmarks" / "scale.md"))
    ap.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    ap.add_argument("--repeats", type=int, default=5, help="end-to-end runs of each process")
    ap.add_argument("--e2e-size", type=int, default=1_000_000)
    ap.add_argument(
        "--e2e-only",
        action="store_true",
        help="only the end-to-end runs: rewrite that section of OUT (which must exist)",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.e2e_only:
        return e2e_only(out, args.e2e_size, args.repeats)
    sizes = [int(s) for s in args.sizes.split(",")]
    load0 = os.getloadavg()[0]

    rows = []
    for n in sizes:
        h, utility = make_hierarchy(n)
        h.fingerprint()
        for name in POLICIES:
            ours, ref = step_times(name, h, utility)
            after, journal = run_times(name, h, utility)
            mem = memory_per_dataset(name, h, utility)
            rows.append({"n": n, "groups": h.n_groups, "policy": name, "step": ours,
                         "ref": ref, "after": after, "journal": journal, "mem": mem})  # fmt: skip
            print(f"{n:>9,} {name:5s} ask+tell {1e6 * ours:9.1f} us (ref {1e6 * ref:9.1f}, "
                  f"x{ours / ref:4.2f})  end {1e3 * after:8.1f} ms  journal "
                  f"{1e3 * journal:7.2f} ms/trial  {mem:6.1f} B/dataset", flush=True)  # fmt: skip
    e2e = end_to_end(args.e2e_size, args.repeats)
    for k, (bt, br) in enumerate(e2e["baseline"]):
        runs = ", ".join(f"{name} {e2e[name][k][0]:.2f} s {e2e[name][k][1] / 2**20:.0f} MiB"
                         for name in E2E_RUNS)  # fmt: skip
        print(f"e2e: baseline {bt:.2f} s {br / 2**20:.0f} MiB, {runs}", flush=True)
    load1 = os.getloadavg()[0]
    write_report(out, rows, e2e, (load0, load1), args.repeats)
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def _verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def write_report(out: Path, rows: list[dict[str, Any]], e2e: dict[str, Any],
                 load: tuple[float, float], repeats: int) -> None:  # fmt: skip
    lines = [
        "# Speed at scale",
        "",
        f"Command: `nice python benchmarks/scale.py` (dashsel {dashsel.__version__}, Python "
        f"{platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs). "
        f"Load average {load[0]:.1f} at the start and {load[1]:.1f} at the end on "
        f"{os.cpu_count()} CPUs: the machine is shared with other jobs, so absolute times are "
        "inflated and noisy; the ratios compare code measured side by side (interleaved) "
        "under the same load.",
        "",
        "Pools of n datasets in round(sqrt(n)) groups (10^3 groups at 10^6). Per policy:",
        "",
        "* **ask+tell**: median wall time of one `ask()` + `tell()` (synthetic reward), "
        "interleaved step by step with the minimal numpy reference in `benchmarks/scale.py` "
        "(one generator seeded from (seed, step); DaSH: one draw per group, one per member of "
        "the chosen group; FlatTS: one draw per dataset, argmax; O(1) update; no validation, "
        "no ids). The engine (`hits`, the default policy) has no minimal reference; its "
        "default target is the top 10% of the pool (10^5 datasets at 10^6), and its step "
        "includes the hyperparameter refits (after each of the first 30 rewards, then on a "
        "geometric schedule).",
        f"* **end of run**: time `select()` spends after its last trial (recommend, posterior, "
        f"result), budget {BUDGET}; minimum of 3 runs.",
        "* **journal**: extra time per trial of the same `select()` with an SQLite journal "
        "(the journal of this checkout, opening it included) over the fastest run without "
        "one; `benchmarks/journal_cost.py` measures the journal alone "
        "([`journal_cost.md`](journal_cost.md)).",
        "* **memory**: peak bytes allocated per dataset (tracemalloc) by reset, the steps, "
        "`recommend()` and `posterior()`.",
        "",
        "| datasets | groups | policy | ask+tell (µs) | reference (µs) | ratio | target "
        "| end of run (ms) | journal (ms/trial) | memory (B/dataset) |",
        "|---:|---:|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        has_ref = math.isfinite(r["ref"])
        ratio = r["step"] / r["ref"] if has_ref else math.nan
        target = TARGET_STEP.get(r["policy"])
        verdict = (
            f"≤ {target}x {_verdict(ratio <= target)}"
            if r["n"] == 10**6 and target is not None
            else ""
        )
        ref_text = f"{1e6 * r['ref']:.1f}" if has_ref else "–"
        ratio_text = f"{ratio:.2f}" if has_ref else "–"
        lines.append(
            f"| {r['n']:,} | {r['groups']:,} | {r['policy']} | {1e6 * r['step']:.1f} "
            f"| {ref_text} | {ratio_text} | {verdict} | {1e3 * r['after']:.1f} "
            f"| {1e3 * r['journal']:.2f} | {r['mem']:.1f} |"
        )
    lines += ["", *e2e_lines(e2e, repeats)]
    lines += [
        f"![per-step and end-of-run time]({out.with_suffix('.png').name})",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    plot(out.with_suffix(".png"), rows)


def e2e_lines(e2e: dict[str, Any], repeats: int, load: tuple[float, float] | None = None
              ) -> list[str]:  # fmt: skip
    """The end-to-end section of the report (from its heading to the paragraph on what the
    numbers rest on)."""
    n_e2e = e2e["n"]
    b_time = min(t for t, _ in e2e["baseline"])
    b_rss = min(r for _, r in e2e["baseline"])
    lines = [
        f"## End to end: `dashsel run` on {n_e2e:,} datasets",
        "",
        f"A table of {n_e2e:,} datasets in {n_groups(n_e2e):,} groups (`[pool] datasets = "
        '"datasets.csv"`) and a replay evaluator (`kind = "table"`, one reward row per '
        f"dataset); `dashsel run manifest.toml --budget {BUDGET} --no-final`, no journal, as a "
        "subprocess, with the default policy (the engine, `hits`) and with `--policy dash`. "
        "Reference: a Python process that imports numpy and pandas, reads the same two tables "
        f"with `pandas.read_csv` and argsorts {n_e2e:,} random numbers. {repeats} runs of "
        "each, interleaved; minimum wall time and minimum peak RSS (`os.wait4`) of each, and "
        "the spread of the per-round ratios.",
        "",
        "| process | wall time (s), min | peak RSS (MiB) | time / reference (min) "
        "| per-round ratios (median; range) | memory above reference (B/dataset) |",
        "|---|---:|---:|---:|---|---:|",
        f"| reference (numpy + pandas read + argsort) | {b_time:.2f} | {b_rss / 2**20:.0f} "
        "| 1 | | |",
    ]
    verdicts = []
    for name in E2E_RUNS:
        runs = e2e[name]
        o_time = min(t for t, _ in runs)
        o_rss = min(r for _, r in runs)
        extra = (o_rss - b_rss) / n_e2e
        ratios = [ot / bt for (bt, _), (ot, _) in zip(e2e["baseline"], runs, strict=True)]
        med = float(np.median(ratios))
        lines.append(
            f"| `dashsel run` {name} | {o_time:.2f} | {o_rss / 2**20:.0f} "
            f"| {o_time / b_time:.2f} | {med:.2f}; {min(ratios):.2f}–{max(ratios):.2f} "
            f"| {extra:.0f} |"
        )
        verdicts.append(
            f"* {name}: time {o_time / b_time:.2f}x the reference by the minima, median "
            f"round {med:.2f}x (target ≤ {TARGET_E2E_TIME:g}x): "
            f"{_verdict(o_time / b_time <= TARGET_E2E_TIME)}; memory {extra:.0f} B per "
            f"dataset above the reference (target ≤ {TARGET_E2E_BYTES} B): "
            f"{_verdict(extra <= TARGET_E2E_BYTES)}"
        )
    lines += ["", *verdicts, "", "All runs (s, MiB):", ""]
    for k, (bt, br) in enumerate(e2e["baseline"]):
        runs_text = "; ".join(
            f"{name} {e2e[name][k][0]:.2f} s {e2e[name][k][1] / 2**20:.0f} MiB" for name in E2E_RUNS
        )
        lines.append(f"* round {k + 1}: reference {bt:.2f} s {br / 2**20:.0f} MiB; {runs_text}")
    lines += [
        "",
        "What this rests on: the posterior is columnar (numpy arrays; `Belief` objects only "
        "on look-up); the pool is read from the table with pandas and held as columns; the "
        "hierarchy keeps the id column it was read from and makes no Python string per "
        "dataset (it checks the ids on the column's Arrow buffers: 64-bit polynomial hashes, "
        "checked distinct with pandas' hash table; its `dataset_ids` and `groups` read single "
        "ids from the column and build their tuples only when an operation needs every id), "
        "checks the groups on their distinct names, and builds its id index only for ids it "
        "did not hand out itself (the engine hands out ids through it too); the replay table "
        "is matched to the pool by comparing its id column with the pool's (vectorised, no "
        "Python string per row) and without an index of its own; a run without a journal "
        "does not fingerprint the pool or copy its ids into a run header no one reads; the "
        "engine's asks draw by groups (`hits_model.topk_draw`: the top-k of a joint posterior "
        "draw in O(groups + evaluated datasets), exact, instead of one normal per dataset) "
        "and keep the mask of untried datasets up to date as rewards arrive (no O(N) pass per "
        "ask when nothing is excluded) and draw the hypergeometric overlaps of its top-two "
        "choice only where they are random (with nothing excluded, one of four); the "
        "engine's posterior moments hold two arrays of N floats (mean, variance), the "
        "pieces of a joint draw being built only when one is made; the posterior table "
        "finds its top rows from a sampled threshold and a stable sort of the few candidates "
        "(not numpy's `argpartition`, slow when most means are tied); the engine's "
        "hyperparameter fits use `scipy.optimize.minimize` (Nelder-Mead), imported at the "
        "first fit. What remains above the reference is mostly the CLI's imports (typer, "
        "which imports pydantic, and rich) and, for the engine, importing `scipy.optimize` "
        "(which brings `scipy.special`, whose `ndtr`/`ndtri` the grouped draws use, and, "
        "through scipy's copy of the numpy namespace, `numpy.f2py`), its 37 hyperparameter "
        "fits in 100 trials (each two Nelder-Mead runs on at most 100 rewards, whatever the "
        "pool's size), its 100 asks (two grouped top-k draws each) and one O(N) posterior at "
        "the "
        "end. The children run with a bytecode cache (`PYTHONPYCACHEPREFIX` in the temporary "
        "directory, after one untimed run of each process), as an installed package does: "
        "in an environment with `PYTHONDONTWRITEBYTECODE` set, every process would otherwise "
        "compile dashsel's modules again.",
        "",
    ]
    if load is not None:
        lines.insert(
            2,
            f"Measured by `nice python benchmarks/scale.py --e2e-only` (load average "
            f"{load[0]:.1f} at the start and {load[1]:.1f} at the end on {os.cpu_count()} CPUs).",
        )
        lines.insert(3, "")
    return lines


def e2e_only(out: Path, n: int, repeats: int) -> int:
    """Run only the end-to-end comparison and replace that section of ``out``."""
    text = out.read_text()
    head, sep, rest = text.partition("## End to end")
    plot_at = rest.find("![per-step")
    if not sep or plot_at < 0:
        raise SystemExit(f"{out}: no end-to-end section to replace (run without --e2e-only)")
    load0 = os.getloadavg()[0]
    e2e = end_to_end(n, repeats)
    for k, (bt, br) in enumerate(e2e["baseline"]):
        runs = ", ".join(f"{name} {e2e[name][k][0]:.2f} s {e2e[name][k][1] / 2**20:.0f} MiB"
                         for name in E2E_RUNS)  # fmt: skip
        print(f"e2e: baseline {bt:.2f} s {br / 2**20:.0f} MiB, {runs}", flush=True)
    load = (load0, os.getloadavg()[0])
    section = "\n".join(e2e_lines(e2e, repeats, load)) + "\n\n"
    out.write_text(head + section + rest[plot_at:])
    print(f"rewrote the end-to-end section of {out}")
    return 0


def plot(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, colour in (("dash", "tab:blue"), ("flat", "tab:orange"), ("hits", "tab:green")):
        rs = [r for r in rows if r["policy"] == name]
        ns = [r["n"] for r in rs]
        a.plot(ns, [1e6 * r["step"] for r in rs], "o-", color=colour, label=f"{name}")
        if rs and math.isfinite(rs[0]["ref"]):
            a.plot(ns, [1e6 * r["ref"] for r in rs], "s--", color=colour, alpha=0.6,
                   label=f"{name} reference")  # fmt: skip
        b.plot(ns, [1e3 * r["after"] for r in rs], "o-", color=colour, label=name)
    for ax, title, unit in ((a, "ask + tell", "µs"), (b, "end of run (after last trial)", "ms")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("datasets in the pool")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
