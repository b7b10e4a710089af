"""Does the fast evaluator rank candidates like the paper's CNN? (digits5, per target)

For each target, every candidate dataset is evaluated (reward = validation accuracy of a model
trained on local + that dataset) by the fast default, logistic regression on HOG features, and
by :class:`~dashsel.evaluators.torch_cnn.TorchCNNEvaluator` on the raw 3x32x32 images, with the
same evaluation seeds. Reported per target: Spearman's rank correlation of the two evaluators'
mean rewards, how many same-domain candidates each ranks in its top 3, and Local and Global test
accuracy under both.

Three steps, so the CNN part can run on a GPU machine that has only numpy and torch::

    python benchmarks/torch_ranking.py export DATA_DIR      # pools as uint8 .npz + fast rewards
    python benchmarks/torch_ranking.py cnn DATA_DIR         # CNN rewards (GPU: about a minute)
    python benchmarks/torch_ranking.py report DATA_DIR OUT  # OUT/torch_ranking.{json,md}
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

try:
    import dashsel  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dashsel.pool import Pool
from dashsel.trial import TrialSpec

SEEDS = 2


def export(data: Path, targets: list[str]) -> None:
    """Save each target's raw pool as uint8 arrays and the fast evaluator's rewards."""
    from dashsel.evaluators.sklearn import LogisticEvaluator
    from dashsel_bench.common import relevant_ids
    from dashsel_bench.digits5 import SUITE

    data.mkdir(parents=True, exist_ok=True)
    fast_rows = {}
    for target in targets:
        raw = SUITE.make_pool(target, features="raw")
        arrays: dict[str, np.ndarray] = {}
        for name in ("local", "validation", "test"):
            split = raw.split(name)
            arrays[f"{name}_X"] = np.round(split.X * 255).astype(np.uint8)
            arrays[f"{name}_y"] = split.y
        for d in raw.dataset_ids:
            arrays[f"d:{d}_X"] = np.round(raw.dataset(d).X * 255).astype(np.uint8)
            arrays[f"d:{d}_y"] = raw.dataset(d).y
        np.savez_compressed(data / f"{target}.npz", **arrays)
        hog = SUITE.make_pool(target)
        fast = LogisticEvaluator(hog, bootstrap=True)
        rel = relevant_ids(hog)
        fast_rows[target] = {
            "ids": list(hog.dataset_ids),
            "groups": list(hog.hierarchy.groups),
            "relevant": rel,
            "rewards": [
                [fast.evaluate(TrialSpec(0, d, s, 0)) for s in range(SEEDS)]
                for d in hog.dataset_ids
            ],
            "local_test": fast.score([], 0, "test"),
            "global_test": fast.score(rel, 0, "test"),
        }
        print(f"exported {target}", flush=True)
    (data / "fast.json").write_text(json.dumps(fast_rows, indent=1))


def _load_pool(path: Path, meta: dict) -> Pool:
    z = np.load(path, allow_pickle=False)

    def pair(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return z[f"{prefix}_X"].astype(np.float32) / 255.0, z[f"{prefix}_y"]

    ids = meta["ids"]
    return Pool.from_arrays(
        {d: pair(f"d:{d}") for d in ids},
        dict(zip(ids, meta["groups"], strict=True)),
        local=pair("local"),
        validation=pair("validation"),
        test=pair("test"),
        name=f"digits5-{path.stem}",
    )


def cnn(data: Path, epochs: int, device: str) -> None:
    """CNN rewards for every exported target (needs only numpy and torch)."""
    import torch

    from dashsel.evaluators.torch_cnn import TorchCNNEvaluator

    fast = json.loads((data / "fast.json").read_text())
    out = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "epochs": epochs,
        "targets": {},
    }
    for target, meta in fast.items():
        pool = _load_pool(data / f"{target}.npz", meta)
        ev = TorchCNNEvaluator(pool, epochs=epochs, device=device)
        t0 = time.perf_counter()
        rewards = [[ev.evaluate(TrialSpec(0, d, s, 0)) for s in range(SEEDS)] for d in meta["ids"]]
        out["targets"][target] = {
            "rewards": rewards,
            "local_test": ev.score([], 0, "test"),
            "global_test": ev.score(meta["relevant"], 0, "test"),
            "seconds": time.perf_counter() - t0,
        }
        print(f"cnn {target}: {time.perf_counter() - t0:.0f}s", flush=True)
    (data / "cnn.json").write_text(json.dumps(out, indent=1))


def report(data: Path, out_dir: Path) -> None:
    """Compare the two evaluators' rankings; write JSON and markdown."""
    from scipy.stats import spearmanr

    fast = json.loads((data / "fast.json").read_text())
    cnn_all = json.loads((data / "cnn.json").read_text())
    rows = []
    for target, meta in fast.items():
        c = cnn_all["targets"][target]
        ids, rel = meta["ids"], set(meta["relevant"])
        m_fast = np.mean(meta["rewards"], axis=1)
        m_cnn = np.mean(c["rewards"], axis=1)
        k = len(rel)
        top_fast = [ids[i] for i in np.argsort(-m_fast, kind="stable")[:k]]
        top_cnn = [ids[i] for i in np.argsort(-m_cnn, kind="stable")[:k]]
        rows.append(
            {
                "target": target,
                "spearman": float(spearmanr(m_fast, m_cnn).statistic),
                "top_fast": top_fast,
                "top_cnn": top_cnn,
                "top_overlap": len(set(top_fast) & set(top_cnn)),
                "relevant_on_top_fast": len(set(top_fast) & rel),
                "relevant_on_top_cnn": len(set(top_cnn) & rel),
                "fast_local_test": meta["local_test"],
                "fast_global_test": meta["global_test"],
                "cnn_local_test": c["local_test"],
                "cnn_global_test": c["global_test"],
                "rewards_fast": dict(zip(ids, m_fast.round(4).tolist(), strict=True)),
                "rewards_cnn": dict(zip(ids, m_cnn.round(4).tolist(), strict=True)),
                "cnn_seconds": c["seconds"],
            }
        )
    info = {key: cnn_all[key] for key in ("device", "torch", "python", "epochs")}
    info.update(seeds=SEEDS, rows=rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "torch_ranking.json").write_text(json.dumps(info, indent=2))
    lines = [
        "# Fast evaluator vs CNN: do they rank candidates alike? (digits5)",
        "",
        "Produced by `benchmarks/torch_ranking.py` (export, cnn, report). CNN: "
        f"`TorchCNNEvaluator` defaults, {info['epochs']} epochs, on {info['device']} "
        f"(torch {info['torch']}); fast: `LogisticEvaluator(bootstrap=True)` on HOG features. "
        f"Rewards are validation accuracies, mean of {SEEDS} seeds per candidate.",
        "",
        "| target | Spearman ρ (15 candidates) | top-3 overlap | same-domain in top-3 "
        "(fast / CNN) | CNN Local → Global test % | fast Local → Global test % |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['spearman']:+.2f} | {r['top_overlap']}/3 "
            f"| {r['relevant_on_top_fast']} / {r['relevant_on_top_cnn']} "
            f"| {100 * r['cnn_local_test']:.1f} → {100 * r['cnn_global_test']:.1f} "
            f"| {100 * r['fast_local_test']:.1f} → {100 * r['fast_global_test']:.1f} |"
        )
    (out_dir / "torch_ranking.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("export")
    p.add_argument("data", type=Path)
    p.add_argument("--targets", default="mnist,svhn,optdigits,mnistm,syn")
    p = sub.add_parser("cnn")
    p.add_argument("data", type=Path)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--device", default="auto")
    p = sub.add_parser("report")
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.step == "export":
        export(args.data, [t for t in args.targets.split(",") if t])
    elif args.step == "cnn":
        cnn(args.data, args.epochs, args.device)
    else:
        report(args.data, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
