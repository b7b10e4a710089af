"""Fuzz the policy API (issue 10): random call sequences with random, often invalid, arguments.

For every registered policy (the peers too, when their library is installed), a sequence of
``reset`` / ``ask`` / ``tell`` / ``recommend`` / ``posterior`` / ``replay`` / ``set_params``
calls either succeeds or raises a :class:`~dashsel.errors.DashselError` with a one-line
message; any other exception fails the test. After every sequence the posterior holds no
infinity, and a dataset that received a reward has a finite mean.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashsel.errors import DashselError, MissingExtraError
from dashsel.hierarchy import Hierarchy
from dashsel.policies import available_policies, make_policy


def fuzz_examples(full: int, small: int) -> int:
    """``full`` cases under the ``fuzz`` profile (``make fuzz``), ``small`` otherwise."""
    return full if settings.get_current_profile_name() == "fuzz" else small


IDS = ("a0", "a1", "a2", "b0", "b1", "c0")
HIERARCHY = Hierarchy(IDS, ("a", "a", "a", "b", "b", "c"))


def _distinct_policies() -> list[str]:
    """One registered name per distinct factory (``flat``, ``das`` and ``flat_ts`` are one)."""
    seen: dict[object, str] = {}
    for name, factory in available_policies().items():
        seen.setdefault(factory, name)
    return sorted(seen.values())


POLICY_NAMES = _distinct_policies()
SLOW = {"optuna"}  # a TPE ask costs milliseconds, not microseconds

# --- argument strategies: valid values mixed with every kind of wrong one -----------------------
odd_numbers = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, -1e308, 1e100, 1e101, 0, -1, 2**64, -(2**70), 0.5]
)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.binary(max_size=3),
    st.lists(st.sampled_from(IDS), max_size=2),
    st.tuples(st.sampled_from(IDS)),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.just(object()),
    st.just(np.float64(0.5)),
    st.just(np.int64(3)),
    st.just(np.bool_(True)),
    st.just(np.array([0.5])),
    st.just(complex(1, 1)),
)
dataset_ids = st.one_of(
    st.sampled_from(IDS),
    st.sampled_from(IDS),
    st.text(max_size=4),
    st.sampled_from(["", " a0", "a0\x00", "A0", "ä0"]),
    junk,
    odd_numbers,
)
rewards = st.one_of(
    st.floats(0, 1),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_numbers,
    st.integers(-(2**80), 2**80),
    st.sampled_from(["0.5", "nan", "1e308", "x", " 0.5 "]),
    junk,
)
counts = st.one_of(st.integers(1, 8), st.integers(-3, 10**7), odd_numbers, junk, st.floats())
# ask(n) really builds n slots: huge batch sizes are slow, not wrong, so they stay small here.
batch_sizes = st.one_of(
    st.integers(-3, 12), st.sampled_from([math.nan, math.inf, -1.0, 2.5, 0.0, 3.0]), junk
)
percentiles = st.one_of(
    st.floats(0, 100), st.floats(allow_nan=True), odd_numbers, junk, st.integers(-200, 200)
)
excludes = st.one_of(
    st.just(()),
    st.lists(dataset_ids, max_size=7),
    st.sampled_from(IDS),
    st.just(IDS),
    junk,
)
seeds = st.one_of(
    st.integers(0, 2**32), st.integers(-(2**40), 2**70), junk, st.just(np.random.default_rng(1))
)
param_values = st.one_of(st.floats(allow_nan=True), st.integers(-5, 50), rewards, junk)

operations = st.one_of(
    st.tuples(st.just("reset"), seeds),
    st.tuples(st.just("reset_hierarchy"), st.one_of(junk, st.just(HIERARCHY))),
    st.tuples(st.just("ask"), st.one_of(st.none(), batch_sizes), excludes),
    st.tuples(st.just("tell"), dataset_ids, rewards),
    st.tuples(st.just("tell"), st.sampled_from(IDS), st.floats(0, 1)),
    st.tuples(st.just("tell"), st.sampled_from(IDS), st.sampled_from([1e308, -1e308, 1e100])),
    st.tuples(
        st.just("recommend"), st.one_of(st.none(), counts), st.one_of(st.none(), percentiles)
    ),
    st.tuples(st.just("posterior")),
    st.tuples(
        st.just("replay"),
        st.one_of(st.lists(st.tuples(dataset_ids, rewards), max_size=4), junk),
        st.one_of(st.none(), batch_sizes),
    ),
    st.tuples(
        st.just("set_params"),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.sampled_from(["sigma_r", "alpha", "epsilon"])),
            param_values,
            max_size=2,
        ),
    ),
)


def _apply(policy, op: tuple) -> None:
    kind, *args = op
    if kind == "reset":
        policy.reset(HIERARCHY, random_state=args[0])
    elif kind == "reset_hierarchy":
        policy.reset(args[0], random_state=0)
    elif kind == "ask":
        n, exclude = args
        policy.ask(exclude=exclude) if n is None else policy.ask(n, exclude=exclude)
    elif kind == "tell":
        policy.tell(args[0], args[1])
    elif kind == "recommend":
        policy.recommend(k=args[0], percentile=args[1])
    elif kind == "posterior":
        policy.posterior()
    elif kind == "replay":
        policy.replay(args[0], n_asked=args[1])
    elif kind == "set_params":
        policy.set_params(**{str(k): v for k, v in args[0].items()})


def _check_posterior(policy) -> None:
    try:
        post = policy.posterior()
    except DashselError as exc:  # e.g. never reset
        _assert_one_line(exc)
        return
    for belief in (*post.datasets, *post.groups):
        assert not math.isinf(belief.mean), belief
        assert not math.isinf(belief.std), belief
        if belief.pulls > 0:
            assert math.isfinite(belief.mean), belief


def _assert_one_line(exc: BaseException) -> None:
    msg = str(exc)
    assert msg.strip(), f"{type(exc).__name__} with an empty message"
    assert "\n" not in msg and "\r" not in msg, f"multi-line message: {msg!r}"


def _fresh(name: str):
    try:
        return make_policy(name)
    except MissingExtraError:
        pytest.skip(f"{name}: its library is not installed")


def _run_sequence(name: str, reset_first: bool, ops: list[tuple]) -> None:
    policy = _fresh(name)
    if reset_first:  # most sequences start bound, so later calls get past the guard
        policy.reset(HIERARCHY, random_state=0)
    for op in ops:
        try:
            _apply(policy, op)
        except DashselError as exc:
            _assert_one_line(exc)
    _check_posterior(policy)


# Two tests so that the slow peers run fewer cases; Hypothesis counts each parametrized case.
@pytest.mark.parametrize("name", [n for n in POLICY_NAMES if n not in SLOW])
@settings(
    max_examples=fuzz_examples(750, 25),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(reset_first=st.booleans(), ops=st.lists(operations, max_size=25))
def test_policy_api_fuzz(name: str, reset_first: bool, ops: list[tuple]) -> None:
    _run_sequence(name, reset_first, ops)


@pytest.mark.parametrize("name", sorted(SLOW & set(POLICY_NAMES)))
@settings(
    max_examples=fuzz_examples(150, 8),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(reset_first=st.booleans(), ops=st.lists(operations, max_size=25))
def test_policy_api_fuzz_slow_peers(name: str, reset_first: bool, ops: list[tuple]) -> None:
    _run_sequence(name, reset_first, ops)
