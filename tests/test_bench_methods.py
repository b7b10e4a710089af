"""The method abstraction: name parsing, regrouping, references, policies, instance baselines."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from dashsel.errors import DashselError
from dashsel.evaluators.sklearn import LogisticEvaluator
from dashsel.pool import ArraySplit, DatasetEntry, Pool
from dashsel_bench.harness import BankReplay, build_bank
from dashsel_bench.methods import (
    GlobalMethod,
    InstanceMethod,
    LocalMethod,
    MethodOutcome,
    PolicyMethod,
    PyDVLMethod,
    RunContext,
    candidate_union,
    dataset_samples,
    label,
    make_method,
    regrouped,
    sample_budget,
)

DOMAINS = ("x", "y", "z")


def make_pool(n_subsets: int = 2, size: int = 20) -> Pool:
    """Three domains with different class means; target x; local data is tiny."""
    rng = np.random.default_rng(0)
    means = {d: rng.normal(0, 1.0, size=(2, 4)) for d in DOMAINS}

    def draw(d: str, n: int) -> ArraySplit:
        y = np.arange(n) % 2
        return ArraySplit(means[d][y] + rng.normal(size=(n, 4)), y)

    entries = [
        DatasetEntry(
            f"{d}{j}",
            d,
            data=draw(d, size + j),  # sizes differ, so sample counts are checked for real
            meta={"domain": d, "subset": j, "relevant": d == "x", "n": size + j},
        )
        for d in DOMAINS
        for j in range(n_subsets)
    ]
    return Pool(entries, local=draw("x", 4), validation=draw("x", 40), test=draw("x", 60))


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):  # tiny models: BLAS threads only add contention
        yield


@pytest.fixture
def ctx() -> RunContext:
    pool = make_pool()
    scorer = LogisticEvaluator(pool, bootstrap=True)
    bank = BankReplay(build_bank(scorer, pool.dataset_ids, 2))
    return RunContext(pool=pool, rewards=bank, scorer=scorer, budget=8, run=1, k=2)


# --- names -----------------------------------------------------------------------------------
def test_make_method_kinds_and_groupings() -> None:
    assert isinstance(make_method("local"), LocalMethod)
    assert isinstance(make_method("Global "), GlobalMethod)
    assert isinstance(make_method("pydvl"), PyDVLMethod)
    assert make_method("pydvl-banzhaf").kind == "peer"
    inst = make_method("coresets")
    assert isinstance(inst, InstanceMethod) and inst.kind == "instance"
    mixed = make_method("dash-mixed")
    assert isinstance(mixed, PolicyMethod) and (mixed.policy, mixed.grouping) == ("dash", "mixed")
    assert make_method("flat").kind == "policy" and make_method("flat").grouping == "perfect"
    # "-ucb" is not a grouping: the MABWiser peer keeps its full name.
    peer = make_method("mabwiser-ucb")
    assert isinstance(peer, PolicyMethod) and peer.kind == "peer"
    assert peer.policy == "mabwiser-ucb"
    with pytest.raises(DashselError):
        make_method("  ")


def test_labels() -> None:
    assert label("dash") == "DaSH" and label("flat") == "DaS (flat)"
    assert label("dash-cross") == "DaSH (cross)" and label("ucb-mixed") == "UCB (mixed)"
    assert label("something-new") == "something-new"


# --- pools -----------------------------------------------------------------------------------
def test_regrouped_keeps_datasets_and_splits() -> None:
    pool = make_pool(n_subsets=3)
    for grouping in ("mixed", "cross"):
        other = regrouped(pool, grouping)
        assert other.dataset_ids == pool.dataset_ids
        assert other.local is pool.local and other.test is pool.test
        assert other.dataset("y1") is pool.dataset("y1")
    mixed = regrouped(pool, "mixed").hierarchy
    for g in mixed.group_ids:
        domains = [pool.entry(d).meta["domain"] for d in mixed.members(g)]
        assert len(set(domains)) == 2  # each mixed group holds one foreign dataset
    cross = regrouped(pool, "cross").hierarchy
    assert cross.n_groups == 3
    for g in cross.group_ids:
        assert sorted(pool.entry(d).meta["domain"] for d in cross.members(g)) == list(DOMAINS)


def test_sample_counts_and_union() -> None:
    pool = make_pool()
    assert dataset_samples(pool, ["x0", "x1"]) == 20 + 21
    union = candidate_union(pool)
    assert len(union) == sum(len(pool.dataset(d)) for d in pool.dataset_ids)
    np.testing.assert_array_equal(union.X[:20], pool.dataset("x0").X)
    assert sample_budget(MethodOutcome(("x0",), 0.5, n_samples=20)) == 20


# --- running ---------------------------------------------------------------------------------
def test_references(ctx: RunContext) -> None:
    local = LocalMethod().run(ctx)
    glob = GlobalMethod().run(ctx)
    assert local.selected == () and local.n_samples == 0 and local.n_evaluations == 0
    assert glob.selected == ("x0", "x1") and glob.n_relevant == 2 and glob.n_samples == 41
    assert glob.accuracy == ctx.scorer.score(["x0", "x1"], ctx.run, "test")
    assert glob.accuracy > local.accuracy


def test_policy_method_is_deterministic_and_uses_budget(ctx: RunContext) -> None:
    method = make_method("dash")
    first, second = method.run(ctx), method.run(ctx)
    assert first.selected == second.selected and first.accuracy == second.accuracy
    assert first.n_evaluations == 8 and len(first.selected) == 2
    assert first.n_samples == dataset_samples(ctx.pool, first.selected)
    assert first.accuracy == ctx.scorer.score(list(first.selected), ctx.run, "test")
    cross = make_method("dash-cross").run(ctx)
    assert cross.n_evaluations == 8 and set(cross.selected) <= set(ctx.pool.dataset_ids)


def test_instance_method_matches_reference_sample_count(ctx: RunContext) -> None:
    ctx.reference = lambda: MethodOutcome(("x0", "y1"), 0.0, n_samples=41)
    out = InstanceMethod("random-samples").run(ctx)
    assert out.n_samples == 41 and out.selected == () and 0.0 <= out.accuracy <= 1.0
    ctx.reference = None
    with pytest.raises(DashselError, match="reference"):
        InstanceMethod("random-samples").run(ctx)


def test_unavailable_reports_import_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_method("dash").unavailable() is None
    assert make_method("coresets").unavailable() is None

    def missing(self: PolicyMethod) -> None:
        raise ImportError("No module named 'optuna'")

    monkeypatch.setattr(PolicyMethod, "_make", missing)
    assert "optuna" in (make_method("optuna").unavailable() or "")
    assert "not among" in (InstanceMethod("bogus").unavailable() or "")


# --- the engine, the heuristic and the scores alone -------------------------------------------
@pytest.fixture
def scored_ctx(ctx: RunContext) -> RunContext:
    from dashsel_bench.bank import pool_scores

    frame = pool_scores(ctx.pool, cache=False)
    ctx.scores = lambda: frame
    return ctx


def test_engine_names_parse() -> None:
    from dashsel_bench.methods import EngineMethod, ScoresOnlyMethod

    for name, cov in (
        ("hits", "scores"),
        ("hits-noscores", None),
        ("hits-shuffled", "shuffled"),
        ("hits-reversed", "reversed"),
    ):
        m = make_method(name)
        assert isinstance(m, EngineMethod) and m.covariates == cov and m.grouping == "perfect"
    mixed = make_method("hits-mixed")
    assert isinstance(mixed, EngineMethod) and mixed.grouping == "mixed"
    assert mixed.covariates == "scores" and label("hits-cross") == "Engine (HiTS) (cross)"
    only = make_method("scores-only")
    assert isinstance(only, ScoresOnlyMethod) and not only.uses_budget
    assert make_method("heuristic").unavailable() is None


def test_engine_covariates_follow_the_hierarchy(scored_ctx: RunContext) -> None:
    from dashsel_bench.methods import EngineMethod

    pool = scored_ctx.pool_for("cross")  # another dataset order than the pool's
    frame = scored_ctx.score_frame()
    X = EngineMethod("hits", "scores").covariate_matrix(scored_ctx, pool)
    assert X is not None and X.shape == (len(pool), 3)
    ids = list(pool.hierarchy.dataset_ids)
    # Column 0 is the standardised otdd score: same order as the frame read by those ids.
    otdd = frame.loc[ids, "score_otdd"].to_numpy()
    assert np.allclose(X[:, 0], (otdd - otdd.mean()) / otdd.std())
    rev = EngineMethod("hits-reversed", "reversed").covariate_matrix(scored_ctx, pool)
    assert np.allclose(rev, -X)
    shuf = EngineMethod("hits-shuffled", "shuffled").covariate_matrix(scored_ctx, pool)
    assert not np.allclose(shuf, X) and np.allclose(np.sort(shuf[:, 0]), np.sort(X[:, 0]))
    assert EngineMethod("hits-noscores", None).covariate_matrix(scored_ctx, pool) is None


@pytest.mark.parametrize("name", ["hits", "hits-noscores", "hits-mixed", "heuristic"])
def test_engine_and_heuristic_run(scored_ctx: RunContext, name: str) -> None:
    out = make_method(name).run(scored_ctx)
    assert len(out.selected) == 2 and len(set(out.selected)) == 2
    assert out.n_evaluations == scored_ctx.budget and 0.0 <= out.accuracy <= 1.0
    again = make_method(name).run(scored_ctx)
    assert again.selected == out.selected  # seeded by the run


def test_engine_gets_the_covariates(scored_ctx: RunContext, monkeypatch) -> None:
    from dashsel.policies.engine import HiTS

    seen: list[object] = []
    original = HiTS._reset

    def spy(self: HiTS, hierarchy: object) -> None:
        original(self, hierarchy)
        seen.append(self.covariates_)

    monkeypatch.setattr(HiTS, "_reset", spy)
    make_method("hits").run(scored_ctx)
    make_method("hits-noscores").run(scored_ctx)
    assert seen[0] is not None and seen[0].shape == (len(scored_ctx.pool), 3)
    assert seen[1] is None


def test_scores_only_takes_top_k_without_evaluations(scored_ctx: RunContext) -> None:
    out = make_method("scores-only").run(scored_ctx)
    frame = scored_ctx.score_frame()
    best = frame["score_default"].sort_values(ascending=False).index[:2]
    assert set(out.selected) == set(best) and out.n_evaluations == 0
    assert out.accuracy == scored_ctx.scorer.score(list(out.selected), scored_ctx.run, "test")


def test_scores_need_a_provider(ctx: RunContext) -> None:
    with pytest.raises(DashselError, match="training-free scores"):
        make_method("scores-only").run(ctx)


def test_pool_scores_cache_round_trip(tmp_path, monkeypatch) -> None:
    from dashsel_bench.bank import pool_scores

    monkeypatch.setenv("DASHSEL_CACHE", str(tmp_path))
    pool = make_pool()
    first = pool_scores(pool)
    files = list((tmp_path / "scores").glob("*.csv"))
    assert len(files) == 1
    second = pool_scores(pool)  # read back
    assert list(second.index) == list(pool.dataset_ids)
    cols = [c for c in first.columns if c.startswith("score_")]
    assert np.allclose(first[cols].to_numpy(float), second[cols].to_numpy(float))
    assert second.attrs["seconds"] == pytest.approx(first.attrs["seconds"])


# --- the set-level choice ---------------------------------------------------------------------
@pytest.fixture
def copied_ctx(scored_ctx: RunContext) -> RunContext:
    """The pool plus a near-copy of the first target subset (its rows, 5 % noise)."""
    from dashsel_bench.bank import pool_scores

    pool = scored_ctx.pool
    base = pool.dataset("x0")
    rng = np.random.default_rng(3)
    noisy = base.X + rng.normal(size=base.X.shape) * 0.05 * base.X.std(axis=0)
    copy = DatasetEntry(
        "x0copy", "x", data=ArraySplit(noisy, base.y), meta={"domain": "x", "relevant": False}
    )
    pool = Pool([*pool.entries, copy], local=pool.local, validation=pool.validation, test=pool.test)
    scorer = LogisticEvaluator(pool, bootstrap=True)
    frame = pool_scores(pool, cache=False)
    return RunContext(
        pool=pool,
        rewards=BankReplay(build_bank(scorer, pool.dataset_ids, 2)),
        scorer=scorer,
        budget=8,
        run=1,
        k=3,
        scores=lambda: frame,
    )


def test_set_method_names() -> None:
    from dashsel_bench.methods import EngineMethod, ScoresOnlyMethod, set_evaluations

    assert make_method("hits").dedupe and make_method("hits-noscores").dedupe
    nod = make_method("hits-nodedupe")
    assert isinstance(nod, EngineMethod) and not nod.dedupe and nod.covariates == "scores"
    refine = make_method("hits-set")
    assert isinstance(refine, EngineMethod) and refine.set_share == 0.1
    only = make_method("scores-only-dedupe")
    assert isinstance(only, ScoresOnlyMethod) and only.dedupe and only.name == "scores-only-dedupe"
    assert label("scores-only-dedupe") == "Scores only, deduplicated"
    assert not make_method("dash").dedupe  # the paper's methods keep their own choice
    assert [set_evaluations(b, 0.1) for b in (1, 5, 15, 30, 60)] == [0, 1, 2, 3, 6]
    assert set_evaluations(30, 0.0) == 0 and set_evaluations(2, 0.9) == 1


def test_scores_only_dedupe_skips_the_near_copy(copied_ctx: RunContext) -> None:
    plain = make_method("scores-only").run(copied_ctx)
    deduped = make_method("scores-only-dedupe").run(copied_ctx)
    assert len(deduped.selected) == 3 and deduped.n_evaluations == 0
    assert not {"x0", "x0copy"} <= set(deduped.selected)
    if {"x0", "x0copy"} <= set(plain.selected):  # the scores alone cannot tell them apart
        assert deduped.selected != plain.selected


def test_engine_is_set_aware_and_refines(copied_ctx: RunContext) -> None:
    out = make_method("hits").run(copied_ctx)
    assert not {"x0", "x0copy"} <= set(out.selected) and len(out.selected) == 3
    refined = make_method("hits-set").run(copied_ctx)
    # 8 evaluations: 7 for the engine, 1 for the chosen set.
    assert refined.n_evaluations == copied_ctx.budget and len(refined.selected) == 3
