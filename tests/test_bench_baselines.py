"""Instance-level selection baselines: contract, input errors, and pools with an obvious answer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashsel.errors import DashselError
from dashsel_bench.baselines import SAMPLE_SELECTORS, hyperparameters, select_samples
from dashsel_bench.baselines._common import l2_normalise
from dashsel_bench.baselines.activeft import activeft_loss_grad, fit_activeft
from dashsel_bench.baselines.bilaf import _quotas
from dashsel_bench.baselines.freesel import semantic_patterns

METHODS = sorted(SAMPLE_SELECTORS)
# Fewer optimisation steps where a test checks the contract, not the optimum: same code paths.
FAST = {"activeft": {"n_iter": 20}, "bilaf": {"activeft_params": {"n_iter": 20}}}


def fast(method: str) -> dict:
    return FAST.get(method, {})


def blobs(sizes=(400, 100, 25), d=8, spread=0.5, seed=0):
    """Gaussian blobs around 3·e_k: well apart both in Euclidean and in cosine terms."""
    rng = np.random.default_rng(seed)
    x = np.vstack(
        [3.0 * np.eye(d)[k] + spread * rng.standard_normal((s, d)) for k, s in enumerate(sizes)]
    )
    return x, np.repeat(np.arange(len(sizes)), sizes)


def test_registry_names():
    assert set(SAMPLE_SELECTORS) == {"coresets", "activeft", "bilaf", "freesel", "random-samples"}
    assert hyperparameters("activeft")["temperature"] == 0.07
    assert hyperparameters("random-samples") == {}


# ----------------------------------------------------------------------------- contract


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 25),
    d=st.integers(1, 4),
    budget=st.integers(1, 30),
    seed=st.integers(0, 2**16),
    integer=st.booleans(),
    with_local=st.booleans(),
)
def test_returns_distinct_in_range(method, n, d, budget, seed, integer, with_local):
    rng = np.random.default_rng(seed)
    # Small integer features give duplicate rows and zero rows: the awkward cases.
    x = rng.integers(0, 3, (n, d)).astype(float) if integer else rng.standard_normal((n, d))
    local = rng.standard_normal((3, d)) if with_local else None
    idx = select_samples(method, x, budget, local=local, random_state=seed, **fast(method))
    assert idx.dtype.kind == "i"
    assert len(idx) == min(budget, n)
    assert len(np.unique(idx)) == len(idx)
    assert idx.min() >= 0 and idx.max() < n


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_with_seed(method):
    x, _ = blobs(sizes=(60, 30, 10))
    a = select_samples(method, x, 12, random_state=7, **fast(method))
    b = select_samples(method, x, 12, random_state=7, **fast(method))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", METHODS)
def test_seed_changes_selection(method):
    # Guards against a selector that ignores its seed (and so would make the test above vacuous).
    x, _ = blobs(sizes=(60, 30, 10))
    picks = {tuple(select_samples(method, x, 12, random_state=s, **fast(method))) for s in range(4)}
    assert len(picks) > 1


@pytest.mark.parametrize("method", METHODS)
def test_budget_at_least_n_returns_all(method):
    x, _ = blobs(sizes=(5, 4, 3))
    for budget in (12, 50):
        np.testing.assert_array_equal(np.sort(select_samples(method, x, budget)), np.arange(12))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("candidates", "budget", "match"),
    [
        (np.ones((5, 2)), 0, "at least 1"),
        (np.ones((5, 2)), -3, "at least 1"),
        (np.ones((5, 2)), 2.0, "integer"),
        (np.ones((5, 2)), True, "integer"),
        (np.ones(5), 2, "2-D"),
        (np.ones((2, 3, 4)), 2, "2-D"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), 1, "NaN"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), 1, "NaN or infinite"),
        (np.empty((0, 3)), 1, "empty"),
        (np.array([["a", "b"]]), 1, "numeric"),
    ],
)
def test_bad_input_raises(method, candidates, budget, match):
    with pytest.raises(DashselError, match=match):
        select_samples(method, candidates, budget)


@pytest.mark.parametrize("method", METHODS)
def test_bad_local_raises(method):
    x = np.ones((5, 3))
    with pytest.raises(DashselError, match="local has 2 features"):
        select_samples(method, x, 2, local=np.ones((4, 2)))
    with pytest.raises(DashselError, match="local holds NaN"):
        select_samples(method, x, 2, local=np.full((4, 3), np.nan))


def test_unknown_method_and_hyperparameter():
    with pytest.raises(DashselError, match="unknown sample selector 'kmeans'"):
        select_samples("kmeans", np.ones((4, 2)), 2)
    with pytest.raises(DashselError, match="no hyperparameter 'tau'"):
        select_samples("activeft", np.ones((4, 2)), 2, tau=0.1)
    with pytest.raises(DashselError, match="unknown ActiveFT hyperparameter"):
        select_samples("bilaf", np.ones((4, 2)), 2, activeft_params={"tau": 0.1})


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("activeft", {"temperature": 0.0}),
        ("activeft", {"n_iter": 0}),
        ("activeft", {"objective": "other"}),
        ("bilaf", {"core_ratio": 1.5}),
        ("bilaf", {"removal_ratio": 1.0}),
        ("bilaf", {"activeft_params": {"temperature": -1.0}}),
        ("freesel", {"sampling": "greedy"}),
        ("freesel", {"n_patches": 9}),
        ("freesel", {"keep_ratio": 0.0}),
    ],
)
def test_bad_hyperparameter_raises(method, params):
    with pytest.raises(DashselError):
        select_samples(method, np.ones((10, 4)), 3, **params)


# ----------------------------------------------------------------------------- obvious answers


def test_coresets_covers_every_blob_with_one_pick_each():
    x, label = blobs()
    for seed in range(5):
        idx = select_samples("coresets", x, 3, random_state=seed)
        assert sorted(label[idx]) == [0, 1, 2]


def test_coresets_starts_from_local_data():
    # Local data already covers blobs 0 and 1: the single pick must go to blob 2.
    x, label = blobs()
    local = np.vstack([3.0 * np.eye(8)[0], 3.0 * np.eye(8)[1]])
    idx = select_samples("coresets", x, 1, local=local)
    assert label[idx[0]] == 2


def test_coresets_is_k_center_greedy():
    # Against a direct O(n^2) implementation: each pick is the farthest from those before it.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 5)) + 10.0
    idx = select_samples("coresets", x, 15, random_state=1)
    dist = np.linalg.norm(x[:, None] - x[None], axis=2)
    for t in range(1, 15):
        gap = dist[:, idx[:t]].min(axis=1)
        assert gap[idx[t]] == pytest.approx(gap.max())


def test_activeft_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    u = rng.standard_normal((5, 4))
    batch = l2_normalise(rng.standard_normal((40, 4)))
    for objective in ("reference", "paper"):
        _, grad = activeft_loss_grad(u, batch, 0.5, 0.7, objective)
        numeric = np.zeros_like(u)
        for i in range(u.shape[0]):
            for j in range(u.shape[1]):
                step = np.zeros_like(u)
                step[i, j] = 1e-6
                numeric[i, j] = (
                    _stopgrad_loss(u + step, u, batch, 0.5, 0.7, objective)
                    - _stopgrad_loss(u - step, u, batch, 0.5, 0.7, objective)
                ) / 2e-6
        np.testing.assert_allclose(grad, numeric, atol=1e-6)


def _stopgrad_loss(u, u_fixed, batch, tau, lam, objective):
    """Direct transcription of the two losses; ``u_fixed`` plays the reference's detach()."""
    theta = u / np.linalg.norm(u, axis=1, keepdims=True)
    fixed = u_fixed / np.linalg.norm(u_fixed, axis=1, keepdims=True)
    sim = batch @ theta.T
    c = np.argmax(batch @ fixed.T, axis=1)  # the assignment is held fixed, as in autograd
    s = sim[np.arange(len(batch)), c]
    if objective == "reference":
        cent = np.exp(fixed @ theta.T / tau).sum(axis=0)  # sum over the detached side
        return -np.mean(s / tau - np.log(np.exp(s / tau) + lam * cent[c]))
    logits = theta @ theta.T / tau
    np.fill_diagonal(logits, -np.inf)
    return -np.mean(s) / tau + lam * np.mean(np.log(np.exp(logits).sum(axis=1)))


def test_activeft_optimisation_lowers_the_loss():
    x, _ = blobs()
    fit = fit_activeft(l2_normalise(x), 20, rng=np.random.default_rng(0))
    assert fit.losses[-20:].mean() < fit.losses[:5].mean() - 0.3


def test_activeft_matches_the_distribution():
    # Budget 20 over blobs of 400/100/25 samples: proportional is 15.2/3.8/1. Core-sets, which
    # covers space, over-samples the small blob; ActiveFT should not.
    x, label = blobs()
    act = np.zeros(3)
    cov = np.zeros(3)
    for seed in range(4):
        act += np.bincount(label[select_samples("activeft", x, 20, random_state=seed)], minlength=3)
        cov += np.bincount(label[select_samples("coresets", x, 20, random_state=seed)], minlength=3)
    share = act / act.sum()
    assert share[0] > share[1] > share[2]
    np.testing.assert_allclose(share, [400 / 525, 100 / 525, 25 / 525], atol=0.08)
    assert share[2] < cov[2] / cov.sum()


def two_touching_clusters(n=400, seed=0):
    rng = np.random.default_rng(seed)
    xs = np.concatenate([rng.normal(-1.0, 0.6, n), rng.normal(1.0, 0.6, n)])
    ys = rng.normal(0.0, 1.0, 2 * n)
    # The constant first coordinate keeps the pool off the origin, so cosine geometry (which
    # ActiveFT and BiLAF work in) still sees two clusters side by side.
    return np.column_stack([np.full(2 * n, 2.0), xs, ys]), xs


def test_bilaf_prefers_the_boundary():
    x, xs = two_touching_clusters()
    near = np.abs(xs) < 0.3  # about 10% of the pool
    bilaf = [near[select_samples("bilaf", x, 20, random_state=s)].mean() for s in range(8)]
    rand = [near[select_samples("random-samples", x, 20, random_state=s)].mean() for s in range(8)]
    assert np.mean(bilaf) > 1.8 * near.mean()
    assert np.mean(bilaf) > np.mean(rand) + 0.08


def test_bilaf_starts_with_core_samples():
    x, _ = two_touching_clusters()
    assert len(select_samples("bilaf", x, 20, random_state=0)) == 20
    # With core_ratio=1 BiLAF is ActiveFT with the same seed.
    np.testing.assert_array_equal(
        select_samples("bilaf", x, 10, random_state=1, core_ratio=1.0),
        select_samples("activeft", x, 10, random_state=1),
    )


def test_bilaf_quotas_are_proportional_and_capped():
    np.testing.assert_array_equal(_quotas(np.array([60, 30, 10]), 10), [6, 3, 1])
    np.testing.assert_array_equal(_quotas(np.array([100, 2, 0]), 10), [10, 0, 0])
    np.testing.assert_array_equal(_quotas(np.array([2, 100]), 50), [1, 49])
    assert _quotas(np.array([3, 4]), 50).tolist() == [3, 4]
    assert _quotas(np.array([5, 5, 5]), 7).sum() == 7


@pytest.mark.parametrize(("sampling", "budget"), [("fps", 3), ("prob", 5)])
def test_freesel_covers_every_blob(sampling, budget):
    # Farthest-point sampling must cover the three blobs with three picks. The D^2-weighted
    # draw is random, so it gets a little slack; random sampling with 5 picks misses the
    # 25-sample blob about 78% of the time.
    x, label = blobs()
    for seed in range(5):
        idx = select_samples("freesel", x, budget, random_state=seed, sampling=sampling)
        assert set(label[idx]) == {0, 1, 2}


def test_freesel_starts_from_local_data():
    x, label = blobs()
    local = np.vstack([3.0 * np.eye(8)[0], 3.0 * np.eye(8)[2]])
    for seed in range(3):
        idx = select_samples("freesel", x, 1, local=local, random_state=seed)
        assert label[idx[0]] == 1


def test_freesel_patterns_keep_the_energetic_patches():
    x = np.array([[3.0, 4.0, 0.0, 0.1, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 2.0, 0.0]])
    patterns, owner = semantic_patterns(x, 3, keep_ratio=0.5)
    assert owner.tolist() == [0, 1]  # one dominant patch each holds >= half the energy
    np.testing.assert_allclose(patterns, [[0.6, 0.8], [1.0, 0.0]])
    patterns, owner = semantic_patterns(x, 3, keep_ratio=0.9)
    assert owner.tolist() == [0, 1, 1]
    idx = select_samples("freesel", np.tile(x, (5, 1)), 2, n_patches=3, random_state=0)
    assert len(set(idx % 2)) == 2  # the two distinct rows, not two copies of one


def test_random_samples_are_proportional():
    x, label = blobs()
    counts = np.bincount(label[select_samples("random-samples", x, 210, random_state=0)])
    expected = 210 * np.array([400, 100, 25]) / 525
    # Hypergeometric sd is below 6 for every blob here; 4 sd is a generous, fixed-seed bound.
    assert np.all(np.abs(counts - expected) < 24)


# ----------------------------------------------------------------------------- scale


def test_scale_smoke():
    rng = np.random.default_rng(0)
    centres = rng.random((10, 64))
    x = np.abs(centres[rng.integers(10, size=5000)] + 0.2 * rng.standard_normal((5000, 64)))
    local = x[:50] + 0.01
    for method in METHODS:
        # A short optimisation keeps the test quick while running the mini-batch path.
        params = {
            "activeft": {"n_iter": 30},
            "bilaf": {"activeft_params": {"n_iter": 30}},
        }.get(method, {})
        idx = select_samples(method, x, 200, local=local, random_state=0, **params)
        assert len(np.unique(idx)) == 200
