"""dashsel.policies.hits_model: the engine's grouped sampler (group_moments / topk_draw /
choose_disputed: same distribution as the O(N) per-dataset draw, checked by two-sample tests
with fixed seeds that a wrong sampler fails) and the group-share part of the empirical-Bayes
fit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from dashsel.hierarchy import Hierarchy
from dashsel.policies import engine
from dashsel.policies.engine import HiTS, _topk_mask
from dashsel.policies.hits_model import (
    GroupMoments,
    Hyper,
    HyperPrior,
    RewardStats,
    fit_hyper,
    group_moments,
    posterior_moments,
    sample_joint,
    topk_draw,
)

G, SIZE = 5, 8
N = G * SIZE
GROUP_OF = np.repeat(np.arange(G), SIZE)
HYPER = Hyper(mu0=0.5, sigma0=0.08, sigmahat0=0.05, sigma_r=0.03)
R = 3000  # draws per sampler


def _stats() -> RewardStats:
    rng = np.random.default_rng(1)
    stats = RewardStats(N)
    for i in (0, 3, 9, 17, 18, 30, 3):
        stats.add(i, float(rng.normal(0.5, 0.1)))
    return stats


def _two_sample_p(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square test that two samples of category labels share one distribution."""
    cats = np.union1d(a, b)
    ca = np.array([(a == c).sum() for c in cats], dtype=float)
    cb = np.array([(b == c).sum() for c in cats], dtype=float)
    stat = float(((ca - cb) ** 2 / (ca + cb)).sum())
    return float(chi2.sf(stat, max(cats.size - 1, 1)))


def _reference(m: object, k: int, seed: int, untried: np.ndarray) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    counts, ev = [], []
    for _ in range(R):
        s = _topk_mask(sample_joint(m, GROUP_OF, rng), k)  # type: ignore[arg-type]
        counts.append(np.bincount(GROUP_OF[s & untried], minlength=G))
        ev.append(s[~untried])
    return np.array(counts), np.array(ev)


def _grouped(gm: GroupMoments, k: int, seed: int, leaf: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    draws = [topk_draw(gm, k, rng, leaf=leaf) for _ in range(R)]
    return np.array([d.untried for d in draws]), np.array([d.evaluated for d in draws])


def _labels(counts: np.ndarray, ev: np.ndarray) -> list[np.ndarray]:
    """Per group: its count of untried datasets in the top k; per evaluated dataset: in it?"""
    return [counts[:, g] for g in range(G)] + [ev[:, e].astype(int) for e in range(ev.shape[1])]


def test_group_moments_match_posterior_moments() -> None:
    stats = _stats()
    m = posterior_moments(HYPER, stats, GROUP_OF, G, None)
    gm = group_moments(HYPER, stats, GROUP_OF, np.bincount(GROUP_OF))
    ev = np.flatnonzero(stats.counts)
    np.testing.assert_array_equal(gm.evaluated, ev)
    np.testing.assert_allclose(gm.group_mean, m.group_mean, rtol=1e-12)
    np.testing.assert_allclose(gm.group_var, m.group_var, rtol=1e-12)
    np.testing.assert_allclose(gm.ev_offset, m.offset[ev], rtol=1e-12)
    np.testing.assert_allclose(gm.ev_gain, m.gain[ev], rtol=1e-12)
    np.testing.assert_allclose(gm.ev_lam, m.lam[ev], rtol=1e-12)
    untried = stats.counts == 0
    np.testing.assert_array_equal(gm.untried, np.bincount(GROUP_OF[untried], minlength=G))
    # untried datasets: N(theta_g, sigmahat0^2) given the group
    np.testing.assert_allclose(m.lam[untried], gm.untried_std**2)
    np.testing.assert_allclose(m.gain[untried], 1.0)
    np.testing.assert_allclose(m.offset[untried], 0.0)


@pytest.mark.parametrize(("k", "leaf"), [(7, 4096), (7, 2), (22, 3), (1, 2)])
def test_topk_draw_has_the_distribution_of_the_full_draw(k: int, leaf: int) -> None:
    # leaf=2/3 forces the cut-and-count levels on this small pool; 4096 draws every value.
    stats = _stats()
    m = posterior_moments(HYPER, stats, GROUP_OF, G, None)
    gm = group_moments(HYPER, stats, GROUP_OF, np.bincount(GROUP_OF))
    ref = _reference(m, k, seed=5, untried=stats.counts == 0)
    new = _grouped(gm, k, seed=6, leaf=leaf)
    assert (new[0].sum(axis=1) + new[1].sum(axis=1) == k).all()
    ps = [_two_sample_p(a, b) for a, b in zip(_labels(*ref), _labels(*new), strict=True)]
    assert min(ps) > 1e-4 / len(ps), ps


def test_topk_draw_test_rejects_a_wrong_sampler() -> None:
    # The same test on a sampler that is slightly off (untried spread 30% too wide) fails:
    # the check above has the power to see a wrong distribution.
    stats = _stats()
    m = posterior_moments(HYPER, stats, GROUP_OF, G, None)
    gm = group_moments(HYPER, stats, GROUP_OF, np.bincount(GROUP_OF))
    wrong = GroupMoments(**{**gm.__dict__, "untried_std": gm.untried_std * 1.3})
    ref = _reference(m, 7, seed=5, untried=stats.counts == 0)
    new = _grouped(wrong, 7, seed=6, leaf=2)
    ps = [_two_sample_p(a, b) for a, b in zip(_labels(*ref), _labels(*new), strict=True)]
    assert min(ps) < 1e-4 / len(ps)


def test_topk_draw_at_scale_is_fast_and_sized() -> None:
    n_groups, size = 300, 300
    group_of = np.repeat(np.arange(n_groups), size)
    stats = RewardStats(group_of.size)
    rng = np.random.default_rng(0)
    for i in rng.choice(group_of.size, 40, replace=False):
        stats.add(int(i), float(rng.random()))
    gm = group_moments(HYPER, stats, group_of, np.bincount(group_of))
    for k in (1, 50, 9000, group_of.size - 1):
        d = topk_draw(gm, k, rng)
        assert int(d.untried.sum()) + int(d.evaluated.sum()) == k
        assert (d.untried <= gm.untried).all() and (d.untried >= 0).all()


def _choices(grouped: bool, det: bool, blocked: np.ndarray, *, ignore_blocked: bool = False):
    h = Hierarchy([f"d{i}" for i in range(N)], [f"g{g}" for g in GROUP_OF])
    pol = HiTS(k=6, deterministic=det).reset(h, random_state=0)
    rng = np.random.default_rng(2)
    for i in (0, 3, 9, 17, 18, 30):
        pol.tell(f"d{i}", float(rng.normal(0.5, 0.1)))
    old, choose = engine.GROUPED_MIN_DATASETS, engine.choose_disputed
    engine.GROUPED_MIN_DATASETS = 0 if grouped else 10**12
    if ignore_blocked:  # a wrong rule: counts set-aside untried datasets as disputable

        def wrong(*args, **kw):  # type: ignore[no-untyped-def]
            return choose(*args, **{**kw, "untried_blocked": kw["untried_blocked"] * 0})

        engine.choose_disputed = wrong
    try:
        seeds = range(1000, 1000 + R) if grouped else range(R)
        return np.array([pol._choose(np.random.default_rng(s), blocked.copy()) for s in seeds])
    finally:
        engine.GROUPED_MIN_DATASETS, engine.choose_disputed = old, choose


BLOCKED = np.isin(np.arange(N), [1, 3, 8, 10, 11, 12, 13])  # untried and evaluated set aside


@pytest.mark.parametrize("det", [False, True])
def test_grouped_choice_has_the_distribution_of_the_per_dataset_choice(det: bool) -> None:
    p = _two_sample_p(_choices(False, det, BLOCKED), _choices(True, det, BLOCKED))
    assert p > 1e-4


def test_grouped_choice_test_rejects_a_wrong_rule() -> None:
    # Power: the same comparison sees set-aside datasets miscounted.
    wrong = _choices(True, False, BLOCKED, ignore_blocked=True)
    assert _two_sample_p(_choices(False, False, BLOCKED), wrong) < 1e-4


def test_engine_on_a_large_pool_asks_by_groups_and_keeps_its_rules() -> None:
    # 40,000 datasets: above engine.GROUPED_MIN_DATASETS, so asks go through topk_draw.
    n_groups, size = 200, 200
    h = Hierarchy(
        [f"d{i}" for i in range(n_groups * size)],
        [f"g{i // size}" for i in range(n_groups * size)],
    )
    assert h.n_datasets >= engine.GROUPED_MIN_DATASETS
    utility = np.random.default_rng(0).uniform(0, 1, n_groups)
    pol = HiTS(k=20, deterministic=True).reset(h, random_state=3)
    told: set[str] = set()
    pending = ("d5", "d17")
    for _ in range(8):
        batch = pol.ask(4, exclude=pending)
        assert len(set(batch)) == 4 and not set(batch) & set(pending)
        assert not set(batch) & told  # deterministic: nothing evaluated twice
        for d in batch:
            pol.tell(d, float(utility[h.index(d) // size]))
            told.add(d)
    assert pol.recommend(k=5).datasets


def test_untried_mask_follows_the_rewards() -> None:
    stats = RewardStats(5)
    assert stats.untried.all() and stats.n_untried == 5
    stats.add(3, 0.5)
    stats.add(3, 0.7)
    stats.add(0, 0.1)
    assert stats.untried.tolist() == [False, True, True, False, True]
    assert stats.n_untried == 3
    assert np.array_equal(stats.untried, stats.counts == 0)
    with pytest.raises(ValueError):
        stats.untried[1] = False  # a read-only view


# --- the group share of the fit ---------------------------------------------------------------
def _fitted_shares(sigma0: float, n_pools: int = 40, pairs: int = 12) -> np.ndarray:
    """Group share rho = sigma0^2 / (sigma0^2 + sigmahat0^2) fitted on simulated pools of 24
    groups of 8, one evaluation of one member per group plus a second member in ``pairs``
    groups (12: what a run has after about 36 evaluations)."""
    out = []
    for seed in range(n_pools):
        rng = np.random.default_rng(seed)
        group_of = np.repeat(np.arange(24), 8)
        theta_g = 0.7 + sigma0 * rng.standard_normal(24)
        theta = theta_g[group_of] + 0.04 * rng.standard_normal(group_of.size)
        stats = RewardStats(group_of.size)
        for i in [g * 8 for g in range(24)] + [g * 8 + 1 for g in range(pairs)]:
            stats.add(i, float(theta[i] + 0.02 * rng.standard_normal()))
        h = fit_hyper(stats, group_of, None, HyperPrior())
        out.append(h.sigma0**2 / (h.sigma0**2 + h.sigmahat0**2))
    return np.array(out)


def test_group_share_is_decided_by_the_rewards_when_groups_are_uninformative() -> None:
    # With a few within-group pairs the share must be free to reach 0: a pull towards the
    # hyperprior's share (0.5) kept it near 0.12 (median) on uninformative groups, which
    # credits untried members of lucky groups and loses to flat methods at 1/8 of the budget.
    rho = _fitted_shares(0.0)
    assert np.median(rho) < 0.08


def test_group_share_stays_high_when_groups_are_informative() -> None:
    rho = _fitted_shares(0.05)  # true share 0.05^2 / (0.05^2 + 0.04^2) = 0.61
    assert 0.45 < np.median(rho) < 0.8


def test_group_share_stays_at_the_hyperprior_while_it_is_not_identified() -> None:
    # One evaluated dataset per group cannot tell the share: it stays at the medians' share
    # 0.5 instead of drifting to 0, so that a great first reward still makes its group's
    # untried members promising at the smallest budgets.
    rho = _fitted_shares(0.0, n_pools=20, pairs=0)
    assert np.all((rho > 0.4) & (rho < 0.6))


@pytest.mark.parametrize("with_covariates", [False, True])
def test_moments_built_on_demand_match_the_dense_formulas(with_covariates: bool) -> None:
    # posterior_moments keeps only mean and var at N; lam, gain and offset are built when a
    # joint draw asks for them. Both must be the model's per-dataset formulas, exactly.
    stats = _stats()
    x = np.random.default_rng(4).standard_normal((N, 2)) if with_covariates else None
    hyper = Hyper(0.5, 0.08, 0.05, 0.03, beta=np.array([0.02, -0.01])) if x is not None else HYPER
    m = posterior_moments(hyper, stats, GROUP_OF, G, x)
    sh2, sr2 = hyper.sigmahat0**2, hyper.sigma_r**2
    lam = 1.0 / (1.0 / sh2 + stats.counts / sr2)
    gain = lam / sh2
    bx = x @ hyper.beta if x is not None else 0.0
    offset = gain * bx + lam * stats.sums / sr2
    np.testing.assert_allclose(m.lam, lam, rtol=1e-12)
    np.testing.assert_allclose(m.gain, gain, rtol=1e-12)
    np.testing.assert_allclose(m.offset, offset, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(m.mean, gain * m.group_mean[GROUP_OF] + offset, rtol=1e-12)
    np.testing.assert_allclose(m.var, gain**2 * m.group_var[GROUP_OF] + lam, rtol=1e-12)


def test_hypergeometric_draws_only_where_the_count_is_random() -> None:
    from dashsel.policies.hits_model import _hypergeometric

    good = np.array([0, 5, 5, 3, 0])
    bad = np.array([10, 5, 0, 7, 3])
    sample = np.array([4, 0, 3, 6, 2])
    rng = np.random.default_rng(0)
    draws = np.array([_hypergeometric(rng, good, bad, sample) for _ in range(4000)])
    assert (draws[:, [0, 1, 4]] == 0).all()  # no good items, or nothing drawn
    assert (draws[:, 2] == 3).all()  # only good items to draw from
    # Group 3: 6 of 10 with 3 good: mean 1.8, variance 6 * 0.3 * 0.7 * 4 / 9 = 0.56.
    assert abs(draws[:, 3].mean() - 1.8) < 0.05
    assert abs(draws[:, 3].var() - 0.56) < 0.06
    empty = np.zeros(3, dtype=np.int64)
    state = rng.bit_generator.state
    assert (_hypergeometric(rng, empty, empty + 5, empty + 2) == 0).all()
    assert rng.bit_generator.state == state  # nothing random: no number drawn
