"""The reward bank: every candidate evaluated once per evaluation seed, then replayed; and the
pool's training-free scores, computed once and cached beside it (:func:`pool_scores`).

Trial trainings are expensive and policies need hundreds of them per run, so a study evaluates
each dataset with seeds ``0..n_seeds-1`` once (:func:`build_bank`, through the library's
executors) and runs policies against :func:`replay_evaluator`, the library's
:class:`~dashsel.evaluators.table.TableEvaluator` over the bank's rows read by seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashsel.errors import DashselError, RewardError
from dashsel.evaluators.base import Evaluator
from dashsel.evaluators.table import TableEvaluator
from dashsel.executors import Executor, InProcessExecutor, ProcessExecutor
from dashsel.pool import Pool
from dashsel.trial import TrialSpec, TrialState
from dashsel_bench.common import cache_dir


@dataclass(frozen=True)
class RewardBank:
    """Precomputed rewards: ``rewards[i, s]`` of dataset ``ids[i]`` evaluated with seed ``s``.

    Attributes
    ----------
    ids : tuple of str
        Dataset ids, in pool order.
    rewards : numpy.ndarray
        Shape (n_datasets, n_seeds).
    source : dict
        ``describe()`` of the evaluator that produced them (the bank's identity).
    seconds : float
        Wall time spent filling the bank (near zero when the cache held everything).
    """

    ids: tuple[str, ...]
    rewards: np.ndarray
    source: dict[str, Any]
    seconds: float = 0.0

    @property
    def n_seeds(self) -> int:
        return int(self.rewards.shape[1])

    def to_frame(self) -> pd.DataFrame:
        """One row per (dataset, seed), seeds in order: the table a replay reads."""
        n = self.n_seeds
        return pd.DataFrame(
            {
                "dataset": np.repeat(np.asarray(self.ids, dtype=object), n),
                "seed": np.tile(np.arange(n), len(self.ids)),
                "reward": self.rewards.reshape(-1),
            }
        )


def _executor(workers: int, n_tasks: int) -> Executor:
    # Forked workers start in milliseconds and share the parent's arrays; the library's
    # process executor still pickles the evaluator once per worker, so pools must be
    # picklable (the suites' are: arrays only).
    if workers > 1 and n_tasks > 1 and "fork" in multiprocessing.get_all_start_methods():
        return ProcessExecutor(workers, start_method="fork")
    return InProcessExecutor()


def build_bank(
    evaluator: Evaluator, dataset_ids: Sequence[str], n_seeds: int, *, workers: int = 1
) -> RewardBank:
    """Evaluate every dataset with seeds ``0..n_seeds-1``.

    Entry ``[i, s]`` is exactly ``evaluator.evaluate(TrialSpec(0, ids[i], s, 0))``, so replay
    and direct evaluation agree. With ``workers > 1`` the evaluations run in worker processes
    (:class:`~dashsel.executors.ProcessExecutor`, forked); a caching evaluator makes reruns
    free.

    Raises
    ------
    RewardError
        If an evaluation fails (its error, on one line).
    """
    ids = tuple(dataset_ids)
    specs = [TrialSpec(i * n_seeds + s, d, s, 0) for i, d in enumerate(ids) for s in range(n_seeds)]
    values = np.full(len(specs), np.nan)
    start = time.perf_counter()
    with _executor(workers, len(specs)) as executor:
        for outcome in executor.map_unordered(evaluator, specs):
            if outcome.state is not TrialState.COMPLETE or outcome.reward is None:
                raise RewardError(f"reward bank: {outcome.error}")
            values[outcome.spec.number] = outcome.reward
    rewards = values.reshape(len(ids), n_seeds)
    return RewardBank(ids, rewards, evaluator.describe(), time.perf_counter() - start)


class BankReplay(Evaluator):
    """A :class:`~dashsel.evaluators.table.TableEvaluator` over a bank, read by trial seed.

    ``evaluate(spec) = rewards[spec.dataset_id][spec.seed % n_seeds]``. The table evaluator
    reads row ``pull % n_rows`` of a dataset; here the seed picks the row instead, because
    trial seeds are ``derive_seed(run, t)``: different runs and steps then read different
    seeds of the same dataset (noisy repeated pulls), where reading by pull would give every
    run the same sequence of rewards.

    Attributes
    ----------
    bank : RewardBank
    table : TableEvaluator
        The rows, one per (dataset, seed).
    """

    can_train = False

    def __init__(self, bank: RewardBank) -> None:
        self.bank = bank
        self.table = TableEvaluator(bank.to_frame())
        self._ids = frozenset(bank.ids)

    def evaluate(self, spec: TrialSpec) -> float:
        if spec.dataset_id not in self._ids:
            raise DashselError(f"dataset {spec.dataset_id!r} is not in the reward bank")
        return self.table.evaluate(dataclasses.replace(spec, pull=spec.seed))

    def describe(self) -> dict[str, Any]:
        return {"kind": "reward-bank", "n_seeds": self.bank.n_seeds, "source": self.bank.source}


def replay_evaluator(bank: RewardBank) -> BankReplay:
    """The evaluator policies run against in a study (see :class:`BankReplay`)."""
    return BankReplay(bank)


def _pool_digest(pool: Pool) -> str:
    """Hash of everything the scores depend on: the splits they compare with, every
    candidate's arrays, and the scoring code itself (a changed score recomputes)."""
    import dashsel.scores

    h = hashlib.sha1(pool.name.encode())
    h.update(Path(dashsel.scores.__file__).read_bytes())
    for split in ("local", "validation"):
        if pool.has_split(split):
            part = pool.split(split)
            h.update(np.ascontiguousarray(part.X).tobytes())
            h.update(np.ascontiguousarray(part.y).tobytes())
    for d in pool.dataset_ids:
        data = pool.dataset(d)
        h.update(d.encode())
        h.update(np.ascontiguousarray(data.X).tobytes())
        h.update(np.ascontiguousarray(data.y).tobytes())
    return h.hexdigest()[:16]


def pool_scores(pool: Pool, *, cache: bool = True) -> pd.DataFrame:
    """:func:`dashsel.scores.score_pool` of ``pool`` (default scores), cached on disk.

    The frame is indexed by dataset id in pool order; ``frame.attrs["seconds"]`` is the time
    the scores took when they were computed (the sum of ``cost_seconds``), also when read back
    from the cache under ``cache_dir("scores")``.
    """
    from dashsel.scores import score_pool

    path = cache_dir("scores") / f"{pool.name}-{_pool_digest(pool)}.csv" if cache else None
    if path is not None and path.exists():
        frame = pd.read_csv(path, index_col=0, dtype={"dataset": str})
    else:
        frame = score_pool(pool)
        frame.index = frame.index.astype(str).rename("dataset")
        if path is not None:
            tmp = path.with_suffix(".tmp")
            frame.to_csv(tmp)
            tmp.replace(path)  # atomic: concurrent studies never read half a file
    frame = frame.loc[list(pool.dataset_ids)]
    seconds = frame["cost_seconds"].sum() if "cost_seconds" in frame else 0.0
    frame.attrs["seconds"] = float(seconds)
    return frame
