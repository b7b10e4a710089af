"""A conformance suite every selection policy should pass (in the spirit of Optuna's sampler
tests and scikit-learn's ``check_estimator``).

Subclass :class:`PolicyConformance` in a test module, name the subclass ``Test...`` and say how
to build the policy::

    from dashsel.testing import PolicyConformance

    class TestMyPolicy(PolicyConformance):
        make_policy = staticmethod(lambda: MyPolicy(alpha=0.5))
        deterministic = False  # True if the seed plays no role (skips "seeds differ")

pytest then runs every ``test_*`` method below on it: asks return pool ids, a seed reproduces
a run, :meth:`~dashsel.policies.base.Policy.replay` of a journal reproduces the next ask, bad
rewards and unknown ids are rejected without changing state, the final choice ranks by
estimated mean (not by an exploration score), tiny hierarchies (one group, one dataset per
group, one dataset) work, ``ask(exclude=...)`` avoids pending datasets and a batch holds
distinct ones (slot by slot, as single asks excluding the earlier slots), ``sklearn.base.clone``
and ``set_params`` work, bad arguments are one-line errors, and no finite reward makes the
posterior infinite.

Needs pytest and hypothesis (``pip install 'dashsel[dev]'``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import numpy as np

from dashsel.errors import DashselError, RewardError, UnknownDatasetError, require
from dashsel.hierarchy import Hierarchy
from dashsel.policies.base import Policy, Posterior

pytest = require("pytest", "dev", "dashsel.testing")
hypothesis = require("hypothesis", "dev", "dashsel.testing")
st = require("hypothesis.strategies", "dev", "dashsel.testing")

__all__ = ["PolicyConformance", "drive", "posterior_arrays", "toy_hierarchy", "toy_reward"]

# The mixin's tests run once per subclass: "differing executors" is the design here, and each
# example builds its own policy, so no state leaks between them.
_SETTINGS = hypothesis.settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.differing_executors],
)


def toy_hierarchy(sizes: Sequence[int]) -> Hierarchy:
    """Groups ``g0, g1, ...`` holding ``sizes[i]`` datasets named ``g{i}d{j}``."""
    return Hierarchy.from_mapping(
        {f"g{i}": [f"g{i}d{j}" for j in range(m)] for i, m in enumerate(sizes)}
    )


def toy_reward(hierarchy: Hierarchy, dataset_id: str, pull: int) -> float:
    """A deterministic reward in [0, 1] that differs by dataset, group and pull."""
    k = hierarchy.index(dataset_id)
    g = hierarchy.group_ids.index(hierarchy.groups[k])
    return 0.2 + 0.4 * ((g * 0.618) % 1.0) + 0.2 * ((k * 0.377) % 1.0) + 0.05 * math.sin(pull + k)


def drive(
    policy: Policy,
    steps: int,
    reward: Callable[[str, int], float] | None = None,
    batch: int = 1,
) -> list[tuple[str, float]]:
    """Ask ``batch`` datasets at a time and tell each reward, for ``steps`` asks in all.

    ``reward(dataset_id, pull)`` defaults to :func:`toy_reward`. Returns the told
    (dataset_id, reward) history in order.
    """
    h = policy.hierarchy_
    reward = reward or (lambda d, n: toy_reward(h, d, n))
    pulls: dict[str, int] = {}
    history: list[tuple[str, float]] = []
    done = 0
    while done < steps:
        b = min(batch, steps - done)
        asked = policy.ask(b)
        for d in asked:
            r = reward(d, pulls.get(d, 0))
            pulls[d] = pulls.get(d, 0) + 1
            policy.tell(d, r)
            history.append((d, r))
        done += b
    return history


def posterior_arrays(post: Posterior) -> dict[str, np.ndarray]:
    """The posterior as arrays, for exact (NaN-aware) comparison."""
    out: dict[str, np.ndarray] = {}
    for level, beliefs in (("datasets", post.datasets), ("groups", post.groups)):
        out[f"{level}.id"] = np.array([b.id for b in beliefs])
        out[f"{level}.group"] = np.array([str(b.group) for b in beliefs])
        for field in ("mean", "std", "pulls"):
            out[f"{level}.{field}"] = np.array([getattr(b, field) for b in beliefs], dtype=float)
    return out


def assert_same_posterior(a: Posterior, b: Posterior) -> None:
    """Fail unless two posteriors are identical (NaN equals NaN)."""
    pa, pb = posterior_arrays(a), posterior_arrays(b)
    for key in pa:
        if pa[key].dtype.kind == "f":
            np.testing.assert_array_equal(pa[key], pb[key], err_msg=key)  # NaN-aware
        else:
            assert list(pa[key]) == list(pb[key]), key


_sizes = st.lists(st.integers(1, 4), min_size=1, max_size=5)


class PolicyConformance:
    """Mix-in of conformance tests; subclass it as ``Test<Policy>`` and set ``make_policy``."""

    #: Zero-argument callable returning a new, unbound policy.
    make_policy: Callable[[], Policy]
    #: True for policies whose asks do not depend on the seed (e.g. round-robin).
    deterministic: bool = False

    def fresh(self, hierarchy: Hierarchy, seed: int = 0) -> Policy:
        return type(self).make_policy().reset(hierarchy, seed)

    # --- binding ---------------------------------------------------------------------------
    def test_use_before_reset_raises(self) -> None:
        policy = type(self).make_policy()
        for call in (
            policy.ask,
            lambda: policy.ask(2),
            lambda: policy.tell("x", 0.5),
            policy.recommend,
            policy.posterior,
        ):
            with pytest.raises(DashselError):
                call()

    def test_reset_accepts_pool_like_and_returns_self(self) -> None:
        h = toy_hierarchy([2, 3])
        policy = type(self).make_policy()
        assert policy.reset(SimpleNamespace(hierarchy=h), 0) is policy
        assert policy.hierarchy_ is h
        assert policy.n_asked_ == 0 and policy.n_told_ == 0

    def test_get_params_rebuilds_policy(self) -> None:
        policy = type(self).make_policy()
        clone = type(policy)(**policy.get_params())
        assert clone.get_params() == policy.get_params()
        assert repr(clone) == repr(policy)

    # --- ask -------------------------------------------------------------------------------
    def test_ask_returns_pool_id(self) -> None:
        h = toy_hierarchy([3, 2, 1])
        policy = self.fresh(h)
        for _ in range(12):
            d = policy.ask()
            assert isinstance(d, str) and d in h
            policy.tell(d, toy_reward(h, d, 0))
        assert policy.n_asked_ == 12 and policy.n_told_ == 12

    def test_ask_n_returns_n_ids(self) -> None:
        h = toy_hierarchy([3, 2])
        policy = self.fresh(h)
        for n in (1, 4, 7):
            batch = policy.ask(n)
            assert isinstance(batch, list) and len(batch) == n
            assert all(isinstance(d, str) and d in h for d in batch)
        assert policy.n_asked_ == 12
        for bad in (0, -1, 1.5):
            with pytest.raises(DashselError):
                policy.ask(bad)

    def test_same_seed_same_sequence(self) -> None:
        h = toy_hierarchy([3, 1, 4])
        runs = [drive(self.fresh(h, 7), 30, batch=b) for b in (1, 1)]
        assert runs[0] == runs[1]
        # A batch is the same asks as single steps with no reward in between, so a batched
        # run repeats itself too.
        assert drive(self.fresh(h, 7), 30, batch=3) == drive(self.fresh(h, 7), 30, batch=3)

    def test_different_seeds_differ(self) -> None:
        if self.deterministic:
            pytest.skip("deterministic policy: the seed plays no role")
        h = toy_hierarchy([3, 3, 3, 3])
        base = [d for d, _ in drive(self.fresh(h, 0), 30)]
        others = [[d for d, _ in drive(self.fresh(h, s), 30)] for s in (1, 2, 3)]
        assert any(o != base for o in others)

    def test_reset_restarts_from_prior(self) -> None:
        h = toy_hierarchy([2, 3])
        policy = self.fresh(h, 3)
        first = drive(policy, 15)
        policy.reset(h, 3)
        assert policy.n_asked_ == 0 and policy.n_told_ == 0
        assert drive(policy, 15) == first

    # --- replay ----------------------------------------------------------------------------
    @hypothesis.given(
        sizes=_sizes,
        steps=st.integers(0, 25),
        batch=st.integers(1, 3),
        pending=st.integers(0, 2),
        seed=st.integers(0, 2**31),
        rewards=st.lists(st.floats(0.0, 1.0), min_size=30, max_size=30),
    )
    @_SETTINGS
    def test_replay_reproduces_next_asks(
        self,
        sizes: list[int],
        steps: int,
        batch: int,
        pending: int,
        seed: int,
        rewards: list[float],
    ) -> None:
        """A resumed run (tell the finished trials, advance the ask counter) continues exactly
        as the uninterrupted one, even with trials still pending at the interruption."""
        h = toy_hierarchy(sizes)
        original = self.fresh(h, seed)
        history = drive(
            original, steps, reward=lambda d, n: rewards[(7 * h.index(d) + n) % 30], batch=batch
        )
        if pending:
            original.ask(pending)  # started but never finished: lost in the crash
        resumed = self.fresh(h, seed).replay(history, n_asked=original.n_asked_)
        assert resumed.n_asked_ == original.n_asked_ and resumed.n_told_ == len(history)
        assert_same_posterior(resumed.posterior(), original.posterior())
        for t in range(3):
            a, b = original.ask(), resumed.ask()
            assert a == b, f"ask {t} after replay differs: {a!r} vs {b!r}"
            original.tell(a, rewards[t])
            resumed.tell(b, rewards[t])

    def test_replay_needs_fresh_policy(self) -> None:
        h = toy_hierarchy([2])
        policy = self.fresh(h)
        policy.ask()
        with pytest.raises(DashselError):
            policy.replay([("g0d0", 0.5)])
        with pytest.raises(DashselError):
            self.fresh(h).replay([], n_asked=-1)

    # --- tell ------------------------------------------------------------------------------
    def test_tell_rejects_bad_input_without_state_change(self) -> None:
        h = toy_hierarchy([2, 2])
        policy = self.fresh(h)
        drive(policy, 6)
        before = policy.posterior()
        told = policy.n_told_
        for bad in (math.nan, math.inf, -math.inf, "high", None):
            with pytest.raises(RewardError):
                policy.tell("g0d0", bad)  # type: ignore[arg-type]
        with pytest.raises(UnknownDatasetError):
            policy.tell("nope", 0.5)
        assert policy.n_told_ == told
        assert_same_posterior(policy.posterior(), before)

    def test_tell_of_unasked_dataset_counts(self) -> None:
        h = toy_hierarchy([2, 2])
        policy = self.fresh(h)
        policy.tell("g1d1", 0.7)
        policy.tell("g1d1", 0.6)
        assert policy.posterior().dataset("g1d1").pulls == 2
        assert policy.posterior().group("g1").pulls == 2

    # --- posterior -------------------------------------------------------------------------
    def test_posterior_layout(self) -> None:
        h = toy_hierarchy([3, 1, 2])
        policy = self.fresh(h)
        history = drive(policy, 20)
        post = policy.posterior()
        assert [b.id for b in post.datasets] == list(h.dataset_ids)
        assert [b.group for b in post.datasets] == list(h.groups)
        assert [b.id for b in post.groups] == list(h.group_ids)
        assert all(b.group is None for b in post.groups)
        for b in post.datasets:
            assert b.pulls == sum(d == b.id for d, _ in history)
        for g in post.groups:
            assert g.pulls == sum(h.group_of(d) == g.id for d, _ in history)
        for b in (*post.datasets, *post.groups):
            assert math.isnan(b.std) or b.std >= 0
            if b.pulls:
                assert math.isfinite(b.mean)

    # --- recommend -------------------------------------------------------------------------
    def test_recommend_k_distinct(self) -> None:
        h = toy_hierarchy([3, 1, 4])
        policy = self.fresh(h)
        drive(policy, 25)
        assert len(policy.recommend().datasets) == 1
        for k in range(1, h.n_datasets + 1):
            rec = policy.recommend(k=k)
            assert len(rec.datasets) == k and len(set(rec.datasets)) == k
            assert all(d in h for d in rec.datasets)
            assert set(rec.groups) == {h.group_of(d) for d in rec.datasets}
            assert len(set(rec.groups)) == len(rec.groups)

    def test_recommend_percentile(self) -> None:
        h = toy_hierarchy([3, 2, 3])
        policy = self.fresh(h)
        drive(policy, 25)
        for x in (0.0, 50.0, 90.0):
            rec = policy.recommend(percentile=x)
            assert rec.datasets and len(set(rec.datasets)) == len(rec.datasets)
            assert all(d in h for d in rec.datasets)
            assert set(rec.groups) == {h.group_of(d) for d in rec.datasets}

    def test_recommend_rejects_bad_rule(self) -> None:
        policy = self.fresh(toy_hierarchy([2]))
        for kwargs in ({"k": 1, "percentile": 50.0}, {"k": 0}, {"k": 1.5}, {"percentile": 100}):
            with pytest.raises(DashselError):
                policy.recommend(**kwargs)

    def test_recommend_ranks_by_mean_not_exploration(self) -> None:
        """One dataset told once with a slightly lower reward (large exploration bonus, lower
        mean) against one told often with a higher reward: the final choice is the latter."""
        h = toy_hierarchy([3])
        policy = self.fresh(h)
        for _ in range(20):
            policy.tell("g0d1", 0.80)
        policy.tell("g0d0", 0.78)
        policy.tell("g0d2", 0.30)
        policy.tell("g0d2", 0.32)
        assert policy.recommend().datasets == ("g0d1",)
        assert policy.recommend(k=3).datasets == ("g0d1", "g0d0", "g0d2")

    def test_recommend_order_follows_posterior_means(self) -> None:
        # In a one-group pool, a hierarchical rule and a flat one coincide.
        h = toy_hierarchy([5])
        policy = self.fresh(h)
        drive(policy, 12)
        post = policy.posterior()
        means = {b.id: (-math.inf if math.isnan(b.mean) else b.mean) for b in post.datasets}
        ranked = policy.recommend(k=5).datasets
        assert [means[d] for d in ranked] == sorted(means.values(), reverse=True)

    # --- small hierarchies -----------------------------------------------------------------
    @pytest.mark.parametrize("sizes", [[1], [4], [1, 1, 1, 1], [1, 1]])
    def test_tiny_hierarchies(self, sizes: list[int]) -> None:
        h = toy_hierarchy(sizes)
        policy = self.fresh(h)
        history = drive(policy, 15, batch=2)
        assert all(d in h for d, _ in history)
        post = policy.posterior()
        assert len(post.datasets) == h.n_datasets and len(post.groups) == h.n_groups
        assert len(policy.recommend(k=h.n_datasets).datasets) == h.n_datasets
        assert policy.recommend(percentile=50.0).datasets

    # --- pending-aware asks (exclude) and batches ------------------------------------------
    @hypothesis.given(
        sizes=_sizes,
        seed=st.integers(0, 2**31),
        steps=st.integers(0, 12),
        picks=st.lists(st.integers(0, 19), max_size=20),
    )
    @_SETTINGS
    def test_ask_honours_exclude(
        self, sizes: list[int], seed: int, steps: int, picks: list[int]
    ) -> None:
        """``ask(exclude=E)`` never returns a member of E while the pool holds another
        dataset; excluding everything still answers with a pool id."""
        h = toy_hierarchy(sizes)
        policy = self.fresh(h, seed)
        drive(policy, steps)
        exclude = sorted({h.dataset_ids[p % h.n_datasets] for p in picks})
        for _ in range(3):
            d = policy.ask(exclude=exclude)
            assert d in h
            if len(exclude) < h.n_datasets:
                assert d not in exclude, f"asked excluded {d!r} (exclude={exclude})"
            batch = policy.ask(2, exclude=exclude)
            free = h.n_datasets - len(exclude)
            assert all(b not in exclude for b in batch[: max(free, 0)])
            policy.tell(d, toy_reward(h, d, 0))

    def test_exclude_checks_ids(self) -> None:
        h = toy_hierarchy([2, 2])
        policy = self.fresh(h)
        with pytest.raises(UnknownDatasetError):
            policy.ask(exclude=["nope"])
        assert policy.n_asked_ == 0
        everything = policy.ask(exclude=list(h.dataset_ids))
        assert everything in h
        assert policy.ask(exclude="g0d0") in h  # one id given as a plain string

    @pytest.mark.parametrize("sizes", [[3, 1, 4], [1], [2, 2], [6]])
    def test_batch_holds_distinct_datasets(self, sizes: list[int]) -> None:
        """A batch repeats no dataset while the pool has unasked ones, even after the
        posterior has concentrated on one of them."""
        h = toy_hierarchy(sizes)
        policy = self.fresh(h, 5)
        for _ in range(30):
            policy.tell(h.dataset_ids[0], 0.95)
        n = h.n_datasets
        assert sorted(policy.ask(n)) == sorted(h.dataset_ids)
        batch = policy.ask(n + 2)
        assert sorted(batch[:n]) == sorted(h.dataset_ids) and all(d in h for d in batch)
        if n > 1:
            free = policy.ask(n - 1, exclude=[h.dataset_ids[0]])
            assert h.dataset_ids[0] not in free and len(set(free)) == n - 1

    @hypothesis.given(sizes=_sizes, seed=st.integers(0, 2**31), steps=st.integers(0, 10))
    @_SETTINGS
    def test_batch_is_single_asks_with_growing_exclude(
        self, sizes: list[int], seed: int, steps: int
    ) -> None:
        """Slot j of ``ask(n, exclude=E)`` is what ``ask(exclude=E + earlier slots)`` returns
        at the same step: the reproducibility contract extended to exclusion."""
        h = toy_hierarchy(sizes)
        a, b = self.fresh(h, seed), self.fresh(h, seed)
        history = drive(a, steps)
        b.replay(history)
        first = [h.dataset_ids[-1]]
        batch = a.ask(3, exclude=first)
        singles: list[str] = []
        for _ in range(3):
            singles.append(b.ask(exclude=first + singles))
        assert batch == singles

    # --- scikit-learn conventions ----------------------------------------------------------
    def test_sklearn_clone_and_set_params(self) -> None:
        from sklearn.base import clone

        policy = type(self).make_policy()
        twin = clone(policy)
        assert type(twin) is type(policy) and twin is not policy
        assert twin.get_params(deep=True) == policy.get_params(deep=False)
        assert twin.set_params() is twin
        params = policy.get_params()
        if params:
            name, value = next(iter(params.items()))
            assert twin.set_params(**{name: value}).get_params()[name] == value
        with pytest.raises(DashselError, match="no_such_parameter"):
            twin.set_params(no_such_parameter=1)
        assert twin.get_params() == params  # a refused call changes nothing

    # --- hardening -------------------------------------------------------------------------
    def test_bad_arguments_are_one_line_errors(self) -> None:
        h = toy_hierarchy([2, 2])
        policy = self.fresh(h)
        calls = [
            lambda: policy.tell(["g0d0"], 0.5),  # type: ignore[arg-type]
            lambda: policy.tell(None, 0.5),  # type: ignore[arg-type]
            lambda: policy.ask(True),  # type: ignore[call-overload]
            lambda: policy.ask(math.nan),  # type: ignore[call-overload]
            lambda: policy.ask(exclude=[["g0d0"]]),  # type: ignore[list-item]
            lambda: policy.recommend(k=math.nan),  # type: ignore[arg-type]
            lambda: policy.recommend(k=True),
            lambda: policy.recommend(k=math.inf),  # type: ignore[arg-type]
            lambda: policy.recommend(percentile=math.nan),
            lambda: policy.recommend(percentile="50"),  # type: ignore[arg-type]
        ]
        for call in calls:
            with pytest.raises(DashselError) as info:
                call()
            assert "\n" not in str(info.value)
        assert policy.n_asked_ == 0 and policy.n_told_ == 0

    @hypothesis.given(
        rewards=st.lists(
            st.tuples(st.integers(0, 5), st.floats(allow_nan=False, allow_infinity=False)),
            min_size=1,
            max_size=25,
        )
    )
    @_SETTINGS
    def test_finite_tells_keep_posterior_finite(self, rewards: list[tuple[int, float]]) -> None:
        """Any finite reward is either refused with RewardError (too large) or leaves every
        posterior mean and std finite (std may be NaN where undefined, never infinite)."""
        h = toy_hierarchy([2, 4])
        policy = self.fresh(h)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. a peer clipping to [0, 1]
            for i, r in [*rewards, *rewards]:
                try:
                    policy.tell(h.dataset_ids[i], r)
                except RewardError:
                    continue
        arrays = posterior_arrays(policy.posterior())
        for level in ("datasets", "groups"):
            pulled = arrays[f"{level}.pulls"] > 0
            assert np.isfinite(arrays[f"{level}.mean"][pulled]).all()
            assert not np.isinf(arrays[f"{level}.mean"]).any()
            assert not np.isinf(arrays[f"{level}.std"]).any()
        assert policy.ask() in h
        assert policy.recommend(k=3).datasets
