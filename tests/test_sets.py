"""Near-copy detection, the set-aware final choice and set refinement (dashsel.sets)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashsel.errors import DashselError
from dashsel.evaluators.sklearn import LogisticEvaluator
from dashsel.hierarchy import Hierarchy
from dashsel.pool import ArraySplit, Pool
from dashsel.run import select
from dashsel.sets import (
    NEAR_COPY_THRESHOLD,
    NearCopy,
    Redundancy,
    SetError,
    dedupe_ranking,
    find_near_copies,
    refine_set,
)


def _domain(rng: np.random.Generator, width: int, n_classes: int = 3) -> tuple[np.ndarray, ...]:
    """A domain: class centres and a per-feature scale (features of very different units)."""
    centres = rng.normal(size=(n_classes, width)) * 2.0
    scale = np.exp(rng.normal(size=width))
    return centres, scale


def _sample(rng: np.random.Generator, dom: tuple[np.ndarray, ...], n: int) -> ArraySplit:
    centres, scale = dom
    y = rng.integers(0, len(centres), size=n)
    X = (centres[y] + rng.normal(size=(n, centres.shape[1]))) * scale
    return ArraySplit(X, y)


def _noisy(rng: np.random.Generator, part: ArraySplit, level: float = 0.05) -> ArraySplit:
    """A near-copy as the traps make it: noise of ``level`` times each feature's std."""
    sd = part.X.std(axis=0)
    return ArraySplit(part.X + rng.normal(size=part.X.shape) * level * sd, part.y.copy())


def _candidates(seed: int = 0, width: int = 20, n: int = 60) -> dict[str, ArraySplit]:
    rng = np.random.default_rng(seed)
    doms = [_domain(rng, width) for _ in range(3)]
    data = {f"d{j}s{i}": _sample(rng, doms[j], n) for j in range(3) for i in range(6)}
    data["exact"] = ArraySplit(data["d0s0"].X.copy(), data["d0s0"].y.copy())
    data["near"] = _noisy(rng, data["d0s1"])
    return data


def _flagged(red: Redundancy) -> set[tuple[str, str]]:
    return {(p.copy, p.of) for p in red.pairs}


def test_exact_and_near_copies_are_found_and_honest_siblings_are_not():
    red = find_near_copies(_candidates())
    found = _flagged(red)
    # Both directions: each of the two adds nothing next to the other.
    assert {("exact", "d0s0"), ("d0s0", "exact"), ("near", "d0s1"), ("d0s1", "near")} == found
    ratios = {(p.copy, p.of): p.ratio for p in red.pairs}
    assert ratios[("exact", "d0s0")] == 0.0
    assert 0.0 < ratios[("near", "d0s1")] < NEAR_COPY_THRESHOLD
    assert red.copies == frozenset({"exact", "d0s0", "near", "d0s1"})
    assert red.copied_by("near") == {"d0s1": ratios[("near", "d0s1")]}
    assert red.n_candidates == 20 and red.n_compared > 0 and red.seconds >= 0
    frame = red.to_frame()
    assert list(frame.columns) == ["copy", "of", "ratio"] and len(frame) == 4


def test_honest_ratios_sit_near_one():
    # With the threshold at 0.99 every compared honest pair shows: none comes close to 0.3.
    red = find_near_copies(_candidates(seed=3), threshold=0.99)
    honest = [p.ratio for p in red.pairs if {p.copy, p.of}.isdisjoint({"exact", "near"})]
    assert min(honest, default=1.0) > 0.6


def test_copy_with_other_labels_is_not_a_copy():
    # Same rows, other labels: it changes the model (label noise), it does not duplicate.
    rng = np.random.default_rng(1)
    data = _candidates(seed=1)
    base = data["d1s0"]
    data["relabelled"] = ArraySplit(base.X.copy(), (base.y + 1) % 3)
    red = find_near_copies(data)
    assert not any("relabelled" in (p.copy, p.of) for p in red.pairs)
    del rng


def test_subset_of_a_candidate_nearly_copies_it_but_not_the_reverse():
    data = _candidates(seed=2, n=120)
    big = data["d2s0"]
    data["part"] = ArraySplit(big.X[:40].copy(), big.y[:40].copy())
    found = _flagged(find_near_copies(data))
    assert ("part", "d2s0") in found
    assert ("d2s0", "part") not in found


def test_images_and_a_pool_work():
    rng = np.random.default_rng(4)
    dom = _domain(rng, 16)
    parts = {f"s{i}": _sample(rng, dom, 40) for i in range(5)}
    parts["dup"] = _noisy(rng, parts["s2"])
    images = {d: ArraySplit(p.X.reshape(-1, 4, 4), p.y) for d, p in parts.items()}
    pool = Pool.from_arrays(images, {d: "g" for d in images})
    assert ("dup", "s2") in _flagged(find_near_copies(pool))


def test_refusals():
    pool = Pool.replay_only(Hierarchy(["a", "b"], ["g", "g"]))
    with pytest.raises(SetError, match="arrays"):
        find_near_copies(pool)
    with pytest.raises(SetError, match="threshold"):
        find_near_copies(_candidates(), threshold=1.5)
    with pytest.raises(SetError, match="threshold"):
        find_near_copies(_candidates(), threshold=True)
    assert issubclass(SetError, DashselError)
    assert find_near_copies({"a": _candidates()["d0s0"]}).pairs == ()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    width=st.integers(1, 60),
    n_a=st.integers(3, 150),
    n_b=st.integers(3, 150),
    n_classes=st.integers(1, 6),
)
def test_independent_subsets_of_one_domain_are_never_flagged(seed, width, n_a, n_b, n_classes):
    rng = np.random.default_rng(seed)
    doms = [_domain(rng, width, n_classes) for _ in range(2)]
    data = {
        "a": _sample(rng, doms[0], n_a),
        "b": _sample(rng, doms[0], n_b),  # an independent sample of the same domain
        "c": _sample(rng, doms[1], n_a),
    }
    found = _flagged(find_near_copies(data, seed=seed % 1000))
    assert ("a", "b") not in found and ("b", "a") not in found


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    width=st.integers(8, 60),
    n_a=st.integers(10, 150),
    n_classes=st.integers(1, 6),
    level=st.sampled_from([0.0, 0.01, 0.05]),
)
def test_copies_with_up_to_5_percent_noise_are_always_found(seed, width, n_a, n_classes, level):
    # From 8 features on: in fewer, 5 % noise is as far as the next row of the same data (a
    # near-copy is then no closer to its original than a fresh sample, row by row).
    rng = np.random.default_rng(seed)
    doms = [_domain(rng, width, n_classes) for _ in range(2)]
    data = {"a": _sample(rng, doms[0], n_a), "b": _sample(rng, doms[0], n_a)}
    data["near"] = _noisy(rng, data["a"], level)
    found = _flagged(find_near_copies(data, seed=seed % 1000))
    assert ("near", "a") in found and ("a", "near") in found
    assert ("near", "b") not in found


# --- dedupe_ranking ---------------------------------------------------------------------------
def _red(*pairs: tuple[str, str, float]) -> Redundancy:
    return Redundancy(tuple(NearCopy(*p) for p in pairs), 0.3, 10, len(pairs), 0.0)


def test_dedupe_skips_copies_of_chosen_and_fills_from_the_ranking():
    red = _red(("b", "a", 0.01), ("a", "b", 0.01), ("d", "c", 0.05))
    choice = dedupe_ranking(["a", "b", "c", "d", "e", "f"], 3, red)
    assert choice.selected == ("a", "c", "e")
    assert [s.copy for s in choice.skipped] == ["b", "d"]
    assert choice.reasons() == {
        "b": "near-copy of chosen a (ratio 0.01)",
        "d": "near-copy of chosen c (ratio 0.05)",
    }
    assert choice.short == 0
    # A copy of something not chosen is kept.
    assert dedupe_ranking(["d", "e"], 2, red).selected == ("d", "e")


def test_dedupe_refills_with_skipped_when_the_ranking_runs_out():
    red = _red(("b", "a", 0.0))
    choice = dedupe_ranking(["a", "b"], 2, red)
    assert choice.selected == ("a", "b") and choice.short == 1 and choice.skipped == ()
    with pytest.raises(SetError):
        dedupe_ranking(["a"], -1, red)


# --- select() ---------------------------------------------------------------------------------
def _pool_with_copy() -> Pool:
    rng = np.random.default_rng(7)
    target, other = _domain(rng, 8), _domain(rng, 8)
    data = {
        "t0": _sample(rng, target, 80),
        "t1": _sample(rng, target, 80),
        "o0": _sample(rng, other, 80),
        "o1": _sample(rng, other, 80),
    }
    data["t0copy"] = _noisy(rng, data["t0"])
    groups = {d: d[0] for d in data}
    return Pool.from_arrays(
        data,
        groups,
        local=_sample(rng, target, 6),
        validation=_sample(rng, target, 200),
        test=_sample(rng, target, 200),
    )


def test_select_skips_a_near_copy_by_default_and_not_when_asked():
    pool = _pool_with_copy()
    ev = LogisticEvaluator(pool)
    kw = dict(budget=5, k=3, seed=0, score_final=False, scores=False)
    plain = select(pool, "roundrobin", ev, dedupe=False, **kw)
    assert {"t0", "t0copy", "t1"} == set(plain.selected) and plain.set_skipped == {}
    deduped = select(pool, "roundrobin", ev, **kw)
    assert "t1" in deduped.selected and len(deduped.selected) == 3
    assert not {"t0", "t0copy"} <= set(deduped.selected)
    (skipped,) = deduped.set_skipped
    assert skipped in ("t0", "t0copy") and "near-copy of chosen" in deduped.set_skipped[skipped]
    assert deduped.to_dict()["set_skipped"] == deduped.set_skipped
    assert "near-copy" in deduped.summary()
    red = find_near_copies(pool)
    assert select(pool, "roundrobin", ev, dedupe=red, **kw).selected == deduped.selected


def test_select_refuses_a_bad_dedupe():
    pool = _pool_with_copy()
    with pytest.raises(SetError, match="dedupe"):
        select(pool, "roundrobin", LogisticEvaluator(pool), budget=2, dedupe="yes")


def test_select_on_replayed_rewards_leaves_the_choice_unless_asked():
    import pandas as pd

    from dashsel.evaluators.table import TableEvaluator

    ids = ["a", "b", "c"]
    pool = Pool.replay_only(Hierarchy(ids, ["g", "g", "h"]))
    ev = TableEvaluator(pd.DataFrame({"dataset": ids, "reward": [0.3, 0.2, 0.1]}))
    res = select(pool, "roundrobin", ev, budget=3, k=2)
    assert res.selected == ("a", "b") and res.set_skipped == {}
    with pytest.raises(SetError, match="dedupe=False"):
        select(pool, "roundrobin", ev, budget=3, k=2, dedupe=True)


def test_report_and_study_skip_the_near_copies_the_run_skipped(tmp_path):
    """`dashsel report`, report_dict and Study.recommend make the run's set-aware choice,
    from the near-copies kept in the journal header (no arrays needed to read it back)."""
    from typer.testing import CliRunner

    from dashsel import Study
    from dashsel.cli import app
    from dashsel.report import read_journal, replay_posterior, report_dict

    pool = _pool_with_copy()
    ev = LogisticEvaluator(pool)
    kw = dict(budget=5, k=3, seed=0, score_final=False, scores=False)
    res = select(pool, "roundrobin", ev, journal=tmp_path / "run.db", **kw)
    assert len(res.set_skipped) == 1
    meta, frame = read_journal(tmp_path / "run.db")
    assert meta["near_copies"]["pairs"]
    rep = report_dict(tmp_path / "run.db", meta, frame)
    assert tuple(rep["selected"]) == res.selected and rep["set_skipped"] == res.set_skipped
    assert replay_posterior(meta, frame)[1].datasets == res.selected
    out = CliRunner().invoke(app, ["report", str(tmp_path / "run.db")])
    assert out.exit_code == 0, out.output
    (copy,) = res.set_skipped
    assert f"skipped {copy}" in out.output

    # A study: found once at creation, applied by recommend; --no-dedupe keeps the copy.
    reward = {"t0": 0.9, "t0copy": 0.85, "t1": 0.8, "o0": 0.1, "o1": 0.1}
    chosen = {}
    for name, dedupe in (("on.db", None), ("off.db", False)):
        with Study.create(tmp_path / name, pool, "roundrobin", k=2, dedupe=dedupe) as study:
            for _ in range(5):
                ((number, dataset),) = study.ask()
                study.tell(number, reward[dataset])
            chosen[name] = study.recommend().datasets
    assert chosen["off.db"] == ("t0", "t0copy")
    assert chosen["on.db"] == ("t0", "t1")


def test_near_copies_records_round_trip_and_a_bad_one_is_one_line():
    red = _red(("b", "a", 0.01), ("d", "c", 0.05))
    back = Redundancy.from_record(red.to_record())
    assert back.pairs == red.pairs and back.threshold == red.threshold
    with pytest.raises(SetError, match="journal header: the near-copies record is not readable"):
        Redundancy.from_record({"pairs": [["a"]], "threshold": 0.3}, "journal header")


def test_dedupe_on_a_pool_without_arrays_fails_before_any_trial():
    import pandas as pd

    from dashsel.evaluators.table import TableEvaluator

    ids = ["a", "b", "c"]
    pool = Pool.replay_only(Hierarchy(ids, ["g", "g", "h"]))
    calls = []

    class Counting(TableEvaluator):
        def evaluate(self, dataset_id, seed):
            calls.append(dataset_id)
            return super().evaluate(dataset_id, seed)

    ev = Counting(pd.DataFrame({"dataset": ids, "reward": [0.3, 0.2, 0.1]}))
    with pytest.raises(SetError, match="dedupe=False"):
        select(pool, "roundrobin", ev, budget=3, k=2, dedupe=True)
    assert calls == []


# --- refine_set -------------------------------------------------------------------------------
class _SetValue:
    """A training evaluator stand-in whose set value is known: +1 per good member, -1 per bad."""

    can_train = True

    def __init__(self, good: set[str]) -> None:
        self.good = good
        self.calls: list[tuple[str, ...]] = []

    def evaluate_set(self, ids, seed):
        self.calls.append(tuple(ids))
        return float(sum(1 if d in self.good else -1 for d in ids))


def test_refine_keeps_improving_swaps_only():
    ev = _SetValue({"a", "b", "d"})
    out = refine_set(ev, ["a", "b", "c"], ["a", "b", "c", "e", "d"], 3, seed=5)
    # c (weakest) out, e in: no better; then b out, d in: equal, not kept.
    assert out.n_evaluations == 3 and len(ev.calls) == 3
    assert out.initial_value == 1.0
    assert [s[:2] for s in out.swaps] == [("c", "e"), ("b", "d")]
    assert out.selected == ("a", "b", "c") and out.value == 1.0
    ev2 = _SetValue({"a", "b", "d"})
    out2 = refine_set(ev2, ["a", "b", "c"], ["a", "b", "c", "d"], 2)
    assert out2.selected == ("a", "b", "d") and out2.value == 3.0 and out2.swaps[0][3]


def test_refine_skips_near_copies_and_refuses_replays():
    ev = _SetValue({"a", "b", "x", "y"})
    red = _red(("x", "a", 0.0))
    out = refine_set(ev, ["a", "b", "c"], ["a", "b", "c", "x", "y"], 2, redundancy=red)
    assert out.swaps[0][1] == "y" and out.selected == ("a", "b", "y")
    assert refine_set(ev, ["a"], ["a"], 0).n_evaluations == 0

    class Replay:
        can_train = False

        def evaluate_set(self, ids, seed):  # pragma: no cover - never reached
            return 0.0

    with pytest.raises(SetError, match="cannot evaluate a set"):
        refine_set(Replay(), ["a"], ["a", "b"], 2)


def test_cli_no_dedupe(tmp_path):
    import json

    from typer.testing import CliRunner

    from dashsel.cli import app
    from dashsel.manifest import save_pool

    manifest = save_pool(_pool_with_copy(), tmp_path / "pool", evaluator={"kind": "logistic"})
    skipped = {}
    for flag, out in (([], "on.json"), (["--no-dedupe"], "off.json")):
        args = ["run", str(manifest), "--budget", "5", "--top-k", "3", "--no-final", "-q"]
        args += ["--policy", "roundrobin", "--no-scores", "--json", str(tmp_path / out), *flag]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        skipped[out] = json.loads((tmp_path / out).read_text())["set_skipped"]
    assert len(skipped["on.json"]) == 1 and skipped["off.json"] == {}


def test_cli_study_create_finds_near_copies_unless_no_dedupe(tmp_path):
    from typer.testing import CliRunner

    from dashsel.cli import app
    from dashsel.manifest import save_pool
    from dashsel.report import read_journal

    manifest = save_pool(_pool_with_copy(), tmp_path / "pool", evaluator={"kind": "logistic"})
    for flag, name in (([], "on.db"), (["--no-dedupe"], "off.db")):
        args = ["study", "create", str(tmp_path / name), str(manifest), "--top-k", "3", *flag]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
    assert read_journal(tmp_path / "on.db")[0]["near_copies"]["pairs"]
    assert read_journal(tmp_path / "off.db")[0]["near_copies"] is None
    show = CliRunner().invoke(app, ["study", "show", str(tmp_path / "on.db")])
    assert show.exit_code == 0, show.output
