"""Tests of the fixed image features."""

from __future__ import annotations

import numpy as np
import pytest

from dashsel.errors import DashselError, DataError
from dashsel_bench.features import FEATURE_KINDS, image_features, raw_features


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    from dashsel_bench.render import grey_to_rgb, resize_stack

    d = load_digits()
    imgs = (d.images[:300] * (255 / 16)).astype(np.uint8)
    return grey_to_rgb(resize_stack(imgs)), d.target[:300]


@pytest.mark.parametrize(("kind", "width"), [("hog", 1812), ("randconv", 2352), ("raw", 3072)])
def test_shapes_and_dtype(digits, kind: str, width: int) -> None:
    X = image_features(digits[0][:7], kind)  # type: ignore[arg-type]
    assert X.shape == (7, width) and X.dtype == np.float32 and np.isfinite(X).all()


def test_raw_is_channel_first() -> None:
    img = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    img[0, 3, 5, 1] = 255  # green pixel at row 3, column 5
    X = raw_features(img)
    assert X.reshape(1, 3, 32, 32)[0, 1, 3, 5] == 1.0 and X.sum() == 1.0


def test_hog_of_flat_image_is_colour_only() -> None:
    img = np.full((1, 32, 32, 3), (255, 0, 51), dtype=np.uint8)
    X = image_features(img, "hog")
    assert np.all(X[0, :1764] == 0)
    assert np.allclose(X[0, 1764:].reshape(16, 3), [0.25, 0.0, 0.05])


def test_features_are_deterministic(digits) -> None:
    for kind in ("hog", "randconv"):
        a = image_features(digits[0][:5], kind)  # type: ignore[arg-type]
        b = image_features(digits[0][:5], kind)  # type: ignore[arg-type]
        assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", ["hog", "randconv"])
def test_features_separate_digit_classes(digits, kind: str) -> None:
    # nearest neighbour on 200 -> 100 optdigits images: discriminative features score high,
    # a broken extractor (constant, shuffled rows) scores ~10%
    X = image_features(digits[0], kind)  # type: ignore[arg-type]
    y = digits[1]
    d = ((X[200:, None, :] - X[None, :200, :]) ** 2).sum(-1)
    acc = (y[:200][d.argmin(1)] == y[200:]).mean()
    assert acc > 0.85


def test_bad_input() -> None:
    assert set(FEATURE_KINDS) == {"hog", "randconv", "raw"}
    with pytest.raises(DashselError, match="unknown feature kind"):
        image_features(np.zeros((1, 32, 32, 3), np.uint8), "sift")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="RGB"):
        image_features(np.zeros((1, 32, 32), np.uint8), "hog")
