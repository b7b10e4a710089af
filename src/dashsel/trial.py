"""What one evaluation is asked to do, what came of it, and the one row schema of a trial.

:data:`TRIAL_COLUMNS` is the only definition of a trial row: journals (``trials_frame``,
``dashsel report``) and :attr:`dashsel.SelectionResult.trials` both build their frames with
:func:`trials_frame` from :class:`TrialRecord` objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Columns of a trial row, in order (see :meth:`TrialRecord.to_row`).
TRIAL_COLUMNS: tuple[str, ...] = (
    "number",
    "batch",
    "dataset_id",
    "group",
    "seed",
    "pull",
    "state",
    "reward",
    "started",
    "finished",
    "duration",
    "error",
)

#: The columns of :attr:`dashsel.SelectionResult.trials`: only finished trials are there, so
#: their state and error say nothing.
RESULT_TRIAL_COLUMNS: tuple[str, ...] = tuple(
    c for c in TRIAL_COLUMNS if c not in ("state", "error")
)


class TrialState(StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True)
class TrialSpec:
    """One evaluation to run.

    Attributes
    ----------
    number : int
        0-based position of the trial in the run; trials are told to the policy in this order.
    dataset_id : str
        The dataset to add to the local data.
    seed : int
        Seed for the evaluation's own randomness (training order, initialisation), derived from
        the run seed and ``number`` so it is the same wherever and whenever the trial runs.
    pull : int
        How many earlier trials of the run chose the same dataset (0 for the first pull).
        Replay evaluators use it to pick the k-th logged reward.
    """

    number: int
    dataset_id: str
    seed: int
    pull: int


@dataclass(frozen=True)
class TrialOutcome:
    """The result of one :class:`TrialSpec`.

    ``reward`` is None when ``state`` is FAILED, and ``error`` then holds a one-line message
    (what journals store) and ``exception`` the exception itself, as the executor sent it back
    (None when it could not travel, and always None for outcomes read from a journal). Times
    are UNIX seconds; ``duration`` is the evaluation's wall time.
    """

    spec: TrialSpec
    state: TrialState
    reward: float | None
    started: float
    finished: float
    error: str | None = None
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def duration(self) -> float:
        return self.finished - self.started


@dataclass(frozen=True)
class TrialRecord:
    """One journaled trial: its spec, where it sits, and its outcome once it has finished.

    ``batch`` is the 0-based index of the ``ask`` batch the trial came from; resuming tells the
    policy each batch's rewards together, as the original run did. ``outcome`` is None while
    the trial is running.
    """

    spec: TrialSpec
    batch: int
    group: str | None
    state: TrialState
    started: float
    outcome: TrialOutcome | None = None

    def to_row(self) -> dict[str, Any]:
        """The trial as a dict with :data:`TRIAL_COLUMNS` as keys."""
        o = self.outcome
        return {
            "number": self.spec.number,
            "batch": self.batch,
            "dataset_id": self.spec.dataset_id,
            "group": self.group,
            "seed": self.spec.seed,
            "pull": self.spec.pull,
            "state": str(self.state),
            "reward": None if o is None else o.reward,
            "started": self.started if o is None else o.started,
            "finished": None if o is None else o.finished,
            "duration": None if o is None else o.duration,
            "error": None if o is None else o.error,
        }


def trials_frame(
    records: Iterable[TrialRecord], columns: Sequence[str] = TRIAL_COLUMNS
) -> pd.DataFrame:
    """The records as a DataFrame, one row each, with ``columns`` (a subset of
    :data:`TRIAL_COLUMNS`, in that order)."""
    import pandas as pd

    return pd.DataFrame([r.to_row() for r in records], columns=list(columns))
