"""Tests of dashsel.toy: the structure of the toy pool and that its known answer holds."""

from __future__ import annotations

import numpy as np
import pytest

from dashsel.evaluators import LogisticEvaluator
from dashsel.manifest import load_manifest
from dashsel.toy import make_toy_pool, write_toy_manifest


def test_structure():
    pool = make_toy_pool(n_groups=3, datasets_per_group=2, n_features=5, n_per_dataset=30, seed=1)
    assert len(pool) == 6 and pool.hierarchy.group_ids == ("g0", "g1", "g2")
    assert pool.dataset_ids[:2] == ("g0-0", "g0-1")
    relevant_groups = {e.group for e in pool.entries if e.meta["relevant"]}
    assert len(relevant_groups) == 1
    for e in pool.entries:
        assert set(e.meta) == {"relevant", "domain", "subset", "label_noise"}
        assert e.meta["domain"] == e.group
        assert e.load().X.shape == (30, 5)
    assert len(pool.local) == 9  # small on purpose
    for name in ("local", "validation", "test"):
        assert set(pool.split(name).y.tolist()) == {0, 1, 2}
    pool.check_labels()


def test_seed_fixes_everything():
    a, b = make_toy_pool(seed=3), make_toy_pool(seed=3)
    for ea, eb in zip(a.entries, b.entries, strict=True):
        np.testing.assert_array_equal(ea.load().X, eb.load().X)
        assert ea.meta == eb.meta
    np.testing.assert_array_equal(a.local.X, b.local.X)
    assert not np.array_equal(make_toy_pool(seed=4).local.X, a.local.X)


def test_relevant_group_can_be_chosen():
    pool = make_toy_pool(relevant_group=2)
    assert [e.group for e in pool.entries if e.meta["relevant"]] == ["g2"] * 3


@pytest.mark.parametrize(
    "kwargs",
    [{"n_groups": 0}, {"n_classes": 1}, {"n_local": 2}, {"relevant_group": 4}],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_toy_pool(**kwargs)


@pytest.mark.parametrize("seed", [0, 1])
def test_known_answer(seed):
    # Global (the relevant datasets) beats Local, and Local + any relevant dataset beats
    # Local + the average harmful one.
    pool = make_toy_pool(seed=seed)
    ev = LogisticEvaluator(pool)
    relevant = [e.id for e in pool.entries if e.meta["relevant"]]
    harmful = [e.id for e in pool.entries if not e.meta["relevant"]]
    assert ev.score(relevant, 0, "test") > ev.score([], 0, "test") + 0.05
    good = [ev.score([d], 0, "validation") for d in relevant]
    bad = [ev.score([d], 0, "validation") for d in harmful]
    assert min(good) > np.mean(bad) + 0.1


def test_write_toy_manifest(tmp_path):
    path = write_toy_manifest(tmp_path, n_groups=2, n_per_dataset=20, seed=5)
    assert path == tmp_path / "manifest.toml"
    m = load_manifest(path)
    m.check()
    original = make_toy_pool(n_groups=2, n_per_dataset=20, seed=5)
    assert m.pool.dataset_ids == original.dataset_ids
    assert [e.meta for e in m.pool.entries] == [e.meta for e in original.entries]
    assert m.evaluator == {"kind": "logistic"}
    assert isinstance(m.make_evaluator(), LogisticEvaluator)
