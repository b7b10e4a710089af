"""SelectionResult: JSON export and summary."""

from __future__ import annotations

import json

import pandas as pd

from dashsel.policies.base import Belief, Posterior
from dashsel.result import SelectionResult


def make_result(**overrides) -> SelectionResult:
    posterior = Posterior(
        datasets=(Belief("a0", "a", 0.8, 0.1, 3), Belief("b0", "b", float("nan"), 0.3, 0)),
        groups=(Belief("a", None, 0.8, 0.05, 3), Belief("b", None, 0.5, float("inf"), 0)),
    )
    trials = pd.DataFrame(
        [
            {"number": 0, "batch": 0, "dataset_id": "a0", "group": "a", "seed": 11, "pull": 0,
             "reward": 0.81, "started": 1.0, "finished": 2.5, "duration": 1.5},
        ]
    )  # fmt: skip
    fields = dict(
        selected=("a0",),
        selected_groups=("a",),
        posterior=posterior,
        trials=trials,
        test_accuracy=0.9,
        local_accuracy=0.5,
        global_accuracy=0.95,
        n_evaluations=1,
        evaluation_seconds=1.5,
        overhead_seconds=0.01,
        policy="dash",
        policy_params={"sigma": (0.1, 0.2)},
        seed=3,
        budget=1,
        pool="toy",
    )
    fields.update(overrides)
    return SelectionResult(**fields)


def test_to_dict_is_json_with_required_keys(tmp_path) -> None:
    d = make_result().to_dict()
    text = json.dumps(d, allow_nan=False)  # NaN/inf beliefs become null
    required = {"selected", "selected_groups", "posterior", "group_posterior", "trials",
                "test_accuracy", "local_accuracy", "global_accuracy"}  # fmt: skip
    assert required <= set(d)
    assert d["posterior"][0] == {"id": "a0", "group": "a", "mean": 0.8, "std": 0.1, "pulls": 3}
    assert d["posterior"][1]["mean"] is None and d["group_posterior"][1]["std"] is None
    assert d["trials"][0]["seed"] == 11 and isinstance(d["trials"][0]["seed"], int)
    assert d["policy_params"] == {"sigma": [0.1, 0.2]}
    path = make_result().to_json(tmp_path / "out" / "result.json")
    assert json.loads(path.read_text()) == json.loads(text)


def test_no_training_evaluator_gives_nulls_and_summary() -> None:
    r = make_result(test_accuracy=None, local_accuracy=None, global_accuracy=None, n_resumed=1)
    d = r.to_dict()
    assert d["test_accuracy"] is None and d["global_accuracy"] is None
    s = r.summary()
    assert "a0" in s and "accuracy" not in s and "1 from the journal" in s
    assert "test accuracy 90.0% (local 50.0%, global 95.0%)" in make_result().summary()
