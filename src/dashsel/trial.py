"""What one evaluation is asked to do, and what came of it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


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

    ``reward`` is None when ``state`` is FAILED, and ``error`` then holds a one-line message.
    Times are UNIX seconds; ``duration`` is the evaluation's wall time.
    """

    spec: TrialSpec
    state: TrialState
    reward: float | None
    started: float
    finished: float
    error: str | None = None

    @property
    def duration(self) -> float:
        return self.finished - self.started

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self.spec)
        d.update(
            state=str(self.state),
            reward=self.reward,
            started=self.started,
            finished=self.finished,
            duration=self.duration,
            error=self.error,
        )
        return d
