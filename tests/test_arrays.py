"""Tests of dashsel.arrays: reading .npz/.csv/.parquet and the error messages."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dashsel.arrays import data_fingerprint, file_digest, load_arrays, save_npz, split_digest
from dashsel.errors import DashselError, DataError
from dashsel.pool import ArraySplit, Pool

UNPICKLED: list[str] = []


def _boom() -> str:
    UNPICKLED.append("ran")
    return "boom"


class Boom:
    """Unpickling this runs code; loading a pool file must never do that."""

    def __reduce__(self):
        return (_boom, ())


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_arrays(path, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def _frame(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {"a": np.arange(n, dtype=float), "b": np.arange(n) * 2, "label": [0, 1] * (n // 2)}
    )


# --- round trips -------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    X=hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8]),
        shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5),
        elements={"allow_nan": False, "allow_infinity": False},
    ),
    text_labels=st.booleans(),
)
def test_npz_round_trip(tmp_path_factory, X, text_labels):
    n = X.shape[0]
    y = np.array([f"c{i % 3}" for i in range(n)]) if text_labels else np.arange(n) % 3
    path = tmp_path_factory.mktemp("npz") / "d.npz"
    save_npz(path, ArraySplit(X, y))
    got = load_arrays(path)
    assert got.X.dtype == X.dtype and got.y.dtype == y.dtype
    np.testing.assert_array_equal(got.X, X)
    np.testing.assert_array_equal(got.y, y)


def test_save_npz_keeps_the_given_name(tmp_path):
    path = save_npz(tmp_path / "sub" / "d.data.npz", ArraySplit(np.ones((2, 2)), np.arange(2)))
    assert path.is_file() and path.name == "d.data.npz"


def test_npz_custom_keys(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.ones((3, 2)), labels=np.arange(3))
    got = load_arrays(tmp_path / "d.npz", x_key="features", y_key="labels")
    assert got.X.shape == (3, 2)


def test_csv_round_trip_with_text_labels(tmp_path):
    frame = _frame()
    frame["label"] = ["cat", "dog", "cat", "dog"]
    frame.to_csv(tmp_path / "d.csv", index=False)
    got = load_arrays(tmp_path / "d.csv")
    np.testing.assert_array_equal(got.X, frame[["a", "b"]].to_numpy(dtype=float))
    assert got.y.tolist() == ["cat", "dog", "cat", "dog"]
    assert got.y.dtype.kind == "U"  # not object


def test_csv_custom_label_column(tmp_path):
    _frame().rename(columns={"label": "target"}).to_csv(tmp_path / "d.csv", index=False)
    assert load_arrays(tmp_path / "d.csv", label_column="target").X.shape == (4, 2)


def test_parquet_round_trip(tmp_path):
    pytest.importorskip("pyarrow")
    frame = _frame(6)
    frame.to_parquet(tmp_path / "d.parquet")
    got = load_arrays(tmp_path / "d.parquet")
    assert got.X.shape == (6, 2)
    assert got.y.tolist() == [0, 1, 0, 1, 0, 1]


# --- errors ------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.npz")


def test_unknown_extension(tmp_path):
    (tmp_path / "d.txt").write_text("1,2\n")
    assert "'.txt'" in _error(tmp_path / "d.txt")


@pytest.mark.parametrize("key", ["X", "y"])
def test_npz_missing_array(tmp_path, key):
    arrays = {"X": np.ones((2, 2)), "y": np.arange(2)}
    del arrays[key]
    np.savez(tmp_path / "d.npz", **arrays)
    assert f"missing array {key!r}" in _error(tmp_path / "d.npz")


def test_object_npz_is_refused_without_unpickling(tmp_path):
    X = np.empty((2, 1), dtype=object)
    X[0, 0], X[1, 0] = Boom(), Boom()
    np.savez(tmp_path / "d.npz", X=X, y=np.arange(2))
    msg = _error(tmp_path / "d.npz")
    assert "'X'" in msg and "object array" in msg
    assert UNPICKLED == []


def test_npz_mismatched_lengths(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((3, 2)), y=np.arange(2))
    assert "3 rows but there are 2 labels" in _error(tmp_path / "d.npz")


def test_npz_zero_rows(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((0, 2)), y=np.arange(0))
    assert "no rows" in _error(tmp_path / "d.npz")


def test_npz_one_dimensional_features(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones(3), y=np.arange(3))
    assert "'X' must be at least 2-D" in _error(tmp_path / "d.npz")


def test_npz_non_finite_features(tmp_path):
    X = np.ones((3, 2))
    X[2, 1] = np.inf
    np.savez(tmp_path / "d.npz", X=X, y=np.arange(3))
    assert "NaN or infinite" in _error(tmp_path / "d.npz")


def test_npz_text_features(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.array([["a", "b"]]), y=np.arange(1))
    assert "not numeric" in _error(tmp_path / "d.npz")


def test_not_a_zip(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"not a zip at all")
    assert "not a readable .npz" in _error(tmp_path / "d.npz")


def test_csv_missing_label_column(tmp_path):
    _frame().drop(columns="label").to_csv(tmp_path / "d.csv", index=False)
    msg = _error(tmp_path / "d.csv")
    assert "missing label column 'label'" in msg and "a, b" in msg


def test_csv_non_numeric_feature_names_the_column(tmp_path):
    frame = _frame()
    frame["colour"] = ["red", "green", "blue", "red"]
    frame.to_csv(tmp_path / "d.csv", index=False)
    assert "feature column 'colour' is not numeric" in _error(tmp_path / "d.csv")


def test_csv_nan_feature_names_column_and_line(tmp_path):
    frame = _frame()
    frame.loc[2, "b"] = np.nan
    frame.to_csv(tmp_path / "d.csv", index=False)
    assert "column 'b' is empty or NaN on line 4" in _error(tmp_path / "d.csv")


def test_csv_infinite_feature_names_column_and_line(tmp_path):
    frame = _frame()
    frame.loc[1, "a"] = np.inf
    frame.to_csv(tmp_path / "d.csv", index=False)
    assert "line 3, column 'a'" in _error(tmp_path / "d.csv")


def test_csv_empty_label(tmp_path):
    (tmp_path / "d.csv").write_text("a,label\n1,0\n2,\n")
    assert "label column 'label' is empty on line 3" in _error(tmp_path / "d.csv")


def test_csv_header_only(tmp_path):
    (tmp_path / "d.csv").write_text("a,label\n")
    assert "no rows" in _error(tmp_path / "d.csv")


def test_csv_empty_file(tmp_path):
    (tmp_path / "d.csv").write_text("")
    assert "empty file" in _error(tmp_path / "d.csv")


def test_csv_label_only(tmp_path):
    (tmp_path / "d.csv").write_text("label\n1\n")
    assert "no feature columns" in _error(tmp_path / "d.csv")


def test_parquet_corrupt(tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "d.parquet").write_bytes(b"garbage")
    assert "not a readable parquet" in _error(tmp_path / "d.parquet")


def test_save_npz_refuses_object_arrays(tmp_path):
    split = ArraySplit(np.array([[1]], dtype=object), np.arange(1))
    with pytest.raises(DataError, match="object arrays"):
        save_npz(tmp_path / "d.npz", split)


def test_errors_are_dashsel_errors():
    assert issubclass(DataError, DashselError)


# --- fingerprints ------------------------------------------------------------------------------
def test_file_digest_follows_content(tmp_path):
    path = tmp_path / "d.npz"
    save_npz(path, ArraySplit(np.zeros((200, 200)), np.zeros(200)))
    before = file_digest(path)
    X = np.zeros((200, 200))
    X[100, 100] = 1.0  # a change in the middle of a file larger than two chunks
    save_npz(path, ArraySplit(X, np.zeros(200)))
    assert file_digest(path) != before


def test_data_fingerprint_sees_changed_arrays_and_is_picklable():
    def pool(v: float) -> Pool:
        return Pool.from_arrays(
            {"a": (np.full((2, 2), v), np.arange(2))}, {"a": "g"}, local=(np.ones((2, 2)), [0, 1])
        )

    assert data_fingerprint(pool(0.0)) == data_fingerprint(pool(0.0))
    assert data_fingerprint(pool(0.0)) != data_fingerprint(pool(1.0))
    split = ArraySplit(np.ones((2, 2)), np.arange(2))
    assert split_digest(pickle.loads(pickle.dumps(split))) == split_digest(split)


# --- size limits (issue 10, item 9) --------------------------------------------------------------
def _deflated_zeros_npz(path: Path, shape: tuple[int, ...], dtype: str = "<f8") -> Path:
    """An .npz whose 'X' member is ``shape`` zeros, deflated, written without ever holding
    the array: each 1 MiB of zeros compresses to the same independent deflate block (a full
    flush resets the compressor), so the member is that block repeated."""
    import io
    import struct
    import zlib

    n_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    assert n_bytes % (1 << 20) == 0
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    head = comp.compress(header.getvalue()) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    assert comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH) == block
    tail = comp.flush()
    crc = zlib.crc32(header.getvalue())
    for _ in range(n_bytes >> 20):
        crc = zlib.crc32(chunk, crc)
    count = n_bytes >> 20
    csize = len(head) + count * len(block) + len(tail)
    usize = len(header.getvalue()) + n_bytes
    name = b"X.npy"
    with path.open("wb") as fh:
        fh.write(
            struct.pack(
                "<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 33, crc, csize, usize, len(name), 0
            )
            + name
        )
        fh.write(head)
        for _ in range(count):
            fh.write(block)
        fh.write(tail)
        cd_offset = fh.tell()
        central = (
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0,
                8,
                0,
                33,
                crc,
                csize,
                usize,
                len(name),
                0,
                0,
                0,
                0,
                0,
                0,
            )
            + name
        )
        fh.write(central)
        fh.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), cd_offset, 0))
    import zipfile

    with zipfile.ZipFile(path, "a") as z:  # a small, honest label array
        buf = io.BytesIO()
        np.save(buf, np.zeros(shape[0], dtype=np.int8))
        z.writestr("y.npy", buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return path


@pytest.fixture(scope="module")
def gib_of_zeros(tmp_path_factory) -> Path:
    return _deflated_zeros_npz(tmp_path_factory.mktemp("bomb") / "bomb.npz", (2**24, 8))


def test_a_small_file_declaring_a_gib_is_refused_before_allocation(gib_of_zeros, monkeypatch):
    import tracemalloc

    assert gib_of_zeros.stat().st_size < 1_500_000  # about 1.1 MB on disk
    tracemalloc.start()
    try:
        msg = _error(gib_of_zeros, max_bytes=64 * 2**20)
        # numpy reports its allocations to tracemalloc: nothing near 1 GiB was allocated.
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20
    finally:
        tracemalloc.stop()
    assert "array 'X' declares shape (16777216, 8) of float64 = 1.0 GiB" in msg
    assert "over the limit of 64.0 MiB" in msg and "DASHSEL_MAX_ARRAY_BYTES" in msg
    monkeypatch.setenv("DASHSEL_MAX_ARRAY_BYTES", str(2**29))
    assert "over the limit of 512.0 MiB" in _error(gib_of_zeros)


def test_header_inspection_reads_no_data(gib_of_zeros):
    from dashsel.arrays import inspect_arrays

    x, y = inspect_arrays(gib_of_zeros, max_bytes=2**31)
    assert x.shape == (2**24, 8) and x.dtype == np.float64 and x.nbytes == 2**30
    assert y.shape == (2**24,)


def test_a_header_declaring_more_than_the_member_holds_is_refused(tmp_path):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10)}
    )
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        z.writestr("X.npy", header.getvalue() + bytes(80))
        z.writestr("y.npy", b"")
    assert "truncated or forged header" in _error(tmp_path / "d.npz")


def test_three_dimensional_arrays_count_every_axis(tmp_path):
    X = np.zeros((40, 16, 16), dtype=np.float32)  # 40 KiB
    save_npz(tmp_path / "d.npz", ArraySplit(X, np.arange(40) % 2))
    msg = _error(tmp_path / "d.npz", max_bytes=30_000)
    assert "declares shape (40, 16, 16) of float32 = 40.0 KiB (40960 bytes)" in msg
    assert load_arrays(tmp_path / "d.npz", max_bytes=40_960).X.shape == (40, 16, 16)


def test_object_dtype_is_refused_from_the_header(tmp_path):
    from dashsel.arrays import inspect_arrays

    np.savez(tmp_path / "d.npz", X=np.array([[Boom()]], dtype=object), y=np.arange(1))
    with pytest.raises(DataError, match="object array, which would need pickle"):
        inspect_arrays(tmp_path / "d.npz")
    assert UNPICKLED == []


def test_empty_npz_is_one_line(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"")
    assert "empty file" in _error(tmp_path / "d.npz")
    np.savez(tmp_path / "e.npz")  # a valid archive with nothing in it
    assert "missing array 'X' (the file holds: nothing)" in _error(tmp_path / "e.npz")


def test_csv_rows_are_capped(tmp_path, monkeypatch):
    _frame(8).to_csv(tmp_path / "d.csv", index=False)
    assert "more than 3 rows" in _error(tmp_path / "d.csv", max_rows=3)
    # The byte cap limits rows too: 3 columns of 8 bytes, 100 bytes -> 4 rows.
    assert "over the limit of 4 rows" in _error(tmp_path / "d.csv", max_bytes=100)
    monkeypatch.setenv("DASHSEL_MAX_ROWS", "5")
    assert "over the limit of 5 rows" in _error(tmp_path / "d.csv")
    monkeypatch.setenv("DASHSEL_MAX_ROWS", "8")
    assert len(load_arrays(tmp_path / "d.csv")) == 8


def test_parquet_rows_are_capped_from_the_metadata(tmp_path):
    pytest.importorskip("pyarrow")
    _frame(8).to_parquet(tmp_path / "d.parquet")
    assert "8 rows of 3 columns, over the limit of 2 rows" in _error(
        tmp_path / "d.parquet", max_rows=2
    )


@pytest.mark.parametrize("value", ["lots", "-5", "0", "1.5", "nan"])
def test_bad_cap_setting_is_one_line(tmp_path, monkeypatch, value):
    save_npz(tmp_path / "d.npz", ArraySplit(np.ones((2, 2)), np.arange(2)))
    monkeypatch.setenv("DASHSEL_MAX_ARRAY_BYTES", value)
    with pytest.raises(DashselError, match="DASHSEL_MAX_ARRAY_BYTES"):
        load_arrays(tmp_path / "d.npz")


def test_nul_byte_in_path_is_one_line():
    with pytest.raises(DataError, match="NUL byte"):
        load_arrays("data/a\x00b.npz")


@settings(max_examples=300, deadline=None)
@given(
    compress=st.booleans(),
    cut=st.none() | st.integers(min_value=0),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=16),
)
def test_damaged_npz_is_a_one_line_data_error(tmp_path_factory, compress, cut, flips):
    # Found by fuzzing: damaged archives raise NotImplementedError, RuntimeError, zlib.error
    # or struct.error from zipfile; each must come out as a DataError.
    from dashsel.arrays import inspect_arrays

    folder = tmp_path_factory.mktemp("damaged")
    save_npz(
        folder / "d.npz",
        ArraySplit(np.arange(40.0).reshape(20, 2), np.arange(20) % 3),
        compress=compress,
    )
    data = bytearray((folder / "d.npz").read_bytes())
    for where, value in flips:
        data[where % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    (folder / "d.npz").write_bytes(bytes(data))
    for read in (load_arrays, inspect_arrays):
        try:
            read(folder / "d.npz")
        except DataError as exc:
            assert "\n" not in str(exc) and str(folder / "d.npz") in str(exc)


@settings(max_examples=100, deadline=None)
@given(
    X=hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
        elements=st.sampled_from([0.0, 1.5, np.nan, np.inf, -np.inf]),
    ),
    block=st.integers(1, 64),
)
def test_first_nonfinite_matches_a_full_scan(X, block):
    from dashsel.arrays import first_nonfinite

    bad = np.argwhere(~np.isfinite(X))
    expected = tuple(int(v) for v in bad[0]) if len(bad) else None
    assert first_nonfinite(X, block_bytes=block) == expected
