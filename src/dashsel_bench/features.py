"""Fixed per-image features, computed once, so that a trial training is a fast linear model.

The paper trains a small CNN per trial. A CPU-only library cannot afford that hundreds of times,
so the ``digits5`` suite precomputes a fixed (not learned) feature vector per image and trains a
logistic regression on it. The features must keep the property the benchmark relies on: data
from the target's own domain helps and data from other domains mostly hurts. Fixed features
that still encode *how* a domain draws its digits (stroke polarity, colour, texture) keep the
domains apart, as a CNN trained from scratch sees them.

Kinds
-----
``hog``
    Histogram of oriented gradients of the grey image (scikit-image's layout, vectorised):
    4x4-pixel cells, 2x2 blocks, 9 unsigned orientations, L2-Hys (1,764 values), followed by
    a 4x4 RGB thumbnail (48 values, scaled to the same range). The default: strong within a
    domain, fast (~0.05 ms per image).
``randconv``
    A fixed random convolution layer: 48 seeded 5x5x3 filters, ReLU, 4x4 average pooling
    (48 x 7 x 7 = 2,352 values), square-root compressed. A crude stand-in for a CNN's first
    layer.
``raw``
    The pixels, channel-first and flattened: ``X.reshape(N, 3, 32, 32)`` gives the images back
    with values in [0, 1] (see :func:`raw_features`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dashsel.errors import DashselError, DataError

FeatureKind = Literal["hog", "randconv", "raw"]
FEATURE_KINDS: tuple[str, ...] = ("hog", "randconv", "raw")
#: Bump when a recipe below changes, so cached feature files are recomputed.
FEATURE_VERSION = "f1"

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3:
        raise DataError(f"images must be (N, H, W, 3) RGB, got shape {images.shape}")
    return images


def raw_features(images: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1], laid out channel-first then flattened.

    Row ``i`` is ``images[i].transpose(2, 0, 1).ravel() / 255``, so
    ``X.reshape(N, 3, H, W)`` is the (N, C, H, W) batch a torch CNN expects.
    """
    images = _check_images(images)
    n = images.shape[0]
    return (images.transpose(0, 3, 1, 2).reshape(n, -1).astype(np.float32)) / np.float32(255.0)


def hog_features(images: np.ndarray) -> np.ndarray:
    """HOG of the grey image plus a 4x4 colour thumbnail; see the module docstring.

    A vectorised Dalal-Triggs HOG (the same layout as ``skimage.feature.hog`` with
    ``orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2), block_norm="L2-Hys"``:
    unsigned orientations, bilinear votes between orientation bins, no spatial interpolation).
    Written with numpy over the whole batch because scikit-image's per-image loop made
    featurising the suite several times slower.
    """
    images = _check_images(images)
    n, h, w, _ = images.shape
    if h % 4 or w % 4:
        raise DataError(f"HOG needs image sides divisible by 4, got {h} x {w}")
    grey = images.astype(np.float32) @ _LUMA / np.float32(255.0)
    gy, gx = np.gradient(grey, axis=(1, 2))
    mag = np.hypot(gx, gy)
    nb = 9
    pos = (np.arctan2(gy, gx) % np.pi) / np.float32(np.pi / nb)
    lo = np.floor(pos)
    frac = pos - lo
    lo = lo.astype(np.int64) % nb
    hi = (lo + 1) % nb
    votes = np.zeros((n, h, w, nb), dtype=np.float32)
    np.put_along_axis(votes, lo[..., None], (mag * (1 - frac))[..., None], axis=3)
    upper = np.zeros_like(votes)
    np.put_along_axis(upper, hi[..., None], (mag * frac)[..., None], axis=3)
    votes += upper
    ch, cw = h // 4, w // 4
    cells = votes.reshape(n, ch, 4, cw, 4, nb).sum(axis=(2, 4))
    blocks = np.concatenate(
        [cells[:, i : i + ch - 1, j : j + cw - 1] for i in (0, 1) for j in (0, 1)], axis=-1
    )
    eps = np.float32(1e-6)
    blocks = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + eps)
    blocks = np.minimum(blocks, np.float32(0.2))  # L2-Hys: clip, renormalise
    blocks = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + eps)
    # Colour thumbnail: mean of each (h/4 x w/4) block per channel. HOG throws colour away;
    # the thumbnail keeps the domain's palette (flat colour, photo, black background) visible
    # to the classifier, as it is to a CNN. Scaled to HOG's typical magnitude (~0.1).
    thumb = images.reshape(n, 4, h // 4, 4, w // 4, 3).mean(axis=(2, 4), dtype=np.float32)
    return np.concatenate(
        [blocks.reshape(n, -1), thumb.reshape(n, -1) / np.float32(255.0 * 4.0)], axis=1
    ).astype(np.float32)


def _filters(seed: int = 0, n_filters: int = 48, k: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((k * k * 3, n_filters)).astype(np.float32)
    f -= f.mean(axis=0, keepdims=True)  # zero-mean filters respond to edges, not brightness
    f /= np.linalg.norm(f, axis=0, keepdims=True)
    return f


def randconv_features(images: np.ndarray, *, seed: int = 0, batch: int = 512) -> np.ndarray:
    """Fixed random 5x5 convolutions, ReLU, 4x4 average pooling; see the module docstring."""
    images = _check_images(images)
    n, h, w, _ = images.shape
    filt = _filters(seed)
    k = 5
    oh, ow = h - k + 1, w - k + 1  # 28 x 28 for 32 x 32 input
    ph, pw = oh // 4, ow // 4
    out = np.empty((n, filt.shape[1] * ph * pw), dtype=np.float32)
    for s in range(0, n, batch):
        x = images[s : s + batch].astype(np.float32) / np.float32(255.0)
        win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
        # win: (b, oh, ow, 3, k, k) -> patches (b, oh, ow, k*k*3) in the filters' order
        patches = win.transpose(0, 1, 2, 4, 5, 3).reshape(x.shape[0], oh, ow, -1)
        resp = np.maximum(patches @ filt, 0.0)
        pooled = resp[:, : ph * 4, : pw * 4].reshape(x.shape[0], ph, 4, pw, 4, -1).mean(axis=(2, 4))
        out[s : s + batch] = np.sqrt(pooled.transpose(0, 3, 1, 2).reshape(x.shape[0], -1))
    return out


def image_features(images: np.ndarray, kind: FeatureKind = "hog") -> np.ndarray:
    """Fixed features for (N, H, W, 3) uint8 images.

    Parameters
    ----------
    images : ndarray (N, H, W, 3) uint8
        RGB images; H and W divisible by 4 (32 x 32 in the suite).
    kind : {"hog", "randconv", "raw"}
        See the module docstring.

    Returns
    -------
    ndarray (N, n_features) float32
    """
    if kind == "hog":
        return hog_features(images)
    if kind == "randconv":
        return randconv_features(images)
    if kind == "raw":
        return raw_features(images)
    raise DashselError(f"unknown feature kind {kind!r}: use one of {', '.join(FEATURE_KINDS)}")
