"""The evaluator protocol: turn a trial (a dataset choice and a seed) into a reward.

Evaluators are stateless with respect to the run: everything a trial needs is in its
:class:`~dashsel.trial.TrialSpec`, so the same evaluator object can be shipped to worker
processes or Ray actors and evaluations can run in any order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

from dashsel.pool import Pool
from dashsel.trial import TrialSpec

Split = Literal["validation", "test"]


class Evaluator(ABC):
    """Base class of evaluators.

    Subclasses implement :meth:`evaluate` and :meth:`describe`. Evaluators that can train a
    model on any set of datasets (``can_train`` is True) also implement :meth:`score`, which
    the run loop uses for the final model and the Local and Global references.
    """

    #: Whether :meth:`score` is available.
    can_train: bool = False
    #: The rewards :meth:`evaluate` may return, both ends included; a reward outside it is
    #: recorded as a failed trial and never told to the policy. None: any finite number.
    reward_range: tuple[float, float] | None = None

    # Set by a manifest's ``deterministic = true|false``; None: the evaluator decides.
    _deterministic: bool | None = None

    @property
    def deterministic(self) -> bool:
        """Whether a trial's reward depends on its dataset only (not on its seed or pull).

        The engine then never repeats an evaluation whose reward it already knows. False
        by default; subclasses may override it with a class attribute or a property, and a
        manifest's ``[evaluator] deterministic = true|false`` sets it.
        """
        if self._deterministic is not None:
            return self._deterministic
        return self._is_deterministic()

    @deterministic.setter
    def deterministic(self, value: bool) -> None:
        self._deterministic = bool(value)

    def _is_deterministic(self) -> bool:
        """What :attr:`deterministic` is when nothing overrides it (False here)."""
        return False

    @abstractmethod
    def evaluate(self, spec: TrialSpec) -> float:
        """Reward of adding ``spec.dataset_id`` to the local data (higher is better)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-serialisable configuration; identical configs give identical rewards.

        Journals store it to refuse resuming with a different evaluator, and caches key on it.
        """

    def score(self, dataset_ids: Sequence[str], seed: int, split: Split = "test") -> float:
        """Accuracy on ``split`` of a model trained on local data plus ``dataset_ids``."""
        raise NotImplementedError(f"{type(self).__name__} cannot train a model")

    def evaluate_set(self, dataset_ids: Sequence[str], seed: int) -> float:
        """Reward of a *set*: validation accuracy of one model trained on local data plus
        every dataset of ``dataset_ids`` together (:func:`dashsel.sets.refine_set`).

        Evaluators that train (``can_train``) get it from :meth:`score`; one that only
        replays single-dataset rewards (a table) cannot, and says so in one line.
        """
        if not self.can_train:
            from dashsel.sets import SetError

            raise SetError(
                f"{type(self).__name__} cannot evaluate a set of datasets: it replays "
                "single-dataset rewards and trains no model"
            )
        return float(self.score(list(dataset_ids), seed, "validation"))


def pool_identity(pool: Pool) -> dict[str, Any]:
    """The part of an evaluator's :meth:`~Evaluator.describe` that names its data.

    Pool name, hierarchy fingerprint and a data fingerprint, so two pools with the same ids
    but different arrays never share journal identities or cache entries.
    """
    from dashsel.arrays import data_fingerprint

    return {
        "pool": pool.name,
        "hierarchy": pool.hierarchy.fingerprint(),
        "data": data_fingerprint(pool),
    }
