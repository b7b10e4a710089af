"""Hierarchy: validation, cached group structure, fingerprint, pickling."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashsel.errors import DashselError, UnknownDatasetError
from dashsel.hierarchy import Hierarchy


def test_groups_in_first_appearance_order_and_index() -> None:
    h = Hierarchy(["a", "b", "c", "d"], ["y", "x", "y", "z"])
    assert h.group_ids == ("y", "x", "z") and h.n_groups == 3
    assert h.group_index.tolist() == [0, 1, 0, 2]
    assert h.members("y") == ("a", "c")
    assert h.index("c") == 2 and "c" in h and "q" not in h and ["a"] not in h
    assert h.group_of("d") == "z"


def test_group_ids_is_computed_once() -> None:
    h = Hierarchy([f"d{i}" for i in range(1000)], [f"g{i % 7}" for i in range(1000)])
    assert h.group_ids is h.group_ids
    assert h.group_index is h.group_index
    assert not h.group_index.flags.writeable


@pytest.mark.parametrize(
    ("ids", "groups", "message"),
    [
        (["a", "b"], ["g"], "2 dataset ids but 1 group labels"),
        ([], [], "no datasets"),
        (["a", ""], ["g", "g"], "dataset #1 has an empty id"),
        (["a", "b", "a"], ["g", "g", "g"], "'a' appears twice"),
        (["a", "b"], ["g", ""], "dataset 'b' has an empty group"),
    ],
)
def test_invalid_hierarchies_are_one_line_errors(ids, groups, message) -> None:
    with pytest.raises(DashselError, match=message) as info:
        Hierarchy(ids, groups)
    assert "\n" not in str(info.value)


def test_unknown_ids_and_groups() -> None:
    h = Hierarchy(["a"], ["g"])
    with pytest.raises(UnknownDatasetError, match="unknown dataset id 'b'"):
        h.index("b")
    with pytest.raises(UnknownDatasetError, match="unknown dataset id"):
        h.index(["a"])  # type: ignore[arg-type]
    with pytest.raises(UnknownDatasetError, match="unknown group 'q'"):
        h.members("q")


def test_non_string_ids_become_strings() -> None:
    h = Hierarchy([1, np.str_("b")], ["g", 2])  # type: ignore[list-item]
    assert h.dataset_ids == ("1", "b") and h.groups == ("g", "2")
    assert all(type(d) is str for d in (*h.dataset_ids, *h.groups))


def test_immutable_equal_and_picklable() -> None:
    h = Hierarchy(["a", "b"], ["g", "h"])
    with pytest.raises(AttributeError):
        h.dataset_ids = ("x",)  # type: ignore[misc]
    assert h.group_ids == ("g", "h")  # fills the cache: it must not travel
    h2 = pickle.loads(pickle.dumps(h))
    assert h2 == h and hash(h2) == hash(h) and h2.group_ids == ("g", "h")
    assert h != Hierarchy(["a", "b"], ["g", "g"])


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=4), st.text(min_size=1, max_size=3)),
        min_size=1,
        max_size=30,
        unique_by=lambda t: t[0],
    )
)
def test_fingerprint_is_the_per_dataset_hash(pairs) -> None:
    """The fast (joined) fingerprint equals the original dataset-by-dataset digest, so
    journals written before it still match their pool."""
    ids, groups = zip(*pairs, strict=True)
    h = Hierarchy(ids, groups)
    ref = hashlib.sha256()
    for d, g in pairs:
        ref.update(f"{d}\x00{g}\x01".encode())
    assert h.fingerprint() == ref.hexdigest()[:16]
    assert h.group_ids == tuple(dict.fromkeys(groups))
    pos = {g: i for i, g in enumerate(h.group_ids)}
    assert h.group_index.tolist() == [pos[g] for g in groups]


def test_from_codes_shares_group_strings_and_orders_groups() -> None:
    h = Hierarchy.from_codes(["a", "b", "c", "d"], np.array([2, 0, 2, 1]), ["x", "y", "z"])
    assert h.groups == ("z", "x", "z", "y")
    assert h.group_ids == ("z", "x", "y") and h.group_index.tolist() == [0, 1, 0, 2]
    assert h.groups[0] is h.groups[2]
    assert h == Hierarchy(["a", "b", "c", "d"], ["z", "x", "z", "y"])
    with pytest.raises(DashselError, match="out of range"):
        Hierarchy.from_codes(["a"], np.array([3]), ["x"])


def test_positions_of_many_ids() -> None:
    h = Hierarchy(["a", "b", "c"], ["g", "g", "h"])
    assert h.positions(["c", "zz", "a"]).tolist() == [2, -1, 0]


def test_from_codes_keeps_the_id_column_and_checks_groups_on_names() -> None:
    col = pd.array(["a", "b", "c"], dtype="string")
    h = Hierarchy.from_codes(("a", "b", "c"), np.array([1, 0, 1]), ["x", "y"], id_column=col)
    assert h.id_column() is col
    assert h == Hierarchy(["a", "b", "c"], ["y", "x", "y"])
    assert Hierarchy(["a"], ["g"]).id_column() is None
    # pickled as its tuples: the column is a cache and does not travel
    assert pickle.loads(pickle.dumps(h)).id_column() is None
    with pytest.raises(DashselError, match="id column of 2 rows for 3"):
        Hierarchy.from_codes(("a", "b", "c"), np.array([0, 0, 0]), ["x"], id_column=col[:2])
    with pytest.raises(DashselError, match="dataset 'b' has an empty group"):
        Hierarchy.from_codes(["a", "b"], np.array([0, 1]), ["x", ""])
    # an unused empty name is no group of any dataset
    assert Hierarchy.from_codes(["a"], np.array([0]), ["x", ""]).group_ids == ("x",)
    with pytest.raises(DashselError, match="'b' appears twice"):
        Hierarchy.from_codes(["a", "b", "b"], np.array([0, 0, 0]), ["x"])
    with pytest.raises(DashselError, match="empty id"):
        Hierarchy.from_codes(["a", ""], np.array([0, 0]), ["x"])
    # numbers as group names become text, as in the constructor
    assert Hierarchy.from_codes(["a"], np.array([0]), [7]).groups == ("7",)


# --- a hierarchy built from a text column (the pool loader's table of datasets) ------------


def _arrow_column(ids: list[str | None], *, chunks: int = 1, offset: int = 0) -> object:
    """A pandas text column backed by Arrow, in ``chunks`` pieces, the first ``offset`` items
    of its data sliced off (as a slice of a larger table gives)."""
    pa = pytest.importorskip("pyarrow")
    data = pa.array(["pad"] * offset + ids, type=pa.large_string()).slice(offset)
    step = -(-len(ids) // chunks)
    pieces = [data.slice(i, step) for i in range(0, len(ids), step)]
    return pd.arrays.ArrowStringArray(pa.chunked_array(pieces, type=pa.large_string()))


def _lazy_and_eager(ids: list[str], groups: list[str], **kw) -> tuple[Hierarchy, Hierarchy]:
    codes, names = pd.factorize(pd.Series(groups), sort=False)
    lazy = Hierarchy.from_codes(None, codes, list(names), id_column=_arrow_column(ids, **kw))
    return lazy, Hierarchy(ids, groups)


@pytest.mark.parametrize(("chunks", "offset"), [(1, 0), (3, 0), (4, 2)])
def test_from_a_text_column_behaves_as_the_eager_hierarchy(chunks, offset) -> None:
    ids = [f"d{i}" for i in range(50)] + ["é", "日本", "ax", "d1x", "1d"]
    groups = [f"g{(i * 7) % 6}" for i in range(len(ids))]
    h, eager = _lazy_and_eager(ids, groups, chunks=chunks, offset=offset)
    # single ids are read from the column: no tuple of all ids is made for these
    assert h.id_at(3) == "d3" and h.index("d3") == 3 and h.group_of("d3") == groups[3]
    assert h.dataset_ids[-1] == "1d" and h.dataset_ids[:3] == ("d0", "d1", "d2")
    assert h.dataset_ids[np.int64(51)] == "日本" and h.groups[2] == groups[2]
    assert h.members("g0") == eager.members("g0")
    assert h.dataset_ids._tuple is None and h.groups._tuple is None  # type: ignore[attr-defined]
    with pytest.raises(IndexError):
        h.dataset_ids[len(ids)]
    with pytest.raises(TypeError):
        h.dataset_ids["a"]  # type: ignore[index]
    # the tuple's behaviour, and the same hierarchy as the eager one
    for lazy, tup in ((h.dataset_ids, tuple(ids)), (h.groups, tuple(groups))):
        assert lazy == tup and tup == lazy and (lazy != tup) is False and lazy != list(tup)
        assert hash(lazy) == hash(tup) and len(lazy) == len(tup) and list(lazy) == list(tup)
        assert lazy[5:40:3] == tup[5:40:3] and lazy[::-1] == tup[::-1]
        assert list(reversed(lazy)) == list(reversed(tup)) and tup[7] in lazy and "?" not in lazy
        assert lazy.index(tup[9]) == tup.index(tup[9]) and lazy.count(tup[0]) == tup.count(tup[0])
        assert lazy + ("z",) == tup + ("z",) and ("z",) + lazy == ("z",) + tup  # noqa: RUF005
        assert np.asarray(lazy).tolist() == list(tup) and repr(lazy) == repr(tup)
        assert pickle.loads(pickle.dumps(lazy)) == tup
    assert all(type(d) is str for d in (*h.dataset_ids, *h.groups))
    assert h == eager and eager == h and hash(h) == hash(eager)
    assert h.fingerprint() == eager.fingerprint()
    assert h.group_ids == eager.group_ids
    assert h.group_index.tolist() == eager.group_index.tolist()
    assert h.positions(["d7", "nope", "1d"]).tolist() == [7, -1, len(ids) - 1]
    assert h != Hierarchy(ids[::-1], groups[::-1])


def test_a_text_column_hierarchy_pickles_as_the_eager_one() -> None:
    ids = [f"x{i}" for i in range(30)]
    h, eager = _lazy_and_eager(ids, [f"g{i % 4}" for i in range(30)], chunks=2)
    back = pickle.loads(pickle.dumps(h))
    assert back == h and back == eager and type(back.dataset_ids) is tuple
    assert back.fingerprint() == h.fingerprint() and back.group_ids == h.group_ids
    assert back.id_column() is None  # the column is a cache and does not travel


@pytest.mark.parametrize(
    "ids",
    [
        ["a", "b", "c", "b", "a"],  # the first repeat in pool order is named
        ["a", "", "a"],  # an empty id before the repeat
        ["a", "a", ""],
        ["é", "x", "é"],
        [f"d{i}" for i in range(3000)] + ["d1234"],  # more than one chunk of rows hashed
    ],
)
def test_a_text_column_with_bad_ids_gives_the_eager_error(ids) -> None:
    groups = ["g"] * len(ids)
    with pytest.raises(DashselError) as eager:
        Hierarchy(ids, groups)
    for chunks in (1, 2):
        with pytest.raises(DashselError) as lazy:
            _lazy_and_eager(ids, groups, chunks=chunks)
        assert str(lazy.value) == str(eager.value) and "\n" not in str(lazy.value)


def test_a_missing_value_in_the_id_column_is_an_empty_id() -> None:
    col = _arrow_column(["a", None, "b"])
    with pytest.raises(DashselError, match="dataset #1 has an empty id"):
        Hierarchy.from_codes(None, np.zeros(3, dtype=np.intp), ["g"], id_column=col)


def test_equal_hashes_fall_back_to_the_exact_check(monkeypatch) -> None:
    import dashsel.hierarchy as hierarchy

    # Every id hashed alike: the check must not take equal hashes for repeated ids.
    monkeypatch.setattr(hierarchy, "_text_hashes", lambda chunks: np.zeros(4, dtype=np.uint64))
    h, eager = _lazy_and_eager(["a", "b", "c", "d"], ["g", "g", "h", "h"])
    assert h == eager and h.dataset_ids == ("a", "b", "c", "d")
    with pytest.raises(DashselError, match="'c' appears twice"):
        _lazy_and_eager(["a", "c", "b", "c"], ["g"] * 4)


def test_other_id_columns_are_read_into_a_tuple() -> None:
    ids = ["a", "b", "c"]
    for col in (pd.array(ids, dtype="string[python]"), pd.array(ids, dtype=object)):
        h = Hierarchy.from_codes(None, np.array([0, 1, 0]), ["x", "y"], id_column=col)
        assert type(h.dataset_ids) is tuple and h == Hierarchy(ids, ["x", "y", "x"])
        assert h.id_column() is col
    with pytest.raises(DashselError, match="needs dataset ids or an id column"):
        Hierarchy.from_codes(None, np.array([0]), ["x"])
    with pytest.raises(DashselError, match="3 dataset ids but 2 group labels"):
        Hierarchy.from_codes(None, np.array([0, 0]), ["x"], id_column=_arrow_column(ids))


def test_group_codes_in_any_order_are_renumbered_by_first_appearance() -> None:
    codes = np.array([2, 2, 0, 3, 0, 2])  # code 1 unused, not in first-appearance order
    col = _arrow_column(["a", "b", "c", "d", "e", "f"])
    h = Hierarchy.from_codes(None, codes, ["w", "x", "y", "z"], id_column=col)
    assert h.group_ids == ("y", "w", "z") and h.group_index.tolist() == [0, 0, 1, 2, 1, 0]
    assert h.groups == ("y", "y", "w", "z", "w", "y")


@pytest.mark.parametrize("block", [1, 7, 1 << 18])
def test_text_hashes_are_the_polynomial_hash_of_the_utf8_bytes(block) -> None:
    from dashsel.hierarchy import _arrow_text_chunks, _text_hashes

    ids = ["a", "ab", "ba", "é", "日本語のid", "x" * 40, "d10", "d1"]
    chunks = _arrow_text_chunks(_arrow_column(ids, chunks=3, offset=1))
    p = 0x9E3779B97F4A7C15
    expected = [
        sum((b + 1) * pow(p, j + 1, 1 << 64) for j, b in enumerate(d.encode())) % (1 << 64)
        for d in ids
    ]
    assert _text_hashes(chunks, block=block).tolist() == expected
