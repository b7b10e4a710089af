"""Tests of dashsel.evaluators.cache: hits, misses, sharing between instances and processes."""

from __future__ import annotations

import math
import multiprocessing
import pickle
import sqlite3

import pytest

from dashsel.evaluators.base import Evaluator
from dashsel.evaluators.cache import CachedEvaluator, config_hash
from dashsel.evaluators.sklearn import LogisticEvaluator
from dashsel.testing import EvaluatorConformance
from dashsel.toy import make_toy_pool
from dashsel.trial import TrialSpec


class Counting(Evaluator):
    """Reward = f(dataset, seed); counts real evaluations."""

    can_train = True

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.calls = 0

    def evaluate(self, spec: TrialSpec) -> float:
        self.calls += 1
        if spec.dataset_id == "nan":
            return float("nan")
        return self.offset + len(spec.dataset_id) + spec.seed / 1000

    def score(self, dataset_ids, seed, split="test") -> float:
        self.calls += 1
        return self.offset + len(dataset_ids) + seed / 1000 + (split == "test")

    def describe(self) -> dict:
        return {"kind": "counting", "offset": self.offset}

    def extra(self) -> str:
        return "passed through"


def spec(dataset_id: str, seed: int, number: int = 0, pull: int = 0) -> TrialSpec:
    return TrialSpec(number=number, dataset_id=dataset_id, seed=seed, pull=pull)


def test_second_call_is_a_hit_with_the_same_value(tmp_path):
    ev = CachedEvaluator(Counting(), tmp_path / "c.sqlite")
    first = ev.evaluate(spec("ab", 3))
    # number and pull are not part of the key: another run's trial shares the evaluation
    assert ev.evaluate(spec("ab", 3, number=8, pull=2)) == first
    assert (ev.hits, ev.misses, ev.inner.calls) == (1, 1, 1)


def test_different_seed_or_dataset_is_a_miss(tmp_path):
    ev = CachedEvaluator(Counting(), tmp_path / "c.sqlite")
    ev.evaluate(spec("ab", 3))
    assert ev.evaluate(spec("ab", 4)) != ev.evaluate(spec("ab", 3))
    ev.evaluate(spec("abc", 3))
    assert (ev.hits, ev.misses) == (1, 3)


def test_scores_are_keyed_by_the_set_of_ids(tmp_path):
    ev = CachedEvaluator(Counting(), tmp_path / "c.sqlite")
    a = ev.score(["b", "a"], 1, "test")
    assert ev.score(["a", "b"], 1, "test") == a
    assert ev.score(["a", "b"], 1, "validation") != a
    assert ev.score(["a"], 1, "test") != a
    assert (ev.hits, ev.misses) == (1, 3)


def test_nan_is_cached_as_nan(tmp_path):
    ev = CachedEvaluator(Counting(), tmp_path / "c.sqlite")
    assert math.isnan(ev.evaluate(spec("nan", 0)))
    assert math.isnan(ev.evaluate(spec("nan", 0)))
    assert ev.hits == 1


def test_two_instances_share_one_file(tmp_path):
    path = tmp_path / "c.sqlite"
    a = CachedEvaluator(Counting(), path)
    value = a.evaluate(spec("ab", 5))
    b = CachedEvaluator(Counting(), path)
    assert b.evaluate(spec("ab", 5)) == value
    assert (b.hits, b.misses, b.inner.calls) == (1, 0, 0)


def test_other_config_does_not_share(tmp_path):
    path = tmp_path / "c.sqlite"
    CachedEvaluator(Counting(0.0), path).evaluate(spec("ab", 5))
    other = CachedEvaluator(Counting(1.0), path)
    assert other.evaluate(spec("ab", 5)) == 1.0 + 2 + 0.005
    assert other.misses == 1


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_describe_and_inner(tmp_path):
    ev = CachedEvaluator(Counting(2.0), tmp_path / "c.sqlite")
    assert ev.describe() == {"kind": "counting", "offset": 2.0}
    # Only the Evaluator protocol passes through; the wrapped evaluator's extras are on .inner.
    assert ev.can_train and ev.inner.extra() == "passed through"
    with pytest.raises(AttributeError):
        ev.extra  # noqa: B018


def test_uses_wal(tmp_path):
    path = tmp_path / "c.sqlite"
    CachedEvaluator(Counting(), path).evaluate(spec("a", 0))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_pickle_round_trip_reopens(tmp_path):
    ev = CachedEvaluator(Counting(), tmp_path / "c.sqlite")
    value = ev.evaluate(spec("ab", 1))
    clone = pickle.loads(pickle.dumps(ev))
    assert clone.evaluate(spec("ab", 1)) == value
    assert clone.inner.calls == 1  # the unpickled copy's counter: no new evaluation


def _child(blob: bytes, queue) -> None:
    ev = pickle.loads(blob)
    queue.put((ev.evaluate(spec("abcd", 7)), ev.hits, ev.misses))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_works_across_processes(tmp_path):
    ev = CachedEvaluator(Counting(), tmp_path / "c.sqlite")
    ev.evaluate(spec("ab", 0))  # parent holds an open connection while forking
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(pickle.dumps(ev), queue))
    proc.start()
    value, hits, misses = queue.get(timeout=60)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert (hits, misses) == (0, 1)
    # the child's evaluation is in the shared file: the parent now hits it
    assert ev.evaluate(spec("abcd", 7)) == value
    assert ev.hits == 1 and ev.inner.calls == 1


def test_unopenable_path_fails_at_construction(tmp_path):
    from dashsel.errors import DashselError

    (tmp_path / "c.sqlite").write_text("this is not a database " * 100)
    with pytest.raises(DashselError, match="cannot open the evaluation cache"):
        CachedEvaluator(Counting(), tmp_path / "c.sqlite")


# --- the conformance suite ---------------------------------------------------------------------
class TestCachedConformance(EvaluatorConformance):
    dataset_ids = ("g0-0", "g1-0", "g2-1")

    @pytest.fixture
    def evaluator(self, tmp_path):
        pool = make_toy_pool(seed=0, relevant_group=1)
        ev = CachedEvaluator(LogisticEvaluator(pool), tmp_path / "c.db")
        yield ev
        ev.close()
