"""Executors: same outcomes wherever trials run; failures become FAILED outcomes."""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from dashsel.errors import DashselError, DataError, MissingExtraError, RewardError
from dashsel.evaluators.base import Evaluator
from dashsel.executors import (
    InProcessExecutor,
    ProcessExecutor,
    evaluate_spec,
    make_executor,
)
from dashsel.trial import TrialOutcome, TrialSpec, TrialState


class ToyEvaluator(Evaluator):
    """Reward = a per-dataset base + seeded noise; 'bad' raises, 'nan' returns NaN.

    With ``log_dir`` set, every unpickling writes a file named after the process, so a test can
    count how often the evaluator was shipped.
    """

    def __init__(self, log_dir: str | None = None) -> None:
        self.log_dir = log_dir

    def evaluate(self, spec: TrialSpec) -> float:
        if spec.dataset_id == "bad":
            raise ValueError("no such file: bad.npz")
        if spec.dataset_id == "nan":
            return float("nan")
        base = sum(map(ord, spec.dataset_id)) % 7 / 10
        return base + 0.01 * float(np.random.default_rng(spec.seed).normal())

    def describe(self) -> dict[str, Any]:
        return {"kind": "toy"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.log_dir:
            Path(self.log_dir, f"unpickled-{os.getpid()}-{id(self)}").touch()


SPECS = [TrialSpec(n, d, 1000 + n, 0) for n, d in enumerate(["a", "b", "bad", "c", "nan", "d"])]


def key(o: TrialOutcome) -> tuple:
    return (o.spec, o.state, o.reward, o.error)


def test_evaluate_spec_outcomes() -> None:
    ev = ToyEvaluator()
    ok = evaluate_spec(ev, SPECS[0])
    assert ok.state is TrialState.COMPLETE and ok.error is None
    assert ok.reward == ev.evaluate(SPECS[0])
    assert ok.started <= ok.finished and ok.duration >= 0

    bad = evaluate_spec(ev, SPECS[2])
    assert bad.state is TrialState.FAILED and bad.reward is None
    assert bad.error == "ValueError: evaluating dataset 'bad' (trial 2): no such file: bad.npz"

    nan = evaluate_spec(ev, SPECS[4])
    assert nan.state is TrialState.FAILED
    assert nan.error.startswith("RewardError: reward for dataset 'nan' (trial 4) is not finite")


def test_multiline_and_non_numeric_errors_are_one_line() -> None:
    class Weird(ToyEvaluator):
        def evaluate(self, spec: TrialSpec) -> Any:
            if spec.number == 0:
                raise RuntimeError("line one\nline two\n" + "x" * 2000)
            return "high"

    a = evaluate_spec(Weird(), SPECS[0])
    assert "\n" not in a.error and len(a.error) <= 500
    assert a.error.startswith("RuntimeError: evaluating dataset 'a' (trial 0): line one line two")
    b = evaluate_spec(Weird(), SPECS[1])
    assert b.error == "RewardError: reward for dataset 'b' (trial 1) is not a number: 'high'"


def test_inprocess_keyboard_interrupt_propagates() -> None:
    class Interrupt(ToyEvaluator):
        def evaluate(self, spec: TrialSpec) -> float:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(InProcessExecutor().map_unordered(Interrupt(), SPECS[:1]))


def test_process_executor_matches_inprocess_and_pickles_once_per_worker(tmp_path) -> None:
    ev = ToyEvaluator(log_dir=str(tmp_path))
    expected = Counter(key(o) for o in InProcessExecutor().map_unordered(ev, SPECS))
    with ProcessExecutor(2) as ex:
        first = list(ex.map_unordered(ev, SPECS))
        second = list(ex.map_unordered(ev, SPECS[:2]))  # same evaluator: same workers
    assert Counter(key(o) for o in first) == expected
    assert sorted(map(key, second), key=repr) == sorted(
        map(key, InProcessExecutor().map_unordered(ev, SPECS[:2])), key=repr
    )
    unpickled = list(tmp_path.glob("unpickled-*"))
    assert 1 <= len(unpickled) <= 2, unpickled  # once per worker, not per trial (8 trials)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_started_workers_load_the_evaluator_once_and_run_the_first_batch(tmp_path, method) -> None:
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    ev = ToyEvaluator(log_dir=str(tmp_path))
    expected = Counter(key(o) for o in InProcessExecutor().map_unordered(ev, SPECS))
    with ProcessExecutor(2, method) as ex:
        ex.start(imports=["json", "no_such_module_dashsel"])  # a module that fails: skipped
        ex.start(ev)
        ex.start(ev)  # the same evaluator: nothing more
        pids = {w.proc.pid for w in ex._workers}
        assert len(pids) == 2
        got = list(ex.map_unordered(ev, SPECS))
        assert {w.proc.pid for w in ex._workers} == pids  # the workers start() made
        workers = list(ex._workers)
    assert Counter(key(o) for o in got) == expected
    assert len(list(tmp_path.glob("unpickled-*"))) == 2  # once per worker
    # close() asked the idle workers to stop: they ended on their own, not killed.
    assert [w.proc.exitcode for w in workers] == [0, 0]


def test_process_default_start_method() -> None:
    import multiprocessing

    linux = sys.platform == "linux" and "forkserver" in multiprocessing.get_all_start_methods()
    assert ProcessExecutor(1).start_method == ("forkserver" if linux else "spawn")


def test_a_new_evaluator_gets_new_workers(tmp_path) -> None:
    first, second = ToyEvaluator(log_dir=str(tmp_path)), ToyEvaluator(log_dir=str(tmp_path))
    with ProcessExecutor(1) as ex:
        ex.start(first)
        assert len(list(ex.map_unordered(first, SPECS[:1]))) == 1
        old = ex._workers[0].proc
        assert len(list(ex.map_unordered(second, SPECS[:2]))) == 2
        assert ex._workers[0].proc.pid != old.pid
    assert old.exitcode == 0 and len(list(tmp_path.glob("unpickled-*"))) == 2


def test_process_executor_reports_unpicklable_evaluator() -> None:
    class Local(ToyEvaluator):  # a class defined in a function cannot be pickled
        pass

    with ProcessExecutor(1) as ex, pytest.raises(DashselError, match="cannot pickle evaluator"):
        list(ex.map_unordered(Local(), SPECS[:1]))


def test_make_executor() -> None:
    assert isinstance(make_executor("inprocess"), InProcessExecutor)
    ex = make_executor("process", 3)
    assert isinstance(ex, ProcessExecutor) and ex.n_workers == 3
    ex.close()
    with pytest.raises(DashselError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(DashselError, match="n_workers"):
        ProcessExecutor(0)


def test_ray_missing_extra_message(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'dashsel\[ray\]'"):
        make_executor("ray")


# --- Ray (one local instance for the module) -----------------------------------------------
@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    # Ray workers unpickle this module's classes by value: they cannot import a test file.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_ray_executor_matches_inprocess_and_keeps_user_session(ray_session) -> None:
    from dashsel.executors import RayExecutor

    ev = ToyEvaluator()
    expected = Counter(key(o) for o in InProcessExecutor().map_unordered(ev, SPECS))
    with RayExecutor() as ex:
        got = list(ex.map_unordered(ev, SPECS))
        assert ex.n_workers == 2
    assert Counter(key(o) for o in got) == expected
    assert all(math.isfinite(o.duration) for o in got)
    assert ray_session.is_initialized()  # the user's session is not shut down


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_ray_start_warms_workers_and_changes_no_outcome(ray_session) -> None:
    from dashsel.executors import RayExecutor

    ev = ToyEvaluator()
    expected = Counter(key(o) for o in InProcessExecutor().map_unordered(ev, SPECS))
    with RayExecutor() as ex:
        ex.start(imports=["json", "no_such_module_dashsel"], workers=1)
        assert len(ex._warming) == 1  # no more than the run will keep busy
        ex.start(ev)
        warming = list(ex._warming)
        assert len(warming) == ex.n_workers == 2
        ex.start(ev)  # the same evaluator: no more warm-up tasks
        assert ex._warming == warming
        got = list(ex.map_unordered(ev, SPECS))
        # Both warm-ups finish (on one worker or two: Ray may reuse a worker that is already
        # up, and which it does depends on the machine's load, so that is not asserted).
        assert len(ray_session.get(warming, timeout=120)) == 2
    assert Counter(key(o) for o in got) == expected


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_select_on_ray_matches_inprocess(ray_session) -> None:
    from dashsel import select
    from dashsel.executors import RayExecutor
    from dashsel.hierarchy import Hierarchy
    from dashsel.policies.base import Policy, Posterior

    class Cycle(Policy):
        name = "cycle"

        def _reset(self, hierarchy: Hierarchy) -> None:
            self.sums_ = np.zeros(hierarchy.n_datasets)

        def _ask_one(self, rng: np.random.Generator, step: int) -> str:
            return self.hierarchy_.dataset_ids[int(rng.integers(self.hierarchy_.n_datasets))]

        def _tell(self, index: int, reward: float) -> None:
            self.sums_[index] += reward

        def posterior(self) -> Posterior:
            from dashsel.policies.base import Belief

            h = self.hierarchy_
            ds = tuple(
                Belief(d, g, float(s), 1.0, 0)
                for d, g, s in zip(h.dataset_ids, h.groups, self.sums_, strict=True)
            )
            return Posterior(ds, tuple(Belief(g, None, 0.0, 1.0, 0) for g in h.group_ids))

    h = Hierarchy.from_mapping({"g": ["a", "b"], "h": ["c", "d"]})
    seq = select(h, Cycle(), ToyEvaluator(), 6, batch_size=2, seed=1)
    with RayExecutor() as ex:
        par = select(h, Cycle(), ToyEvaluator(), 6, batch_size=2, seed=1, executor=ex)
    cols = ["number", "dataset_id", "seed", "reward"]
    assert par.trials[cols].equals(seq.trials[cols])
    assert par.selected == seq.selected


class Uneven(ToyEvaluator):
    """Trials of 'a' and 'c' take 10x longer: parallel trials finish out of order."""

    def evaluate(self, spec: TrialSpec) -> float:
        time.sleep(0.05 if spec.dataset_id in ("a", "c") else 0.005)
        return super().evaluate(spec)


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_window_gives_the_same_trials_on_every_executor(ray_session) -> None:
    # The promise: a seed and a batch size give the same trials whatever the executor, with
    # a window of 3 trials in flight that finish out of order on 2 workers.
    from dashsel import select
    from dashsel.executors import RayExecutor
    from dashsel.hierarchy import Hierarchy

    h = Hierarchy.from_mapping({"g": ["a", "b", "e"], "h": ["c", "d", "f"]})
    args: dict[str, Any] = {"batch_size": 3, "seed": 2, "score_final": False}
    seq = select(h, "dash", Uneven(), 14, **args)
    with RayExecutor() as ex:
        on_ray = select(h, "dash", Uneven(), 14, executor=ex, **args)
    with ProcessExecutor(2) as ex:
        in_workers = select(h, "dash", Uneven(), 14, executor=ex, **args)
    cols = ["number", "dataset_id", "seed", "pull", "reward", "batch"]
    for par in (on_ray, in_workers):
        assert par.trials[cols].equals(seq.trials[cols])
        assert par.selected == seq.selected and par.posterior == seq.posterior


# --- exceptions come back as exceptions ---------------------------------------------------------
class Raising(ToyEvaluator):
    """'data' raises a DataError, 'odd' an exception that cannot be pickled back."""

    def evaluate(self, spec: TrialSpec) -> float:
        if spec.dataset_id == "data":
            raise DataError("x.npz: unreadable")
        if spec.dataset_id == "odd":
            raise Unpicklable("cannot travel")
        return super().evaluate(spec)


class Unpicklable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = __import__("threading").Lock()


@pytest.mark.parametrize("executor", [InProcessExecutor, lambda: ProcessExecutor(1)])
def test_failures_carry_the_exception_object(executor) -> None:
    specs = [TrialSpec(0, "data", 1, 0), TrialSpec(1, "odd", 2, 0), TrialSpec(2, "nan", 3, 0)]
    with executor() as ex:
        got = {o.spec.dataset_id: o for o in ex.map_unordered(Raising(), specs)}
    data = got["data"]
    assert type(data.exception) is DataError
    assert str(data.exception) == "evaluating dataset 'data' (trial 0): x.npz: unreadable"
    assert data.error == f"DataError: {data.exception}"
    # An exception that cannot cross processes is left out; its text stays in error.
    assert got["odd"].exception is None
    assert got["odd"].error == "Unpicklable: evaluating dataset 'odd' (trial 1): cannot travel"
    assert type(got["nan"].exception) is RewardError


# --- thread limits: checked by what the loaded libraries report ---------------------------------
class ThreadReporter(Evaluator):
    """Reward 0.5; writes what threadpoolctl reports inside ``evaluate`` to ``out/<trial>``.

    It imports scikit-learn inside ``evaluate``: in a fresh worker that loads OpenMP there,
    after the worker started, which is the case a limit entered too early misses.
    """

    def __init__(self, out: str) -> None:
        self.out = out

    def evaluate(self, spec: TrialSpec) -> float:
        import json

        import sklearn.linear_model  # noqa: F401 - loads scikit-learn's OpenMP runtime
        from threadpoolctl import threadpool_info

        info = [(i["user_api"], i["num_threads"]) for i in threadpool_info()]
        Path(self.out, str(spec.number)).write_text(json.dumps(info))
        return 0.5

    def describe(self) -> dict[str, Any]:
        return {"kind": "threads"}


def reported(out: Path) -> list[tuple[str, int]]:
    import json

    return [tuple(x) for f in sorted(out.iterdir()) for x in json.loads(f.read_text())]


@pytest.mark.parametrize("threads", [1, 2])
def test_inprocess_trials_run_with_their_threads(tmp_path, threads) -> None:
    import sklearn.linear_model  # noqa: F401 - BLAS and OpenMP loaded before the run
    from threadpoolctl import threadpool_info

    before = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    ex = InProcessExecutor(threads_per_trial=threads)
    outs = list(ex.map_unordered(ThreadReporter(str(tmp_path)), SPECS[:2]))
    assert all(o.state is TrialState.COMPLETE for o in outs)
    got = reported(tmp_path)
    assert {api for api, _ in got} >= {"blas", "openmp"}
    assert {n for _, n in got} == {threads}
    # The limit holds around each evaluation only: the caller's threads are given back.
    assert {i["filepath"]: i["num_threads"] for i in threadpool_info()} == before


@pytest.mark.parametrize("threads", [1, 2])
def test_worker_trials_run_with_their_threads(tmp_path, threads) -> None:
    with ProcessExecutor(1, threads_per_trial=threads) as ex:
        outs = list(ex.map_unordered(ThreadReporter(str(tmp_path)), SPECS[:2]))
    assert all(o.state is TrialState.COMPLETE for o in outs), outs
    got = reported(tmp_path)
    assert {api for api, _ in got} >= {"blas", "openmp"}
    assert {n for _, n in got} == {threads}


def test_default_threads_is_one_or_the_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    from dashsel.executors import THREAD_ENV_VARS, default_threads

    for var in THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    assert default_threads(1) == 1 and default_threads(8) == 1
    assert InProcessExecutor().threads_per_trial == 1
    assert ProcessExecutor(2).threads_per_trial == 1
    # The user's limit is the default (the smallest one set); a junk value is ignored.
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    monkeypatch.setenv("MKL_NUM_THREADS", "lots")
    assert default_threads(1) == 2
    assert InProcessExecutor().threads_per_trial == 2
    with pytest.raises(DashselError, match="threads_per_trial"):
        ProcessExecutor(2, threads_per_trial=0)


# --- timeouts and a pool that outlives batches -------------------------------------------------
class Sleepy(ToyEvaluator):
    """'hang' sleeps a minute; every other dataset answers at once."""

    def evaluate(self, spec: TrialSpec) -> float:
        if spec.dataset_id == "hang":
            import time

            time.sleep(60)
        return super().evaluate(spec)


def test_process_timeout_kills_the_trial_and_replaces_the_worker(tmp_path) -> None:
    import time

    from dashsel.executors import TrialTimeoutError

    specs = [TrialSpec(0, "hang", 1, 0), TrialSpec(1, "a", 2, 0), TrialSpec(2, "c", 3, 0)]
    start = time.monotonic()
    with ProcessExecutor(2, trial_timeout=1.0) as ex:
        got = {o.spec.dataset_id: o for o in ex.map_unordered(Sleepy(), specs)}
        assert time.monotonic() - start < 20
        hung = got["hang"]
        assert hung.state is TrialState.FAILED and type(hung.exception) is TrialTimeoutError
        assert "ran longer than the trial timeout of 1s" in hung.error
        assert got["a"].state is got["c"].state is TrialState.COMPLETE
        # The killed worker was replaced: the pool still runs n_workers trials.
        again = list(ex.map_unordered(Sleepy(), SPECS[:2]))
        assert [o.state for o in again] == [TrialState.COMPLETE] * 2
        assert len(ex._workers) == 2


def test_inprocess_timeout_stops_a_python_trial() -> None:
    import time

    start = time.monotonic()
    ex = InProcessExecutor(trial_timeout=0.5)
    out = next(ex.map_unordered(Sleepy(), [TrialSpec(0, "hang", 1, 0)]))
    assert time.monotonic() - start < 10
    assert out.state is TrialState.FAILED and "trial timeout" in out.error


def test_process_pool_started_once_per_evaluator(tmp_path) -> None:
    ev = ToyEvaluator(log_dir=str(tmp_path))
    with ProcessExecutor(2) as ex:
        for _ in range(4):
            assert len(list(ex.map_unordered(ev, SPECS[:2]))) == 2
        pids = {w.proc.pid for w in ex._workers}
        list(ex.map_unordered(ev, SPECS))
        assert {w.proc.pid for w in ex._workers} == pids  # the same warm workers
    assert len(list(tmp_path.glob("unpickled-*"))) == 2


# --- rewards checked against the evaluator's range ---------------------------------------------
class Returns(Evaluator):
    """Returns the value its dataset id names (a lookup table)."""

    reward_range = (0.0, 1.0)
    VALUES: ClassVar[dict[str, Any]] = {
        "five": 5.0,
        "minus": -3.0,
        "text": "0.5",
        "nan": float("nan"),
        "bool": True,
        "np": np.float32(0.25),
        "int": 1,
        "zero-d": np.array(0.75),
    }

    def evaluate(self, spec: TrialSpec) -> Any:
        return self.VALUES[spec.dataset_id]

    def describe(self) -> dict[str, Any]:
        return {"kind": "returns"}


def test_rewards_outside_the_declared_range_fail() -> None:
    ev = Returns()
    specs = [TrialSpec(n, d, n, 0) for n, d in enumerate(Returns.VALUES)]
    got = {o.spec.dataset_id: o for o in InProcessExecutor().map_unordered(ev, specs)}
    for bad in ("five", "minus", "text", "nan", "bool"):
        assert got[bad].state is TrialState.FAILED, bad
        assert type(got[bad].exception) is RewardError
        assert got[bad].reward is None
    assert "outside the evaluator's range [0, 1]" in got["five"].error
    assert "is not a number: '0.5'" in got["text"].error
    assert "is not a number: True" in got["bool"].error
    assert {d: got[d].reward for d in ("np", "int", "zero-d")} == {
        "np": 0.25,
        "int": 1.0,
        "zero-d": 0.75,
    }
    # Without a declared range any finite number is a reward.
    ev.reward_range = None
    free = {o.spec.dataset_id: o for o in InProcessExecutor().map_unordered(ev, specs)}
    assert free["five"].reward == 5.0 and free["minus"].reward == -3.0
    assert free["nan"].state is TrialState.FAILED and free["text"].state is TrialState.FAILED


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_ray_trials_run_with_their_threads(ray_session, tmp_path) -> None:
    from dashsel.executors import RayExecutor

    with RayExecutor(threads_per_trial=1) as ex:
        assert ex.n_workers == 2
        outs = list(ex.map_unordered(ThreadReporter(str(tmp_path)), SPECS[:2]))
    assert all(o.state is TrialState.COMPLETE for o in outs), outs
    assert {n for _, n in reported(tmp_path)} == {1}


class Dying(ToyEvaluator):
    """'die' ends its worker process abruptly."""

    def evaluate(self, spec: TrialSpec) -> float:
        if spec.dataset_id == "die":
            os._exit(1)
        return super().evaluate(spec)


def test_dead_workers_are_replaced() -> None:
    with ProcessExecutor(1) as ex:
        got = list(ex.map_unordered(Dying(), [TrialSpec(0, "die", 1, 0), TrialSpec(1, "a", 2, 0)]))
        states = {o.spec.dataset_id: o.state for o in got}
        assert states == {"die": TrialState.FAILED, "a": TrialState.COMPLETE}
        assert "a worker died" in next(o.error for o in got if o.spec.dataset_id == "die")
        ex._workers[0].proc.kill()  # dies while idle, between batches
        ex._workers[0].proc.join()
        again = list(ex.map_unordered(Dying(), SPECS[:2]))
        assert [o.state for o in again] == [TrialState.COMPLETE] * 2


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_ray_resources_per_trial_set_the_workers(ray_session) -> None:
    from dashsel.executors import RayExecutor

    with RayExecutor(cpus_per_trial=2) as ex:
        assert ex.n_workers == 1 and ex.threads_per_trial == 2
    with RayExecutor(cpus_per_trial=0.5) as ex:
        assert ex.n_workers == 4
    with pytest.raises(DashselError, match="gpus_per_trial must be a number >= 0"):
        RayExecutor(gpus_per_trial=-1)
    # Joining the running session by address leaves it running.
    address = ray_session.get_runtime_context().gcs_address
    with make_executor("ray", address=address) as ex:
        assert ex.n_workers == 2
    assert ray_session.is_initialized()


def test_evaluator_imports_name_the_kinds_modules() -> None:
    from dashsel.evaluators.registry import evaluator_imports

    # dashsel.evaluators.sklearn imports scikit-learn lazily: workers are told to import it.
    logistic = evaluator_imports({"kind": "logistic"})
    assert logistic[0] == "dashsel.evaluators.sklearn"
    assert "sklearn.linear_model" in logistic
    assert evaluator_imports({"kind": "table", "path": "x.csv"}) == ("dashsel.evaluators.table",)
    assert evaluator_imports({"kind": "nope"}) == evaluator_imports({"kind": ["x"]}) == ()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forkserver_module_ends_the_server_without_teardown() -> None:
    # What the process executor's forkserver preloads first: at exit, output is flushed and
    # the interpreter's teardown (a finaliser here) skipped; a forked child tears down as usual.
    import subprocess

    code = (
        "import os, sys, dashsel._forkserver\n"
        "class T:\n"
        "    def __del__(self):\n"
        "        print('teardown', os.getpid() != dashsel._forkserver._SERVER_PID)\n"
        "t = T()\n"
        "sys.stdout.write('out ')\n"
        "pid = os.fork()\n"
        "if pid:\n"
        "    os.waitpid(pid, 0)\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # The child prints its own 'out ' (inherited, unflushed buffer) then tears down.
    assert done.stdout.count("teardown") == 1
    assert "teardown True" in done.stdout
