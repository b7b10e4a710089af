"""How much each domain's data helps each target on digits5 (the table in docs/datasets.md).

Test accuracy (%) of logistic regression on HOG features trained on the target's local data
plus one subset (subset 0) of each domain, next to Local (no extra data) and Global (local +
the target's three subsets). Default pools (20 local images, split seed 0).

Usage (repository root)::

    python benchmarks/digits5_transfer.py
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import dashsel  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dashsel.evaluators.sklearn import LogisticEvaluator
from dashsel_bench.common import relevant_ids
from dashsel_bench.digits5 import DOMAINS, SUITE


def main() -> int:
    header = ["target", "Local", *[f"+{d}0" for d in DOMAINS], "Global"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for target in SUITE.targets:
        pool = SUITE.make_pool(target)
        ev = LogisticEvaluator(pool)
        row = [ev.score([], 0, "test")]
        row += [ev.score([f"{d}0"], 0, "test") for d in DOMAINS]
        row.append(ev.score(relevant_ids(pool), 0, "test"))
        lines.append(f"| {target} | " + " | ".join(f"{100 * v:.1f}" for v in row) + " |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
