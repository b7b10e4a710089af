"""Executors: run a batch of trials, in this process, in worker processes, or on Ray.

An executor turns :class:`~dashsel.trial.TrialSpec` objects into
:class:`~dashsel.trial.TrialOutcome` objects and yields each as soon as it completes. It never
raises for a failed evaluation: an exception inside ``evaluate`` or a reward that is not a
finite number becomes a ``FAILED`` outcome whose ``exception`` is the exception itself (sent
back from worker processes as an object; a :class:`~dashsel.errors.DashselError` with the
dataset and trial put in front of its message) and whose ``error`` is the one line a journal
stores, ``"<ExceptionType>: <message naming the dataset and trial>"``. The run loop decides
what a failure means. Because every trial carries its own seed, the outcomes do not depend on which
worker ran a trial or in which order trials completed.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import math
import multiprocessing
import os
import pickle
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from dashsel.closeable import Closeable
from dashsel.errors import DashselError, RewardError, one_line, require
from dashsel.trial import TrialOutcome, TrialSpec, TrialState

if TYPE_CHECKING:
    # Only for hints: workers should not import every evaluator's dependencies to run one.
    from dashsel.evaluators.base import Evaluator

EXECUTORS: tuple[str, ...] = ("inprocess", "process", "ray")


def failed_outcome(
    spec: TrialSpec,
    exc: BaseException,
    started: float,
    finished: float,
    context: str | None = None,
) -> TrialOutcome:
    """A FAILED outcome for ``exc``, raised while running ``spec`` (``context`` says where).

    ``error`` reads ``"<type>: <context>: <message>"`` on one line. ``exception`` is ``exc``, a
    DashselError with ``context`` put in front of its message; an exception that would not
    survive a trip between processes (pickle out and back) is left out, ``error`` keeps its
    text.
    """
    message = one_line(f"{context}: {one_line(exc)}" if context else exc)
    sent: BaseException | None = exc
    if isinstance(exc, DashselError):
        sent = exc.with_message(message)
    try:
        pickle.loads(pickle.dumps(sent))
    except Exception:
        sent = None
    return TrialOutcome(
        spec,
        TrialState.FAILED,
        None,
        started,
        finished,
        error=one_line(f"{type(exc).__name__}: {message}"),
        exception=sent,
    )


def evaluate_spec(evaluator: Evaluator, spec: TrialSpec) -> TrialOutcome:
    """Evaluate one trial and wrap the result, timing ``evaluate`` with :func:`time.time`.

    Exceptions (not ``KeyboardInterrupt``/``SystemExit``) and non-finite rewards become FAILED
    outcomes; this is what every executor runs, wherever it runs.
    """
    where = f"dataset {spec.dataset_id!r} (trial {spec.number})"
    started = time.time()
    try:
        value = evaluator.evaluate(spec)
    except Exception as exc:
        return failed_outcome(spec, exc, started, time.time(), f"evaluating {where}")
    finished = time.time()
    try:
        reward = float(value)
    except (TypeError, ValueError):
        bad = RewardError(f"reward for {where} is not a number: {value!r}")
        return failed_outcome(spec, bad, started, finished)
    if not math.isfinite(reward):
        bad = RewardError(f"reward for {where} is not finite: {reward!r}")
        return failed_outcome(spec, bad, started, finished)
    return TrialOutcome(spec, TrialState.COMPLETE, reward, started, finished)


class Executor(Closeable, ABC):
    """Runs trials and yields their outcomes as they complete.

    Use as a context manager, or call :meth:`close`, to release workers.
    """

    #: Name used by :func:`make_executor` and in result files.
    name: str = "executor"

    @abstractmethod
    def map_unordered(
        self, evaluator: Evaluator, specs: Sequence[TrialSpec]
    ) -> Iterator[TrialOutcome]:
        """Evaluate every spec, yielding each outcome as soon as it is available.

        Closing the iterator early cancels the trials that have not started.
        """

    @property
    def n_workers(self) -> int:
        """How many trials run at once (the natural batch size)."""
        return 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_workers={self.n_workers})"


class InProcessExecutor(Executor):
    """Evaluates trials one after the other in this process (the default)."""

    name = "inprocess"

    def map_unordered(
        self, evaluator: Evaluator, specs: Sequence[TrialSpec]
    ) -> Iterator[TrialOutcome]:
        for spec in specs:
            yield evaluate_spec(evaluator, spec)


# --- worker processes ------------------------------------------------------------------------
# The evaluator a worker process uses, unpickled once by the pool's initializer.
_WORKER_EVALUATOR: Evaluator | None = None


def _init_worker(payload: bytes) -> None:
    global _WORKER_EVALUATOR
    _WORKER_EVALUATOR = pickle.loads(payload)


def _worker_evaluate(spec: TrialSpec) -> TrialOutcome:
    assert _WORKER_EVALUATOR is not None, "worker started without an evaluator"
    return evaluate_spec(_WORKER_EVALUATOR, spec)


class ProcessExecutor(Executor):
    """Evaluates trials in a pool of local worker processes.

    The evaluator is pickled once and unpickled once per worker (by the pool's initializer),
    not once per trial, so evaluators holding arrays stay cheap to use. The pool is started on
    the first batch and kept while the same evaluator object is used.

    Parameters
    ----------
    n_workers : int, optional
        Number of worker processes (default: the CPUs available to this process).
    start_method : str
        Multiprocessing start method. ``"spawn"`` (default) is safe with threads in the parent
        (SQLite, BLAS, Ray) and behaves the same on every platform; evaluators must then be
        importable by module path (defined in a module, not in ``__main__`` of an interactive
        session).
    """

    name = "process"

    def __init__(self, n_workers: int | None = None, start_method: str = "spawn") -> None:
        if n_workers is None:
            n_workers = (
                len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else (os.cpu_count() or 1)
            )
        if int(n_workers) != n_workers or n_workers < 1:
            raise DashselError(f"n_workers must be a positive integer, got {n_workers!r}")
        self._n_workers = int(n_workers)
        self.start_method = start_method
        self._pool: cf.ProcessPoolExecutor | None = None
        self._evaluator: Evaluator | None = None

    @property
    def n_workers(self) -> int:
        return self._n_workers

    def _pool_for(self, evaluator: Evaluator) -> cf.ProcessPoolExecutor:
        if self._pool is not None and self._evaluator is evaluator:
            return self._pool
        self.close()
        try:
            payload = pickle.dumps(evaluator)
        except Exception as exc:
            raise DashselError(
                f"the process executor cannot pickle evaluator {type(evaluator).__name__}: "
                f"{one_line(exc, 200)}"
            ) from None
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self._n_workers,
            mp_context=multiprocessing.get_context(self.start_method),
            initializer=_init_worker,
            initargs=(payload,),
        )
        self._evaluator = evaluator
        return self._pool

    def map_unordered(
        self, evaluator: Evaluator, specs: Sequence[TrialSpec]
    ) -> Iterator[TrialOutcome]:
        if not specs:
            return
        pool = self._pool_for(evaluator)
        submitted = time.time()
        futures = {pool.submit(_worker_evaluate, spec): spec for spec in specs}
        broken = False
        try:
            for fut in cf.as_completed(futures):
                try:
                    yield fut.result()
                except Exception as exc:  # a worker died (BrokenProcessPool) or unpickling failed
                    is_broken = isinstance(exc, cf.process.BrokenProcessPool)
                    broken = broken or is_broken
                    spec = futures[fut]
                    hint = (
                        " (a worker died: out of memory, killed, or, with the spawn start "
                        "method, a script that starts the run outside "
                        "`if __name__ == '__main__':`)"
                        if is_broken
                        else ""
                    )
                    yield failed_outcome(
                        spec,
                        exc,
                        submitted,
                        time.time(),
                        f"worker failed on dataset {spec.dataset_id!r} (trial {spec.number}){hint}",
                    )
        finally:
            for fut in futures:
                fut.cancel()  # only trials not yet started; running ones finish unheard
            if broken:
                self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._evaluator = None


class RayExecutor(Executor):
    """Evaluates trials as Ray tasks (needs the ``ray`` extra).

    The evaluator is put in Ray's object store once per evaluator object; each trial is a
    remote task and outcomes are yielded as ``ray.wait`` reports them.

    Parameters
    ----------
    address : str, optional
        Cluster to connect to (``"auto"``, ``"ray://host:10001"``). None starts a local Ray
        instance unless one is already initialised in this process.
    num_cpus : int, optional
        CPUs of a local instance this executor starts.
    cpus_per_trial, gpus_per_trial : float
        Resources each trial asks Ray for.
    init_kwargs : dict, optional
        Extra arguments for ``ray.init``.

    Notes
    -----
    :meth:`close` shuts Ray down only if this executor started it; a cluster or session the
    user initialised is left running.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        *,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if address is not None and num_cpus is not None:
            raise DashselError(
                f"the Ray executor: num_cpus sets up a local Ray instance; the cluster at "
                f"{address!r} has its own CPUs (drop num_cpus / --workers)"
            )
        ray = require("ray", "ray", "the Ray executor")
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "address": address,
                "num_cpus": num_cpus,
                "include_dashboard": False,
                "log_to_driver": False,
            }
            kwargs.update(init_kwargs or {})
            ray.init(**kwargs)
            self._owns_ray = True
        self._remote = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial)(evaluate_spec)
        self._evaluator: Evaluator | None = None
        self._evaluator_ref: Any = None

    @property
    def n_workers(self) -> int:
        try:
            return max(1, int(self._ray.cluster_resources().get("CPU", 1)))
        except Exception:  # pragma: no cover - cluster unreachable
            return 1

    def _ref_for(self, evaluator: Evaluator) -> Any:
        # Keep the evaluator itself alive so its id() cannot be reused by another object.
        if self._evaluator is not evaluator:
            self._evaluator_ref = self._ray.put(evaluator)
            self._evaluator = evaluator
        return self._evaluator_ref

    def map_unordered(
        self, evaluator: Evaluator, specs: Sequence[TrialSpec]
    ) -> Iterator[TrialOutcome]:
        if not specs:
            return
        ray = self._ray
        ref = self._ref_for(evaluator)
        submitted = time.time()
        pending = {self._remote.remote(ref, spec): spec for spec in specs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for obj in done:
                    spec = pending.pop(obj)
                    try:
                        yield ray.get(obj)
                    except Exception as exc:  # the task's worker crashed or was killed
                        yield failed_outcome(
                            spec,
                            exc,
                            submitted,
                            time.time(),
                            f"Ray task failed on dataset {spec.dataset_id!r} (trial {spec.number})",
                        )
        finally:
            for obj in pending:
                with contextlib.suppress(Exception):  # already finished or gone
                    ray.cancel(obj)

    def close(self) -> None:
        self._evaluator = None
        self._evaluator_ref = None
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False


def make_executor(name: str = "inprocess", n_workers: int | None = None) -> Executor:
    """An executor by name: ``"inprocess"``, ``"process"`` or ``"ray"``.

    ``n_workers`` sets the worker processes of ``"process"`` and the CPUs of a local Ray
    instance started by ``"ray"``; ``"inprocess"`` ignores it.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key == "inprocess":
        return InProcessExecutor()
    if key == "process":
        return ProcessExecutor(n_workers)
    if key == "ray":
        return RayExecutor(num_cpus=n_workers)
    raise DashselError(f"unknown executor {name!r}: use one of {', '.join(EXECUTORS)}")
