"""Tests of the offline Digit-Five-like suite (tiny builds, cached under tmp paths)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dashsel.errors import DashselError, DataError
from dashsel_bench import digits5 as d5
from dashsel_bench.common import relevant_ids
from dashsel_bench.suites import get_suite

TINY = {d: (200, 50) for d in d5.DOMAINS}


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("d5cache"))


@pytest.fixture()
def suite(cache_root: str, monkeypatch: pytest.MonkeyPatch) -> d5.Digits5:
    monkeypatch.setenv("DASHSEL_CACHE", cache_root)
    return d5.Digits5(sizes=TINY, local_size=20, val_size=40)


@pytest.fixture()
def domains(suite: d5.Digits5) -> dict[str, d5.DomainImages]:
    return suite.domains()


def test_domains_shapes_balance_and_disjoint_parts(domains: dict[str, d5.DomainImages]) -> None:
    assert list(domains) == list(d5.DOMAINS)
    for name, dom in domains.items():
        assert dom.train_images.shape == (200, 32, 32, 3)
        assert dom.test_images.shape == (50, 32, 32, 3)
        assert dom.train_images.dtype == np.uint8
        assert np.bincount(dom.train_labels, minlength=10).min() >= 18, name
        train = {im.tobytes() for im in dom.train_images}
        assert not any(im.tobytes() in train for im in dom.test_images), name
    # mnist is grey (three equal channels); mnistm is coloured
    m = domains["mnist"].train_images
    assert np.array_equal(m[..., 0], m[..., 2])
    assert not np.array_equal(
        domains["mnistm"].train_images[..., 0], domains["mnistm"].train_images[..., 2]
    )


def test_build_is_deterministic_and_seeded() -> None:
    small = {d: (20, 10) for d in d5.DOMAINS}
    a = d5.build_domains(cache=False, seed=3, sizes=small)
    b = d5.build_domains(cache=False, seed=3, sizes=small)
    c = d5.build_domains(cache=False, seed=4, sizes=small)
    for name in d5.DOMAINS:
        assert np.array_equal(a[name].train_images, b[name].train_images)
    assert not np.array_equal(a["syn"].train_images, c["syn"].train_images)


def test_cache_is_reused_and_rebuilt(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSEL_CACHE", str(tmp_path))
    small = {d: (20, 10) for d in d5.DOMAINS}
    first = d5.build_domains(seed=1, sizes=small)
    folder = d5.domains_dir(1, {**d5.DEFAULT_SIZES, **small})
    assert d5.VERSION in str(folder)
    assert sorted(p.name for p in folder.glob("*.npz")) == sorted(f"{d}.npz" for d in d5.DOMAINS)

    def boom(*args, **kwargs):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(d5, "_build_syn", boom)
    again = d5.build_domains(seed=1, sizes=small)
    assert np.array_equal(first["syn"].test_images, again["syn"].test_images)
    with pytest.raises(AssertionError, match="rebuilt"):
        d5.build_domains(seed=1, sizes=small, rebuild=True)


def test_pool_layout(suite: d5.Digits5) -> None:
    pool = suite.make_pool("svhn", features="raw")
    assert pool.name == "digits5-svhn"
    assert [e.id for e in pool.entries][:4] == ["mnist0", "mnist1", "mnist2", "svhn0"]
    assert len(pool) == 15 and pool.hierarchy.n_groups == 5
    assert relevant_ids(pool) == ["svhn0", "svhn1", "svhn2"]
    sizes = {e.meta["n"] for e in pool.entries}
    assert sizes == {len(pool.dataset("mnist0"))}
    e = pool.entry("syn1")
    assert e.group == "syn" and e.meta["domain"] == "syn" and e.meta["subset"] == 1
    assert e.meta["image_shape"] == d5.IMAGE_SHAPE
    pool.check_labels()
    # local, validation, subsets and test of the target never share an image
    rows = [pool.local.X, pool.validation.X, pool.test.X] + [
        pool.dataset(i).X for i in relevant_ids(pool)
    ]
    seen: set[bytes] = set()
    for X in rows:
        keys = {r.tobytes() for r in X}
        assert not keys & seen
        seen |= keys
    assert len(pool.local) == 20 and len(pool.validation) == 40 and len(pool.test) == 50


def test_raw_layout_is_channel_first(suite: d5.Digits5, domains) -> None:
    pool = suite.make_pool("mnistm", features="raw")
    back = pool.test.X.reshape(-1, *d5.IMAGE_SHAPE).transpose(0, 2, 3, 1) * 255
    assert np.allclose(back, domains["mnistm"].test_images, atol=1e-3)


def test_same_subset_in_every_target_pool(suite: d5.Digits5) -> None:
    a = suite.make_pool("mnist").dataset("syn0")
    b = suite.make_pool("optdigits").dataset("syn0")
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    c = suite.make_pool("optdigits", seed=1).dataset("syn0")
    assert not np.array_equal(a.y, c.y) or not np.array_equal(a.X, c.X)


def test_local_fraction_subset_size_grouping(suite: d5.Digits5) -> None:
    pool = suite.make_pool("mnist", local_fraction=0.5, n_subsets=2, subset_size=30)
    assert len(pool.local) == 10 and set(pool.local.y.tolist()) == set(range(10))
    assert len(pool) == 10 and {e.meta["n"] for e in pool.entries} == {30}
    mixed = suite.make_pool("mnist", grouping="mixed")
    assert mixed.entry("mnist2").group == "mixed-svhn"
    with pytest.raises(DataError, match="subset_size"):
        suite.make_pool("mnist", subset_size=10_000)
    with pytest.raises(DashselError, match="target"):
        suite.make_pool("usps")
    with pytest.raises(DashselError, match="local_fraction"):
        suite.make_pool("mnist", local_fraction=0.0)


def test_distractors(suite: d5.Digits5) -> None:
    pool = suite.make_pool("syn", n_subsets=2, distractors=4)
    assert len(pool) == 2 * 5 + 2 * 4 and pool.hierarchy.n_groups == 9
    dis = [e for e in pool.entries if e.id.startswith("distractor")]
    assert [e.meta["kind"] for e in dis[::2]] == ["noisy", "imbalanced", "shuffled", "noisy"]
    assert not any(e.meta["relevant"] for e in dis)
    imb = pool.entry("distractor1_0")
    assert set(pool.dataset(imb.id).y.tolist()) <= set(imb.meta["classes"])
    val = {r.tobytes() for r in pool.validation.X}
    assert not any(r.tobytes() in val for e in dis for r in pool.dataset(e.id).X)


def test_same_domain_data_beats_local(suite: d5.Digits5) -> None:
    from sklearn.linear_model import LogisticRegression

    pool = suite.make_pool("mnist")
    L, T = pool.local, pool.test
    local = LogisticRegression(max_iter=300).fit(L.X, L.y).score(T.X, T.y)
    G = [pool.dataset(i) for i in relevant_ids(pool)]
    X = np.vstack([L.X] + [g.X for g in G])
    y = np.concatenate([L.y] + [g.y for g in G])
    glob = LogisticRegression(max_iter=300).fit(X, y).score(T.X, T.y)
    assert glob > local + 0.05


def test_registry() -> None:
    s = get_suite("digits5")
    assert s.name == "digits5" and s.targets == ("mnist", "svhn", "optdigits", "mnistm", "syn")
    with pytest.raises(DashselError, match="unknown benchmark suite"):
        get_suite("nope")


def test_traps_layout_and_labels(suite: d5.Digits5) -> None:
    plain = suite.make_pool("svhn", n_subsets=4)
    pool = suite.make_pool("svhn", n_subsets=4, traps=True)
    traps = [e for e in pool.entries if e.meta.get("trap")]
    # max(2, 4 // 2) = 2 of each kind: one in a group of its own, one mixed into an honest group.
    assert [e.meta["trap"] for e in traps] == [k for k in d5.TRAP_KINDS for _ in range(2)]
    assert len(pool) == len(plain) + len(traps)
    assert relevant_ids(pool) == relevant_ids(plain)  # Global is unchanged
    own = [e for e in traps if "host" not in e.meta]
    mixed = [e for e in traps if "host" in e.meta]
    assert {e.group for e in own} == {f"trap-{k}" for k in d5.TRAP_KINDS}
    assert all(e.group == e.meta["host"] and e.group in d5.DOMAINS for e in mixed)
    # The honest candidates are the same data as without traps.
    for d in plain.dataset_ids:
        assert np.array_equal(pool.dataset(d).X, plain.dataset(d).X)
    dom = suite.domains()["svhn"]
    F, _ = suite.features("svhn")
    rows = {r.tobytes(): int(y) for r, y in zip(F, dom.train_labels, strict=True)}
    wrong = pool.dataset("trap-mislabelled0")
    truth = np.array([rows[r.tobytes()] for r in wrong.X])  # target-domain images
    assert np.mean(truth != wrong.y) > 0.5  # most labels wrong
    few = pool.entry("trap-fewclass0")
    assert set(pool.dataset(few.id).y.tolist()) <= set(few.meta["classes"])
    assert len(few.meta["classes"]) == d5.TRAP_CLASSES
    dup = pool.entry("trap-duplicate0")
    original = pool.dataset(dup.meta["copy_of"])
    assert dup.meta["copy_of"].startswith("svhn")
    assert np.array_equal(pool.dataset(dup.id).y, original.y)
    gap = np.abs(pool.dataset(dup.id).X - original.X)
    assert 0 < gap.mean() < 0.2 * np.abs(original.X).mean()  # near, not exact


def test_traps_follow_regrouping(suite: d5.Digits5) -> None:
    for grouping in ("mixed", "cross"):
        pool = suite.make_pool("mnist", n_subsets=2, traps=True, grouping=grouping)
        groups = {e.id: e.group for e in pool.entries}
        assert groups["trap-mislabelled0"] == "trap-mislabelled"
        assert groups["trap-mislabelled1"].startswith(grouping)


def test_build_caches_the_domains_and_rebuild_starts_over(suite) -> None:
    # What `dashsel data build digits5` runs: every domain built now, into the cache folder.
    text = suite.build()
    folder = Path(text.rsplit(" in ", 1)[1])  # the message names the cache folder
    assert folder.is_dir() and any(folder.iterdir())
    assert all(name in text for name in d5.DOMAINS)
    marker = folder / "stale"
    marker.write_text("x")
    suite.build(rebuild=True)  # deletes the cached copy first
    assert folder.exists() and not marker.exists()
