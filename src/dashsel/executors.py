"""Executors: run trials, in this process, in worker processes, or on Ray.

An executor turns :class:`~dashsel.trial.TrialSpec` objects into
:class:`~dashsel.trial.TrialOutcome` objects and yields each as soon as it completes: a batch
at once (:meth:`Executor.map_unordered`), or one trial at a time while others run
(:meth:`Executor.stream`, what the run loop's window of trials in flight uses). It never
raises for a failed evaluation: an exception inside ``evaluate``, a reward that is not a
finite number in the evaluator's :attr:`~dashsel.evaluators.base.Evaluator.reward_range`, or
a trial that runs past ``trial_timeout`` becomes a ``FAILED`` outcome whose ``exception`` is
the exception itself (sent back from worker processes as an object; a
:class:`~dashsel.errors.DashselError` with the dataset and trial put in front of its message)
and whose ``error`` is the one line a journal stores, ``"<ExceptionType>: <message naming the
dataset and trial>"``. The run loop decides what a failure means. Because every trial carries
its own seed, the outcomes do not depend on which worker ran a trial or in which order trials
completed.

Threads: every trial runs with ``threads_per_trial`` BLAS/OpenMP threads (default: 1, or the
smallest of ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` where the
environment sets them; see :func:`default_threads` for why). A limit only holds for the
libraries loaded when it is entered, so it is applied around each evaluation (after the
evaluator's imports), and worker processes also get the ``*_NUM_THREADS`` environment
variables before they import anything.

Interrupting: Ctrl-C stops a run within seconds with the ``process`` executor whatever the
workers do (they ignore SIGINT and are killed by the main process), and with ``ray`` (tasks are
force-cancelled). A trial running in this process (``inprocess``) can only be interrupted, or
timed out, between Python bytecodes: a trial hung inside C code is interrupted only by the
``process`` executor.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import multiprocessing.connection as mpc
import numbers
import os
import pickle
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from dashsel.closeable import Closeable
from dashsel.errors import DashselError, RewardError, one_line, require
from dashsel.trial import TrialOutcome, TrialSpec, TrialState

if TYPE_CHECKING:
    # Only for hints: workers should not import every evaluator's dependencies to run one.
    from dashsel.evaluators.base import Evaluator

EXECUTORS: tuple[str, ...] = ("inprocess", "process", "ray")

#: Environment variables that size the thread pools of BLAS and OpenMP libraries at load time.
THREAD_ENV_VARS: tuple[str, ...] = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class TrialTimeoutError(DashselError):
    """A trial ran longer than the run's ``trial_timeout``."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


#: The environment variables that set BLAS/OpenMP thread counts.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def env_threads() -> int | None:
    """The smallest positive integer among the ``*_NUM_THREADS`` variables set, or None."""
    values = []
    for var in THREAD_ENV_VARS:
        try:
            v = int(os.environ.get(var, ""))
        except ValueError:
            continue
        if v >= 1:
            values.append(v)
    return min(values) if values else None


def default_threads(n_workers: int = 1) -> int:
    """BLAS/OpenMP threads per trial unless ``threads_per_trial`` is given: the environment's
    ``*_NUM_THREADS`` when set (the smallest; a trial never gets more than the user allowed),
    else 1, whatever ``n_workers``.

    Why 1 rather than cores // workers: the trials dashsel runs are mostly small models, for
    which BLAS threads cost more than they give, and the cores pay more across trials
    (``--workers``). Measured (``docs/benchmarks/threads.md``; logistic trials of about 0.3 s,
    2 CPUs): two threads made a serial run 1.24x slower than one on a quiet machine, and
    about 9x slower (about 6 s against 0.27 s per trial) on a machine shared with other jobs,
    where spinning BLAS threads fight for the cores. Give
    ``--threads-per-trial`` for trials with large matrix work.
    """
    return env_threads() or 1


def _check_threads(threads: int | None) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise DashselError(f"threads_per_trial must be a positive integer, got {threads!r}")
    return int(threads)


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0:
        raise DashselError(f"trial_timeout must be a positive number of seconds, got {timeout!r}")
    if not math.isfinite(float(timeout)):
        return None
    return float(timeout)


class ThreadLimit:
    """Applies a BLAS/OpenMP thread limit around each evaluation (``with limit(): ...``).

    ``threadpool_limits`` scans the loaded libraries each time it is entered (milliseconds);
    a :class:`threadpoolctl.ThreadpoolController` is scanned once, before the first evaluation
    (the evaluator's imports are done by then), and once more after it, so a library the
    first evaluation loaded is limited from the second on. ``None`` leaves threads alone.
    """

    def __init__(self, threads: int | None) -> None:
        self.threads = _check_threads(threads)
        self._controller: Any = None
        self._rescanned = False

    def scan(self) -> None:
        """Look for the loaded libraries now (a worker warming up), not at the first trial."""
        if self.threads is not None and self._controller is None:
            from threadpoolctl import ThreadpoolController

            self._controller = ThreadpoolController()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.threads is None:
            yield
            return
        self.scan()
        with self._controller.limit(limits=self.threads):
            yield
        if not self._rescanned:
            from threadpoolctl import ThreadpoolController

            self._controller = ThreadpoolController()
            self._rescanned = True

    def __getstate__(self) -> dict[str, Any]:
        return {"threads": self.threads, "_controller": None, "_rescanned": False}


@contextlib.contextmanager
def thread_env(threads: int | None) -> Iterator[None]:
    """Set :data:`THREAD_ENV_VARS` to ``threads`` while worker processes are started.

    Spawned children read them before importing numpy, so the libraries start with that many
    threads (the per-evaluation limit then holds for anything loaded later too).
    """
    if threads is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in THREAD_ENV_VARS}
    os.environ.update({k: str(threads) for k in THREAD_ENV_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


def check_reward(value: Any, reward_range: tuple[float, float] | None, where: str) -> float:
    """``value`` as a float, or a :class:`RewardError` saying why it is not a reward.

    A reward is a real number (a Python or numpy int or float; not a bool, not a string such
    as ``"0.5"``), finite, and inside ``reward_range`` (both ends included) when one is given.
    """
    import numpy as np

    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iuf":
            value = value.item()
        else:
            raise RewardError(f"reward for {where} is not a number: {value!r}")
    reward = float(value)
    if not math.isfinite(reward):
        raise RewardError(f"reward for {where} is not finite: {reward!r}")
    if reward_range is not None:
        low, high = reward_range
        if not low <= reward <= high:
            raise RewardError(
                f"reward for {where} is {reward!r}, outside the evaluator's range "
                f"[{low:g}, {high:g}]"
            )
    return reward


def evaluate_spec(evaluator: Evaluator, spec: TrialSpec) -> TrialOutcome:
    """Evaluate one trial and wrap the result, timing ``evaluate`` with :func:`time.time`.

    Exceptions (not ``KeyboardInterrupt``/``SystemExit``) and rewards refused by
    :func:`check_reward` become FAILED outcomes; this is what every executor runs, wherever
    it runs.
    """
    where = f"dataset {spec.dataset_id!r} (trial {spec.number})"
    started = time.time()
    try:
        value = evaluator.evaluate(spec)
    except Exception as exc:
        return failed_outcome(spec, exc, started, time.time(), f"evaluating {where}")
    finished = time.time()
    try:
        reward = check_reward(value, getattr(evaluator, "reward_range", None), where)
    except RewardError as bad:
        return failed_outcome(spec, bad, started, finished)
    return TrialOutcome(spec, TrialState.COMPLETE, reward, started, finished)


def _timeout_outcome(spec: TrialSpec, started: float, timeout: float) -> TrialOutcome:
    exc = TrialTimeoutError(
        f"dataset {spec.dataset_id!r} (trial {spec.number}) ran longer than the trial "
        f"timeout of {timeout:g}s"
    )
    return failed_outcome(spec, exc, started, time.time())


class TrialStream(Closeable, ABC):
    """Trials submitted one at a time, while others run; outcomes as they finish.

    What :meth:`Executor.stream` returns. The run loop keeps a window of trials in flight:
    it submits a trial (:meth:`submit`) as soon as it is asked and takes outcomes with :meth:`next`
    in whatever order they finish. :meth:`close` cancels the trials not yet returned (and,
    where the executor can, stops those running).
    """

    @abstractmethod
    def submit(self, spec: TrialSpec) -> None:
        """Start ``spec`` as soon as a worker is free (queue it otherwise); returns at once."""

    @abstractmethod
    def next(self) -> TrialOutcome:
        """The outcome of a submitted trial, as soon as one finishes (blocks until then).

        Raises ``RuntimeError`` when no submitted trial is left to return.
        """

    @property
    @abstractmethod
    def n_pending(self) -> int:
        """Trials submitted whose outcome :meth:`next` has not returned yet."""


class _MapStream(TrialStream):
    """A stream over any executor's :meth:`~Executor.map_unordered`: the trials submitted
    since the last call run as one ``map_unordered`` call, started when :meth:`next` needs
    an outcome and none is under way (one at a time in submission order for the in-process
    executor, where nothing runs in the background anyway)."""

    def __init__(self, executor: Executor, evaluator: Evaluator) -> None:
        self._executor = executor
        self._evaluator = evaluator
        self._queue: list[TrialSpec] = []
        self._outcomes: Iterator[TrialOutcome] | None = None
        self._n = 0

    def submit(self, spec: TrialSpec) -> None:
        self._queue.append(spec)
        self._n += 1

    def next(self) -> TrialOutcome:
        while True:
            if self._outcomes is None:
                if not self._queue:
                    raise RuntimeError("no submitted trial left to return")
                specs, self._queue = self._queue, []
                self._outcomes = self._executor.map_unordered(self._evaluator, specs)
            try:
                out = next(self._outcomes)
            except StopIteration:
                self._outcomes = None
                continue
            self._n -= 1
            return out

    @property
    def n_pending(self) -> int:
        return self._n

    def close(self) -> None:
        if self._outcomes is not None:
            close = getattr(self._outcomes, "close", None)
            if callable(close):
                close()
            self._outcomes = None
        self._queue = []
        self._n = 0


class Executor(Closeable, ABC):
    """Runs trials and yields their outcomes as they complete.

    Use as a context manager, or call :meth:`close`, to release workers.
    """

    #: Name used by :func:`make_executor` and in result files.
    name: str = "executor"
    #: BLAS/OpenMP threads per trial (None: left as they are).
    threads_per_trial: int | None = None
    #: Seconds a trial may run before it is stopped and recorded failed (None: no limit).
    trial_timeout: float | None = None

    @abstractmethod
    def map_unordered(
        self, evaluator: Evaluator, specs: Sequence[TrialSpec]
    ) -> Iterator[TrialOutcome]:
        """Evaluate every spec, yielding each outcome as soon as it is available.

        Closing the iterator early cancels the trials that have not started (and, where the
        executor can, stops those that have).
        """

    def stream(self, evaluator: Evaluator) -> TrialStream:
        """A :class:`TrialStream` that runs trials of ``evaluator`` as they are submitted.

        This default runs what was submitted through :meth:`map_unordered` when an outcome is
        needed; the process and Ray executors start each trial at once, while others run.
        """
        return _MapStream(self, evaluator)

    @property
    def n_workers(self) -> int:
        """How many trials run at once (the natural batch size)."""
        return 1

    def start(
        self,
        evaluator: Evaluator | None = None,
        *,
        imports: Sequence[str] = (),
        workers: int | None = None,
    ) -> None:
        """Start the workers now, without waiting for them (optional; does nothing here).

        Workers import ``imports`` (module names; one that fails to import is skipped: it is
        a hint) and, given ``evaluator``, load it as :meth:`map_unordered` would on its
        first batch, while this process goes on with its own start-up (building the
        evaluator, reading and fingerprinting the pool). :meth:`map_unordered` with the same
        evaluator object then uses these workers. ``workers`` caps how many are warmed (the
        trials the run will have running at once; default :attr:`n_workers`). Outcomes are
        the same with or without it.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_workers={self.n_workers})"


class _StreamingExecutor(Executor):
    """An executor whose :meth:`stream` is its own (trials start as they are submitted):
    :meth:`map_unordered` is then submit every spec, and take the outcomes as they come.
    Subclasses must override :meth:`stream` (the base one is built on this method)."""

    def map_unordered(
        self, evaluator: Evaluator, specs: Sequence[TrialSpec]
    ) -> Iterator[TrialOutcome]:
        if not specs:
            return
        with self.stream(evaluator) as stream:
            for spec in specs:
                stream.submit(spec)
            for _ in specs:
                yield stream.next()


class InProcessExecutor(Executor):
    """Evaluates trials one after the other in this process (the default).

    Parameters
    ----------
    threads_per_trial : int, optional
        BLAS/OpenMP threads of each evaluation (default: every available CPU).
    trial_timeout : float, optional
        Seconds after which a trial is stopped and recorded failed. Enforced with
        ``SIGALRM`` (POSIX, main thread only), between Python bytecodes: a trial stuck inside
        C code is stopped when it returns to Python, if ever. Use the process executor for a
        hard limit.
    """

    name = "inprocess"

    def __init__(
        self, *, threads_per_trial: int | None = None, trial_timeout: float | None = None
    ) -> None:
        self.threads_per_trial = _check_threads(threads_per_trial) or default_threads(1)
        self.trial_timeout = _check_timeout(trial_timeout)
        self._limit = ThreadLimit(self.threads_per_trial)

    def start(
        self,
        evaluator: Evaluator | None = None,
        *,
        imports: Sequence[str] = (),
        workers: int | None = None,
    ) -> None:
        """Make what ``evaluator``'s trials need now (:func:`prepare`; the run reads the data
        itself, after checking it), so the first trial's time does not count its imports."""
        if evaluator is not None:
            prepare(evaluator, data=False)

    def map_unordered(
        self, evaluator: Evaluator, specs: Sequence[TrialSpec]
    ) -> Iterator[TrialOutcome]:
        for spec in specs:
            with self._limit():
                out = self._run_one(evaluator, spec)
            yield out

    def _run_one(self, evaluator: Evaluator, spec: TrialSpec) -> TrialOutcome:
        timeout = self.trial_timeout
        alarm = (
            timeout is not None
            and hasattr(signal, "setitimer")
            and threading.current_thread() is threading.main_thread()
        )
        if not alarm:
            return evaluate_spec(evaluator, spec)
        assert timeout is not None
        started = time.time()

        def on_alarm(signum: int, frame: Any) -> None:
            raise _Alarm

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return evaluate_spec(evaluator, spec)
        except _Alarm:
            return _timeout_outcome(spec, started, timeout)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class _Alarm(BaseException):
    # A BaseException, so evaluate_spec's `except Exception` lets it through to _run_one.
    pass


# --- worker processes ------------------------------------------------------------------------
def warm_up(evaluator: Any) -> None:
    """Load what every trial needs (the pool's local and validation arrays) once per worker."""
    pool = getattr(evaluator, "pool", None)
    has_split = getattr(pool, "has_split", None)
    if not callable(has_split):
        return
    for name in ("local", "validation"):
        if has_split(name):
            pool.split(name)


def prepare(evaluator: Any, *, data: bool = True) -> None:
    """Get ``evaluator`` ready for trials where they run (a worker, or this process for the
    in-process executor): :func:`warm_up` (if ``data``), then what only trials need (a
    scikit-learn evaluator's estimator, which the main process of a parallel run never makes)."""
    if data:
        warm_up(evaluator)
    hook = getattr(evaluator, "_prepare", None)
    if callable(hook):
        hook()


def preload(modules: Sequence[str]) -> None:
    """Import ``modules`` now (a worker warming up); one that fails is left for later."""
    import importlib

    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _worker_main(conn: mpc.Connection, threads: int | None, imports: Sequence[str]) -> None:
    """A worker process: import ``imports``, receive and unpickle the evaluator once, then
    evaluate specs until told to stop."""
    # Ctrl-C in a terminal reaches the whole process group: the main process handles it and
    # ends the workers, so they must not die half-way through sending a result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads is not None:  # for what it starts (a forkserver's child has the server's)
        os.environ.update({k: str(threads) for k in THREAD_ENV_VARS})
    # Imports first: they overlap with the main process's own start-up, before the evaluator
    # (sent over the pipe, not as a start argument) arrives.
    preload(imports)
    try:
        payload = conn.recv()
    except (EOFError, OSError):
        return
    if payload is None:
        _exit_now()
    limit = ThreadLimit(threads)
    try:
        evaluator = pickle.loads(payload)
        prepare(evaluator)
        limit.scan()  # the evaluator's libraries are loaded by now
    except Exception as exc:
        conn.send(("init-failed", f"{type(exc).__name__}: {one_line(exc, 300)}"))
        return
    conn.send(("ready", None))  # trial timeouts count from here, not from the start-up
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        if spec is None:
            _exit_now()
        with limit():
            out = evaluate_spec(evaluator, spec)
        conn.send(("outcome", out))


def _exit_now() -> None:
    """End an idle worker: atexit handlers run and output is flushed, but the interpreter's
    teardown of every loaded module (about 0.3 s with scikit-learn loaded) is skipped."""
    import atexit

    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


class _Worker:
    """One worker process and the pipe to it; ``spec`` is the trial it runs (None: idle).

    Starting one does not wait for it: the process gets small arguments, and the evaluator
    is sent over the pipe by a thread (the worker reads it once its imports are done).
    """

    def __init__(self, ctx: Any, threads: int | None, imports: Sequence[str]) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_worker_main, args=(child, threads, tuple(imports)), daemon=True
        )
        self.proc.start()
        child.close()
        self.spec: TrialSpec | None = None
        self.started = 0.0
        self.ready = False
        self.loaded = False  # the evaluator was sent
        self._sender: threading.Thread | None = None
        self._stopping = False

    def load(self, payload: bytes) -> None:
        """Send the pickled evaluator in the background (the worker may still be importing)."""

        def send() -> None:
            with contextlib.suppress(Exception):  # a dead worker is found when it is used
                self.conn.send(payload)

        self._sender = threading.Thread(target=send, name="dashsel-worker-load", daemon=True)
        self._sender.start()
        self.loaded = True

    def send(self, message: Any) -> None:
        """Send ``message`` after the evaluator (raises OSError if the worker is gone)."""
        if self._sender is not None:
            self._sender.join()
            self._sender = None
        self.conn.send(message)

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.conn.close()
        with contextlib.suppress(Exception):
            self.proc.join(timeout=5)

    def ask_stop(self) -> None:
        """Tell an idle worker to end (it finishes nothing); :meth:`stop` waits for it."""
        if self._stopping:
            return
        self._stopping = True
        if self._sender is not None:
            self._sender.join(timeout=0.2)
            if self._sender.is_alive():
                self.kill()  # still importing, the evaluator not read: nothing to finish
                return
        with contextlib.suppress(Exception):
            self.send(None)

    def stop(self, deadline: float | None = None) -> None:
        """End an idle worker politely; kill it if it has not gone by ``deadline``."""
        self.ask_stop()
        wait = 2.0 if deadline is None else max(0.0, deadline - time.monotonic())
        self.proc.join(timeout=wait)
        if self.proc.is_alive():
            self.kill()
        with contextlib.suppress(Exception):
            self.conn.close()


class ProcessExecutor(_StreamingExecutor):
    """Evaluates trials in a pool of local worker processes.

    The workers are started once (on the first batch) and kept for every later batch of the
    same evaluator object: each unpickles the evaluator and loads the pool's local and
    validation arrays once, in its start-up, not once per trial. A trial past
    ``trial_timeout`` has its worker killed and replaced; so does a worker that dies. Workers
    ignore SIGINT: on Ctrl-C the main process kills them, so a run stops within seconds even
    when a trial hangs.

    Parameters
    ----------
    n_workers : int, optional
        Number of worker processes (default: the CPUs available to this process).
    start_method : str, optional
        Multiprocessing start method. Default: ``"forkserver"`` on Linux, else ``"spawn"``;
        both are safe with threads in the parent (SQLite, BLAS, Ray), and evaluators must be
        importable by module path (defined in a module, not in ``__main__`` of an interactive
        session). With ``"forkserver"``, one server process imports what workers need
        (:meth:`start`'s ``imports``) once and every worker is forked from it, so workers do
        not each pay for importing scikit-learn or torch (it ends, once the main process has
        gone, without tearing those imports down: :mod:`dashsel._forkserver`); the server is
        started with the ``*_NUM_THREADS`` variables of the first executor that uses it (each
        trial's thread limit is applied around its evaluation in any case).
    threads_per_trial : int, optional
        BLAS/OpenMP threads of each worker (default: 1; see :func:`default_threads`).
    trial_timeout : float, optional
        Seconds a trial may run; then its worker is killed and the trial recorded failed.
    """

    name = "process"

    def __init__(
        self,
        n_workers: int | None = None,
        start_method: str | None = None,
        *,
        threads_per_trial: int | None = None,
        trial_timeout: float | None = None,
    ) -> None:
        if n_workers is None:
            n_workers = available_cpus()
        if isinstance(n_workers, bool) or int(n_workers) != n_workers or n_workers < 1:
            raise DashselError(f"n_workers must be a positive integer, got {n_workers!r}")
        self._n_workers = int(n_workers)
        if start_method is None:
            forkserver = "forkserver" in multiprocessing.get_all_start_methods()
            start_method = "forkserver" if forkserver and sys.platform == "linux" else "spawn"
        self.start_method = start_method
        self.threads_per_trial = _check_threads(threads_per_trial) or default_threads(
            self._n_workers
        )
        self.trial_timeout = _check_timeout(trial_timeout)
        self._workers: list[_Worker] = []
        self._payload: bytes | None = None
        self._evaluator: Evaluator | None = None
        self._imports: tuple[str, ...] = ()

    @property
    def n_workers(self) -> int:
        return self._n_workers

    def start(
        self,
        evaluator: Evaluator | None = None,
        *,
        imports: Sequence[str] = (),
        workers: int | None = None,
    ) -> None:
        """Start the worker processes now (all :attr:`n_workers`, whatever ``workers``) and,
        given ``evaluator``, send it to them; returns at once (see :meth:`Executor.start`)."""
        self._imports = tuple(dict.fromkeys([*self._imports, *imports]))
        if evaluator is not None:
            self._ensure(evaluator)
        elif self.start_method == "forkserver":
            # The server imports while this process builds the evaluator; the workers are
            # forked from it once the evaluator is there (forking waits for the imports).
            self._start_forkserver()
        else:
            self._spawn()

    def _start_forkserver(self) -> None:
        """Start the forkserver (if not running) with this executor's imports preloaded."""
        from multiprocessing import forkserver

        ctx = multiprocessing.get_context("forkserver")
        # Each forked worker runs the main module again (as multiprocessing does for spawn):
        # loaded in the server, what it imports is already there.
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        name = getattr(spec, "name", None)
        main = name if name and not name.endswith("__main__") else "__main__"
        # dashsel._forkserver first: the server then ends as soon as the main process has
        # gone, without tearing down what it imported (see that module).
        ctx.set_forkserver_preload(
            ["dashsel._forkserver", main, "dashsel.executors", *self._imports]
        )
        with thread_env(self.threads_per_trial):
            forkserver.ensure_running()

    def _start_worker(self) -> _Worker:
        ctx = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            self._start_forkserver()
        with thread_env(self.threads_per_trial):
            w = _Worker(ctx, self.threads_per_trial, self._imports)
        if self._payload is not None:
            w.load(self._payload)
        return w

    def _spawn(self) -> None:
        """Replace workers that were killed (timeout, interrupted batch) or died; start the
        missing ones."""
        alive = []
        for w in self._workers:
            if w.proc.is_alive():
                alive.append(w)
            else:
                w.kill()
        self._workers = alive
        while len(self._workers) < self._n_workers:
            self._workers.append(self._start_worker())

    def _ensure(self, evaluator: Evaluator) -> None:
        """Workers for ``evaluator``: the running ones if it is the same object (or if they
        were started without one)."""
        if self._evaluator is not evaluator:
            if self._evaluator is not None:
                self.close()
            try:
                payload = pickle.dumps(evaluator)
            except Exception as exc:
                raise DashselError(
                    f"the process executor cannot pickle evaluator {type(evaluator).__name__}: "
                    f"{one_line(exc, 200)}"
                ) from None
            self._payload, self._evaluator = payload, evaluator
        self._spawn()  # new workers get the evaluator as they start
        assert self._payload is not None
        for w in self._workers:
            if not w.loaded:  # started by start() before the evaluator was known
                w.load(self._payload)

    def _receive(self, worker: _Worker) -> Any:
        try:
            return worker.conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError) as exc:
            return ("died", exc)

    def stream(self, evaluator: Evaluator) -> TrialStream:
        """Trials go to idle workers as they are submitted (queued while all are busy)."""
        self._ensure(evaluator)
        return _ProcessStream(self, evaluator)

    def close(self) -> None:
        # Every idle worker is told to stop first, then waited for: they end side by side.
        idle = []
        for w in self._workers:
            if w.spec is not None or not w.proc.is_alive():
                w.kill()
            else:
                w.ask_stop()
                idle.append(w)
        deadline = time.monotonic() + 2.0
        for w in idle:
            w.stop(deadline)
        self._workers = []
        self._payload = None
        self._evaluator = None


class _ProcessStream(TrialStream):
    """The process executor's stream: each submitted trial goes to an idle worker at once."""

    def __init__(self, executor: ProcessExecutor, evaluator: Evaluator) -> None:
        self._ex = executor
        self._evaluator = evaluator
        self._queue: deque[TrialSpec] = deque()
        self._ready: deque[TrialOutcome] = deque()
        self._n = 0

    @property
    def n_pending(self) -> int:
        return self._n

    def submit(self, spec: TrialSpec) -> None:
        self._queue.append(spec)
        self._n += 1
        self._dispatch()

    def next(self) -> TrialOutcome:
        if self._n == 0:
            raise RuntimeError("no submitted trial left to return")
        while not self._ready:
            self._dispatch()
            self._poll()
        self._n -= 1
        return self._ready.popleft()

    def _dispatch(self) -> None:
        workers = self._ex._workers
        for i, w in enumerate(list(workers)):
            if w.spec is None and self._queue:
                spec = self._queue[0]
                try:
                    w.send(spec)
                except OSError:  # the idle worker died: replace it, send again
                    w.kill()
                    w = workers[i] = self._ex._start_worker()
                    w.send(spec)
                self._queue.popleft()
                w.spec, w.started = spec, time.time()

    def _poll(self) -> None:
        """Wait until a busy worker reports (or a trial times out); collect what came."""
        ex = self._ex
        timeout = ex.trial_timeout
        busy = [w for w in ex._workers if w.spec is not None]
        wait_s = None
        if timeout is not None:
            running = [w.started + timeout for w in busy if w.ready]
            wait_s = max(0.0, min(running) - time.time()) if running else None
        ready = set(mpc.wait([w.conn for w in busy], timeout=wait_s))
        for i, w in enumerate(list(ex._workers)):
            spec = w.spec
            if spec is None:
                continue
            if w.conn in ready:
                message = ex._receive(w)
                if message[0] == "ready":
                    w.ready, w.started = True, time.time()
                    continue
                w.spec = None
                if message[0] == "outcome":
                    self._ready.append(message[1])
                    continue
                if message[0] == "init-failed":
                    raise DashselError(
                        f"a worker process could not load evaluator "
                        f"{type(self._evaluator).__name__}: {message[1]}"
                    )
                out = failed_outcome(
                    spec,
                    message[1]
                    if isinstance(message[1], BaseException)
                    else RuntimeError(str(message)),
                    w.started,
                    time.time(),
                    f"worker failed on dataset {spec.dataset_id!r} (trial "
                    f"{spec.number}) (a worker died: out of memory, killed, or, with "
                    "the spawn start method, a script that starts the run outside "
                    "`if __name__ == '__main__':`)",
                )
            elif timeout is not None and w.ready and time.time() >= w.started + timeout:
                out = _timeout_outcome(spec, w.started, timeout)
            else:
                continue
            # The worker is dead or stuck in the trial: replace it.
            w.kill()
            ex._workers[i] = ex._start_worker()
            self._ready.append(out)
        self._dispatch()  # queued trials (retries, a window refilled ahead) go to free workers

    def close(self) -> None:
        # Closed early (Ctrl-C, a callback that raised, a trial that stops the run): trials
        # still running are stopped now, not waited for; the workers are replaced on the
        # next stream.
        for w in self._ex._workers:
            if w.spec is not None:
                w.kill()
                w.spec = None
        self._queue.clear()
        self._ready.clear()
        self._n = 0


# --- Ray ---------------------------------------------------------------------------------------
# Per Ray worker process: evaluators fetched from the object store (keyed by object id) and
# the thread limit, so a warm worker deserialises an evaluator once, not once per task.
_RAY_EVALUATORS: dict[str, Any] = {}
_RAY_LIMITS: dict[int | None, ThreadLimit] = {}


def _ray_evaluator(boxed: list[Any]) -> Any:
    """The evaluator ``boxed[0]`` refers to, fetched and warmed once per Ray worker."""
    import ray

    ref = boxed[0]  # in a list, so Ray passes the reference instead of resolving it per task
    key = ref.hex()
    evaluator = _RAY_EVALUATORS.get(key)
    if evaluator is None:
        _RAY_EVALUATORS.clear()  # one evaluator at a time per worker
        evaluator = _RAY_EVALUATORS[key] = ray.get(ref)
        prepare(evaluator)
    return evaluator


def _ray_warm(imports: Sequence[str], boxed: list[Any] | None, hold: float) -> int:
    """A warm-up task: import ``imports`` and load the evaluator (if given) on this worker.

    It lasts at least ``hold`` seconds, so the tasks sent together each get a worker of their
    own instead of queueing on one that finished first.
    """
    t0 = time.monotonic()
    preload(imports)
    if boxed is not None:
        _ray_evaluator(boxed)
    time.sleep(max(0.0, hold - (time.monotonic() - t0)))
    return os.getpid()


def _ray_trial(boxed: list[Any], spec: TrialSpec, threads: int | None) -> TrialOutcome:
    evaluator = _ray_evaluator(boxed)
    limit = _RAY_LIMITS.setdefault(threads, ThreadLimit(threads))
    with limit():
        return evaluate_spec(evaluator, spec)


class RayExecutor(_StreamingExecutor):
    """Evaluates trials as Ray tasks (needs the ``ray`` extra).

    The evaluator is put in Ray's object store once per evaluator object (``ray.put``) and
    each Ray worker fetches and deserialises it once; each trial is a remote task and outcomes
    are yielded as ``ray.wait`` reports them.

    Parameters
    ----------
    address : str, optional
        Cluster to join (``"auto"``, ``"HOST:6379"``, ``"ray://host:10001"``). None starts a
        local Ray instance unless one is already initialised in this process.
    num_cpus : int, optional
        CPUs of a local instance this executor starts.
    cpus_per_trial, gpus_per_trial : float
        Resources each trial asks Ray for.
    threads_per_trial : int, optional
        BLAS/OpenMP threads of each trial (default: ``cpus_per_trial``, at least 1).
    trial_timeout : float, optional
        Seconds a trial may take from its submission; then its task is force-cancelled and
        the trial recorded failed.
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
        threads_per_trial: int | None = None,
        trial_timeout: float | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if address is not None and num_cpus is not None:
            raise DashselError(
                f"the Ray executor: num_cpus sets up a local Ray instance; the cluster at "
                f"{address!r} has its own CPUs (drop num_cpus / --workers)"
            )
        for name, value in (("cpus_per_trial", cpus_per_trial), ("gpus_per_trial", gpus_per_trial)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
                raise DashselError(f"{name} must be a number >= 0, got {value!r}")
        ray = require("ray", "ray", "the Ray executor")
        self._ray = ray
        self._owns_ray = False
        self.cpus_per_trial = float(cpus_per_trial)
        self.gpus_per_trial = float(gpus_per_trial)
        self.threads_per_trial = _check_threads(threads_per_trial) or max(
            1, int(self.cpus_per_trial)
        )
        self.trial_timeout = _check_timeout(trial_timeout)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "address": address,
                "num_cpus": num_cpus,
                "include_dashboard": False,
                "log_to_driver": False,
            }
            kwargs.update(init_kwargs or {})
            try:
                ray.init(**kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
                raise DashselError(f"cannot start or join {where}: {one_line(exc, 300)}") from None
            self._owns_ray = True
        resources = ray.remote(num_cpus=self.cpus_per_trial, num_gpus=self.gpus_per_trial)
        self._remote = resources(_ray_trial)
        self._warm_remote = resources(_ray_warm)
        self._evaluator: Evaluator | None = None
        self._evaluator_ref: Any = None
        self._imports: tuple[str, ...] = ()
        self._warming: list[Any] = []  # warm-up tasks (their results are not needed)
        self._warm_evaluator: Evaluator | None = None

    @property
    def n_workers(self) -> int:
        """Trials the cluster runs at once: its CPUs (or GPUs) over what a trial asks for."""
        try:
            resources = self._ray.cluster_resources()
        except Exception:  # pragma: no cover - cluster unreachable
            return 1
        fits = []
        if self.cpus_per_trial > 0:
            fits.append(resources.get("CPU", 1) / self.cpus_per_trial)
        if self.gpus_per_trial > 0:
            fits.append(resources.get("GPU", 0) / self.gpus_per_trial)
        return max(1, int(min(fits))) if fits else 1

    def start(
        self,
        evaluator: Evaluator | None = None,
        *,
        imports: Sequence[str] = (),
        workers: int | None = None,
    ) -> None:
        """Send one warm-up task per trial slot (:attr:`n_workers`, at most ``workers``):
        each imports ``imports`` and, given ``evaluator`` (put in the object store now),
        fetches and loads it; returns at once (see :meth:`Executor.start`). Trials sent later
        queue behind these tasks and find their workers warm. A new Ray job (driver) gets
        worker processes of its own, so they start here even on a running cluster."""
        self._imports = tuple(dict.fromkeys([*self._imports, *imports]))
        boxed = None if evaluator is None else [self._ref_for(evaluator)]
        if evaluator is not None and self._warm_evaluator is evaluator:
            return
        self._warm_evaluator = evaluator
        n = self.n_workers if workers is None else max(1, min(int(workers), self.n_workers))
        self._warming = [self._warm_remote.remote(self._imports, boxed, 0.05) for _ in range(n)]

    def _ref_for(self, evaluator: Evaluator) -> Any:
        # Keep the evaluator itself alive so its id() cannot be reused by another object.
        if self._evaluator is not evaluator:
            self._evaluator_ref = self._ray.put(evaluator)
            self._evaluator = evaluator
        return self._evaluator_ref

    def stream(self, evaluator: Evaluator) -> TrialStream:
        """Each submitted trial becomes a Ray task at once."""
        return _RayStream(self, evaluator)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the cluster may be gone already
            _, running = self._ray.wait(self._warming, num_returns=len(self._warming), timeout=0)
            for obj in running:
                with contextlib.suppress(Exception):  # finished meanwhile
                    self._ray.cancel(obj, force=True)
        self._warming = []
        self._warm_evaluator = None
        self._evaluator = None
        self._evaluator_ref = None
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False


class _RayStream(TrialStream):
    """The Ray executor's stream: one task per submitted trial; a trial's timeout counts
    from its submission."""

    def __init__(self, executor: RayExecutor, evaluator: Evaluator) -> None:
        self._ex = executor
        self._boxed = [executor._ref_for(evaluator)]
        self._pending: dict[Any, tuple[TrialSpec, float]] = {}
        self._ready: deque[TrialOutcome] = deque()

    @property
    def n_pending(self) -> int:
        return len(self._pending) + len(self._ready)

    def submit(self, spec: TrialSpec) -> None:
        ex = self._ex
        obj = ex._remote.remote(self._boxed, spec, ex.threads_per_trial)
        self._pending[obj] = (spec, time.time())

    def next(self) -> TrialOutcome:
        ray = self._ex._ray
        timeout = self._ex.trial_timeout
        while not self._ready:
            if not self._pending:
                raise RuntimeError("no submitted trial left to return")
            wait_s = None
            if timeout is not None:
                first = min(t for _, t in self._pending.values())
                wait_s = max(0.0, first + timeout - time.time())
            done, _ = ray.wait(list(self._pending), num_returns=1, timeout=wait_s)
            if not done:  # the oldest trials have run past the timeout
                assert timeout is not None
                now = time.time()
                for obj, (spec, submitted) in list(self._pending.items()):
                    if now >= submitted + timeout:
                        with contextlib.suppress(Exception):
                            ray.cancel(obj, force=True)
                        del self._pending[obj]
                        self._ready.append(_timeout_outcome(spec, submitted, timeout))
                continue
            for obj in done:
                spec, submitted = self._pending.pop(obj)
                try:
                    out = ray.get(obj)
                except Exception as exc:  # the task's worker crashed or was killed
                    out = failed_outcome(
                        spec,
                        exc,
                        submitted,
                        time.time(),
                        f"Ray task failed on dataset {spec.dataset_id!r} (trial {spec.number})",
                    )
                self._ready.append(out)
        return self._ready.popleft()

    def close(self) -> None:
        ray = self._ex._ray
        for obj in self._pending:
            with contextlib.suppress(Exception):  # already finished or gone
                ray.cancel(obj, force=True)
        self._pending.clear()
        self._ready.clear()


def make_executor(
    name: str = "inprocess",
    n_workers: int | None = None,
    *,
    threads_per_trial: int | None = None,
    trial_timeout: float | None = None,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
) -> Executor:
    """An executor by name: ``"inprocess"``, ``"process"`` or ``"ray"``.

    ``n_workers`` sets the worker processes of ``"process"`` and the CPUs of a local Ray
    instance started by ``"ray"``; ``"inprocess"`` ignores it. ``address``, ``cpus_per_trial``
    and ``gpus_per_trial`` are Ray's (see :class:`RayExecutor`); ``threads_per_trial`` and
    ``trial_timeout`` apply to every executor.
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    common: dict[str, Any] = {
        "threads_per_trial": threads_per_trial,
        "trial_timeout": trial_timeout,
    }
    if key == "inprocess":
        return InProcessExecutor(**common)
    if key == "process":
        return ProcessExecutor(n_workers, **common)
    if key == "ray":
        return RayExecutor(
            address,
            None if address is not None else n_workers,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            **common,
        )
    raise DashselError(f"unknown executor {name!r}: use one of {', '.join(EXECUTORS)}")
