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
