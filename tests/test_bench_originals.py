"""Tests of the loaders for original Digit-Five and DomainNet files, on tiny fixture files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from dashsel.errors import DataError
from dashsel_bench import originals as og
from dashsel_bench.digits5 import Digits5

N = 60  # images per part; labels cycle 0..9


def _onehot(y: np.ndarray) -> np.ndarray:
    return np.eye(10, dtype=np.uint8)[y]


def write_digit_five(root: Path, rng: np.random.Generator) -> None:
    """Tiny Digit-Five .mat files (N images per part) under ``root`` (also used by test_cli)."""
    y = np.arange(N) % 10
    u8 = lambda *s: rng.integers(0, 256, size=s, dtype=np.uint8)  # noqa: E731
    savemat(root / "mnist_data.mat", {
        "train_32": u8(N, 32, 32), "test_32": u8(N, 32, 32),
        "train_28": u8(N, 28, 28, 1), "test_28": u8(N, 28, 28, 1),
        "label_train": _onehot(y), "label_test": _onehot(y),
    })  # fmt: skip
    savemat(root / "mnistm_with_label.mat", {
        "train": u8(N, 28, 28, 3), "test": u8(N, 28, 28, 3),
        "label_train": _onehot(y), "label_test": _onehot(y),
    })  # fmt: skip
    sy = np.where(y == 0, 10, y)[:, None]  # SVHN: 10 means 0
    savemat(root / "svhn_train_32x32.mat", {"X": u8(32, 32, 3, N), "y": sy})
    savemat(root / "svhn_test_32x32.mat", {"X": u8(32, 32, 3, N), "y": sy})
    savemat(root / "syn_number.mat", {
        "train_data": u8(N, 32, 32, 3), "test_data": u8(N, 32, 32, 3),
        "train_label": y[:, None], "test_label": y[:, None],
    })  # fmt: skip
    cell = np.empty((2, 2), dtype=object)
    cell[0, 0] = rng.random((N, 1, 28, 28))
    cell[0, 1] = y[:, None].astype(float)
    cell[1, 0] = rng.random((N, 1, 28, 28))
    cell[1, 1] = y[:, None].astype(float)
    savemat(root / "usps_28x28.mat", {"dataset": cell})


@pytest.fixture()
def d5root(tmp_path: Path) -> Path:
    write_digit_five(tmp_path, np.random.default_rng(0))
    return tmp_path


def test_digit_five_layouts(d5root: Path) -> None:
    doms = og.load_digit_five(d5root)
    assert list(doms) == ["mnist", "svhn", "usps", "mnistm", "syn"]
    y = np.arange(N) % 10
    for name, dom in doms.items():
        assert dom.train_images.shape == (N, 32, 32, 3) and dom.train_images.dtype == np.uint8
        assert np.array_equal(dom.train_labels, y), name
        assert np.array_equal(dom.test_labels, y), name
    # mnist train_32 is taken as is, grey repeated to RGB
    from scipy.io import loadmat

    raw = loadmat(d5root / "mnist_data.mat")["train_32"]
    assert np.array_equal(doms["mnist"].train_images[..., 1], raw)
    # SVHN is stored (H, W, C, N)
    raw = loadmat(d5root / "svhn_train_32x32.mat")["X"]
    assert np.array_equal(doms["svhn"].train_images[4], raw[..., 4])
    # USPS floats in [0, 1] become 0..255 (28 -> 32 resize keeps the range)
    assert doms["usps"].train_images.max() > 200


def test_subsampling_is_balanced(d5root: Path) -> None:
    dom = og.load_digit_five_domain(d5root, "syn", max_train=20, max_test=10)
    assert dom.n_train == 20 and np.bincount(dom.train_labels).tolist() == [2] * 10
    assert dom.n_test == 10


def test_missing_key_and_file_are_named(d5root: Path) -> None:
    savemat(d5root / "syn_number.mat", {"train_data": np.zeros((2, 32, 32, 3), np.uint8)})
    with pytest.raises(DataError, match=r"syn_number\.mat.*'train_label'"):
        og.load_digit_five_domain(d5root, "syn")
    (d5root / "usps_28x28.mat").unlink()
    with pytest.raises(DataError, match=r"usps_28x28\.mat"):
        og.load_digit_five_domain(d5root, "usps")


def test_label_helper() -> None:
    assert og.labels_from(_onehot(np.array([3, 0])), "x").tolist() == [3, 0]
    assert og.labels_from(np.array([[10], [2]]), "x").tolist() == [0, 2]
    with pytest.raises(DataError, match=r"outside 0\.\.9"):
        og.labels_from(np.array([11]), "x")


def test_suite_from_originals(
    d5root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHSEL_CACHE", str(tmp_path / "cache"))
    suite = Digits5(source="original", root=d5root, local_size=10, val_size=10)
    assert suite.targets == ("mnist", "svhn", "usps", "mnistm", "syn")
    pool = suite.make_pool("usps")
    assert pool.name == "digits5-usps" and len(pool) == 15
    assert pool.entry("usps1").meta["relevant"] and not pool.entry("syn1").meta["relevant"]
    assert len(pool.test) == N


def write_domainnet(root: Path, n_train: int = 6, n_test: int = 3, n_classes: int = 3) -> None:
    """Tiny DomainNet folders and split lists (clipart, sketch) under ``root`` (also used by
    test_cli)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for dom in ("clipart", "sketch"):
        for part, n in (("train", n_train), ("test", n_test)):
            lines = []
            for i in range(n):
                lab = i % n_classes
                rel = f"{dom}/c{lab}/{part}_{i}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / rel)
                lines.append(f"{rel} {lab}")
            (root / f"{dom}_{part}.txt").write_text("\n".join(lines) + "\n")


def test_domainnet(tmp_path: Path) -> None:
    write_domainnet(tmp_path)
    doms = og.load_domainnet(tmp_path, ("clipart", "sketch"), size=16)
    assert doms["sketch"].train_images.shape == (6, 16, 16, 3)
    assert doms["clipart"].test_labels.tolist() == [0, 1, 2]
    sub = og.load_domainnet(tmp_path, ("clipart",), classes=[2, 0])
    assert sub["clipart"].train_labels.tolist() == [1, 0, 1, 0]  # 0 -> 1, 2 -> 0


def test_domainnet_errors(tmp_path: Path) -> None:
    write_domainnet(tmp_path)
    with pytest.raises(DataError, match=r"real_train\.txt"):
        og.load_domainnet(tmp_path, ("real",))
    (tmp_path / "clipart_test.txt").write_text("just-a-path\n")
    with pytest.raises(DataError, match=r"clipart_test\.txt:1"):
        og.load_domainnet(tmp_path, ("clipart",))
    (tmp_path / "clipart_test.txt").write_text("clipart/missing.png 0\n")
    with pytest.raises(DataError, match=r"missing\.png"):
        og.load_domainnet(tmp_path, ("clipart",))
