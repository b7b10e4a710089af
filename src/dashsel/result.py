"""The result of a selection run: what was chosen, why, and what it cost."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dashsel.jsonable import to_jsonable
from dashsel.policies.base import Posterior

if TYPE_CHECKING:
    import pandas as pd


def _json(value: Any) -> Any:
    # Results write non-finite floats as null: a belief about an arm never pulled is NaN.
    return to_jsonable(value, nonfinite="null")


@dataclass
class SelectionResult:
    """What :func:`dashsel.select` returns.

    Attributes
    ----------
    selected : tuple of str
        Chosen dataset ids, best first.
    selected_groups : tuple of str
        Groups of the chosen datasets.
    posterior : Posterior
        The policy's final beliefs about every dataset and group, as columns (numpy arrays;
        ``posterior.to_frame()`` for a DataFrame, ``posterior.dataset(id)`` for one belief).
    trials : pandas.DataFrame
        One row per finished trial, in number order (columns ``number``, ``batch``,
        ``dataset_id``, ``group``, ``seed``, ``pull``, ``reward``, ``started``, ``finished``,
        ``duration``).
    test_accuracy, local_accuracy, global_accuracy : float or None
        Test accuracy of local + selected data, of local data only, and of local + every
        dataset of the pool; None when the evaluator cannot train or scoring was skipped.
    n_evaluations : int
        Finished trials in the whole run (journaled ones included).
    evaluation_seconds : float
        Sum of the trials' evaluation times (compute spent, whatever ran in parallel).
    overhead_seconds : float
        Time this call spent in the policy (ask, tell, replay, recommend), outside evaluations.
    policy, policy_params, seed, budget, pool
        What produced the result.
    n_resumed : int
        Trials taken from the journal instead of being evaluated by this call.
    failed_datasets : dict of str to str
        Datasets set aside because their trial kept failing, with the last error of each.
    stop_reason : str
        Why the run stopped: ``"budget"``, ``"confident (...)"`` (the policy's stopping rule,
        see ``stop_delta``) or ``"pool exhausted (...)"`` (deterministic rewards, every dataset
        evaluated).
    n_saved : int
        Evaluations of the budget not spent because the run stopped early.
    deterministic : bool
        Whether the run took the evaluator to be deterministic.
    n_repeated_deterministic : int
        Evaluations that repeated a dataset although the evaluator is deterministic (they
        returned nothing new).
    scores : pandas.DataFrame or None
        The training-free scores given to the policy as its prior (``score_*`` columns, by
        dataset id), or None.
    scores_source : str or None
        ``"computed"``, ``"pool"`` (the pool's table of datasets) or ``"user"``.
    scores_seconds : float
        Time spent computing the scores.
    set_skipped : dict of str to str
        Datasets the set-aware final choice passed over (near-copies of chosen ones), each
        with why (see ``select(..., dedupe=...)`` and :mod:`dashsel.sets`).
    """

    selected: tuple[str, ...]
    selected_groups: tuple[str, ...]
    posterior: Posterior
    trials: pd.DataFrame
    test_accuracy: float | None = None
    local_accuracy: float | None = None
    global_accuracy: float | None = None
    n_evaluations: int = 0
    evaluation_seconds: float = 0.0
    overhead_seconds: float = 0.0
    policy: str = ""
    policy_params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    budget: int = 0
    pool: str = ""
    batch_size: int = 1
    n_resumed: int = 0
    failed_datasets: dict[str, str] = field(default_factory=dict)
    stop_reason: str = "budget"
    n_saved: int = 0
    deterministic: bool = False
    n_repeated_deterministic: int = 0
    scores: pd.DataFrame | None = None
    scores_source: str | None = None
    scores_seconds: float = 0.0
    set_skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of everything in the result."""
        return {
            "selected": list(self.selected),
            "selected_groups": list(self.selected_groups),
            # Column-wise, one plain dict per arm (no Belief objects in between).
            "posterior": self.posterior.records("datasets"),
            "group_posterior": self.posterior.records("groups"),
            "trials": _json(self.trials.to_dict(orient="records")),
            "test_accuracy": _json(self.test_accuracy),
            "local_accuracy": _json(self.local_accuracy),
            "global_accuracy": _json(self.global_accuracy),
            "n_evaluations": self.n_evaluations,
            "evaluation_seconds": self.evaluation_seconds,
            "overhead_seconds": self.overhead_seconds,
            "policy": self.policy,
            "policy_params": _json(self.policy_params),
            "seed": self.seed,
            "budget": self.budget,
            "batch_size": self.batch_size,
            "pool": self.pool,
            "n_resumed": self.n_resumed,
            "failed_datasets": dict(self.failed_datasets),
            "stop_reason": self.stop_reason,
            "n_saved": self.n_saved,
            "deterministic": self.deterministic,
            "n_repeated_deterministic": self.n_repeated_deterministic,
            "scores": None
            if self.scores is None
            else _json(self.scores.rename_axis("dataset").reset_index().to_dict(orient="records")),
            "scores_source": self.scores_source,
            "scores_seconds": self.scores_seconds,
            "set_skipped": dict(self.set_skipped),
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as indented JSON to ``path`` (folders created); returns it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path

    def summary(self) -> str:
        """A few lines for a terminal: the choice, the accuracies and the cost."""

        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{100 * x:.1f}%"

        lines = [
            f"{self.policy} on {self.pool}: selected {len(self.selected)} dataset(s) "
            f"from {len(self.selected_groups)} group(s)",
            f"  datasets: {', '.join(self.selected)}",
            f"  groups:   {', '.join(self.selected_groups)}",
        ]
        if self.test_accuracy is not None:
            lines.append(
                f"  test accuracy {pct(self.test_accuracy)} "
                f"(local {pct(self.local_accuracy)}, global {pct(self.global_accuracy)})"
            )
        resumed = f", {self.n_resumed} from the journal" if self.n_resumed else ""
        lines.append(
            f"  {self.n_evaluations}/{self.budget} evaluations{resumed}: "
            f"{self.evaluation_seconds:.2f} s evaluating, "
            f"{self.overhead_seconds:.3f} s policy overhead"
        )
        if self.stop_reason != "budget":
            lines.append(f"  stopped early: {self.stop_reason}; {self.n_saved} evaluations saved")
        if self.scores is not None:
            lines.append(
                f"  prior: {self.scores.shape[1]} training-free score(s) ({self.scores_source}, "
                f"{self.scores_seconds:.2f} s)"
            )
        if self.set_skipped:
            lines.append(
                f"  set-aware choice skipped {len(self.set_skipped)} near-copy(ies): "
                + "; ".join(f"{d} ({why})" for d, why in self.set_skipped.items())
            )
        if self.n_repeated_deterministic:
            lines.append(
                f"  {self.n_repeated_deterministic} repeated evaluation(s) of a deterministic "
                "evaluator (no new information)"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"SelectionResult(selected={self.selected!r}, policy={self.policy!r}, "
            f"n_evaluations={self.n_evaluations}, test_accuracy={self.test_accuracy!r})"
        )
