"""Check the torch CNN evaluator on a GPU: rewards, timings, CUDA vs CPU, repeatability.

Builds a small synthetic image pool (coloured shapes, 3x32x32, 4 classes; no dataset
download or dashsel data build), then runs :class:`TorchCNNEvaluator` trials on CUDA and on the
CPU with the default network, and a few on CUDA with the paper-size (FACT) network. Prints a
table and writes everything as JSON to the path given as the first argument.

Usage (from the repository root, on a machine with torch and a GPU; < 2 minutes)::

    PYTHONPATH=src python benchmarks/gpu_check.py gpu_check.json

Without CUDA the CUDA rows are skipped and the JSON says so.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

try:
    import dashsel  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dashsel.evaluators.torch_cnn import TorchCNNEvaluator
from dashsel.pool import ArraySplit, Pool
from dashsel.trial import TrialSpec

N_CLASSES = 4


def shapes(n: int, rng: np.random.Generator, *, noise: float = 0.0, invert: bool = False):
    """``n`` images of a random colour: 0 horizontal bar, 1 vertical bar, 2 square, 3 cross.

    ``noise`` is the fraction of labels replaced at random (a harmful dataset); ``invert``
    flips the intensities (a shifted domain).
    """
    y = rng.integers(0, N_CLASSES, size=n)
    X = rng.uniform(0.0, 0.25, size=(n, 3, 32, 32)).astype(np.float32)
    for i in range(n):
        colour = rng.uniform(0.5, 1.0, size=(3, 1, 1)).astype(np.float32)
        r, c = rng.integers(6, 26, size=2)
        mask = np.zeros((32, 32), dtype=bool)
        if y[i] == 0:
            mask[r - 2 : r + 2, 4:28] = True
        elif y[i] == 1:
            mask[4:28, c - 2 : c + 2] = True
        elif y[i] == 2:
            mask[r - 5 : r + 5, c - 5 : c + 5] = True
        else:
            mask[r - 1 : r + 1, c - 6 : c + 6] = True
            mask[r - 6 : r + 6, c - 1 : c + 1] = True
        X[i][:, mask] = colour[:, :, 0]
    if invert:
        X = 1.0 - X
    labels = y.copy()
    flip = rng.random(n) < noise
    labels[flip] = rng.integers(0, N_CLASSES, size=int(flip.sum()))
    return ArraySplit(X.reshape(n, -1), labels)


def make_pool(seed: int = 0) -> Pool:
    rng = np.random.default_rng(seed)
    datasets = {
        "clean-0": shapes(1000, rng),
        "clean-1": shapes(1000, rng),
        "noisy-0": shapes(1000, rng, noise=0.8),
        "noisy-1": shapes(1000, rng, noise=0.8),
        "inverted-0": shapes(1000, rng, invert=True),
        "inverted-1": shapes(1000, rng, invert=True),
    }
    groups = {d: d.split("-")[0] for d in datasets}
    return Pool.from_arrays(
        datasets,
        groups,
        local=shapes(100, rng),
        validation=shapes(500, rng),
        test=shapes(500, rng),
        name="gpu-check-shapes",
    )


def run_trials(
    ev: TorchCNNEvaluator, label: str, dataset_ids: list[str], seed: int = 0
) -> list[dict[str, Any]]:
    rows = []
    for number, did in enumerate(dataset_ids):
        t0 = time.perf_counter()
        reward = ev.evaluate(TrialSpec(number, did, seed, 0))
        secs = time.perf_counter() - t0
        rows.append(
            {
                "model": label,
                "device": ev.resolve_device(),
                "dataset": did,
                "seed": seed,
                "reward": reward,
                "seconds": round(secs, 3),
            }
        )
        print(f"{label:8s} {rows[-1]['device']:5s} {did:11s} reward={reward:.3f} {secs:7.2f}s")
    return rows


def main(out: str) -> int:
    import torch

    t_start = time.perf_counter()
    pool = make_pool()
    ids = list(pool.dataset_ids)
    cuda = torch.cuda.is_available()
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "pool": {"datasets": len(ids), "train_rows": 1100, "validation": 500},
        "rows": [],
    }
    small = {"image_shape": (3, 32, 32), "epochs": 5}
    if cuda:
        ev = TorchCNNEvaluator(pool, device="cuda", **small)
        run_trials(ev, "warmup", ids[:1])  # CUDA context and cuDNN autotune, not timed below
        report["rows"] += run_trials(ev, "default", ids)
        again = run_trials(ev, "default", ids[:2])
        report["cuda_repeat_equal"] = [r["reward"] for r in again] == [
            r["reward"] for r in report["rows"][:2]
        ]
        fact = TorchCNNEvaluator(
            pool, device="cuda", channels=(64, 128), hidden=(3072, 100), **small
        )
        report["rows"] += run_trials(fact, "fact", ["clean-0", "noisy-0", "inverted-0"])
    cpu = TorchCNNEvaluator(pool, device="cpu", **small)
    # one per group, so CUDA and CPU rewards are compared off the 1.0 ceiling too
    cpu_rows = run_trials(cpu, "default", ["clean-0", "noisy-0", "inverted-0"])
    report["rows"] += cpu_rows
    report["cpu_repeat_equal"] = (
        run_trials(cpu, "default", ids[:1])[0]["reward"] == (cpu_rows[0]["reward"])
    )
    if cuda:
        gpu = {r["dataset"]: r for r in report["rows"] if r["model"] == "default"
               and r["device"] == "cuda"}  # fmt: skip
        report["cuda_vs_cpu"] = [
            {"dataset": r["dataset"], "cpu": r["reward"], "cuda": gpu[r["dataset"]]["reward"],
             "speedup": round(r["seconds"] / max(gpu[r["dataset"]]["seconds"], 1e-9), 1)}
            for r in cpu_rows
        ]  # fmt: skip
    mean = {
        g: float(np.mean([r["reward"] for r in report["rows"]
                          if r["model"] == "default" and r["dataset"].startswith(g)]))
        for g in ("clean", "noisy", "inverted")
    }  # fmt: skip
    report["mean_default_reward_by_group"] = mean
    report["sane"] = mean["clean"] > mean["noisy"]
    report["total_seconds"] = round(time.perf_counter() - t_start, 1)
    Path(out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))
    return 0 if report["sane"] else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/gpu_check.py OUT.json")
    sys.exit(main(sys.argv[1]))
