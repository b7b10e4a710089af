"""The engine study's bookkeeping: pool counts per budget, tiers, cells and evaluations to
within 0.01 of the best set (benchmarks/engine_study.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _study():
    spec = importlib.util.spec_from_file_location(
        "engine_study", ROOT / "benchmarks" / "engine_study.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["engine_study"] = mod
    spec.loader.exec_module(mod)
    return mod


es = _study()


def test_parse_runs() -> None:
    assert es.parse_runs("1/16:50,1/8:40,1/4:30,1/2:20,1:10") == (50, 40, 30, 20, 10)
    assert es.parse_runs("7") == (7,) * 5
    with pytest.raises(SystemExit):
        es.parse_runs("1/16:5,1/8:6,1/4:3,1/2:2,1:2")  # more pools at a larger budget


def test_tiers_run_each_pool_to_its_largest_budget() -> None:
    tasks = es.make_tasks(("informative",), (5, 4, 3, 2, 2), (1,) * 5, 0, ("ucb",))
    last = sorted(t[4] for t in tasks)
    assert last == [0, 1, 2, 4, 4]  # pool 4 stops at 1/16, pool 3 at 1/8, pool 2 at 1/4


def test_cells_use_every_pool_that_reached_the_budget_and_target_is_measured() -> None:
    methods = ("hits", "ucb")
    tasks = es.make_tasks(("deterministic",), (4, 3, 2, 2, 2), (1,) * 5, 5000, methods)
    res = es.summarise([es.run_one(t) for t in tasks], methods)["deterministic"]
    assert [c["pools"] for c in res["cells"]] == [4, 3, 2, 2, 2]
    assert res["tracked"] == 2
    # UCB evaluates every dataset once within the full budget of a deterministic pool, so its
    # final choice is exact and it gets (and stays) within 0.01 of the best set.
    assert res["target"]["ucb"]["share"] == 1.0
    assert all(1 <= e <= res["budget"] for e in res["target"]["ucb"]["evals"])
    assert res["repeats"]["hits"] == 0.0
    d = res["cells"][0]["engine_minus_best"]
    assert d["se"] >= 0.0


def test_verdict_names_losses_and_cells_within_one_standard_error_of_one() -> None:
    def cell(fraction: float, delta: float, se: float) -> dict:
        return {
            "fraction": fraction,
            "hits": {"mean": 0.5 + delta},
            "flat": {"mean": 0.5},
            "best_baseline": "flat",
            "engine_minus_best": {"mean": delta, "se": se},
        }

    res = {"uninformative": {"cells": [cell(1 / 16, -0.02, 0.003), cell(1 / 8, -0.009, 0.003),
                                       cell(1 / 4, +0.01, 0.003)]}}  # fmt: skip
    text = "\n".join(es._verdict(res))
    assert "in 2 of 3 cells" in text
    loss, close = text.split("within one standard error")
    assert "budget 1/16" in loss and "budget 1/8" not in loss
    assert "budget 1/8" in close and "budget 1/4" not in close
