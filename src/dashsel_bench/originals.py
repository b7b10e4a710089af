"""Loaders for the original benchmark files, for users who have them.

dashsel never downloads these; point the loaders at a folder you already have.

Digit-Five (as distributed for multi-source domain adaptation, e.g. with M3SDA / Dassl)
    One folder holding the MATLAB files below, read with :func:`scipy.io.loadmat`:

    ======================  ==========================================================
    file                    keys (layout)
    ======================  ==========================================================
    mnist_data.mat          ``train_32``/``test_32`` (N, 32, 32) or ``train_28``/``test_28``
                            (N, 28, 28, 1); ``label_train``/``label_test`` one-hot (N, 10)
    mnistm_with_label.mat   ``train``/``test`` (N, 28, 28, 3); ``label_train``/``label_test``
                            one-hot (N, 10)
    svhn_train_32x32.mat,   ``X`` (32, 32, 3, N); ``y`` (N, 1) with 10 meaning digit 0
    svhn_test_32x32.mat
    syn_number.mat          ``train_data``/``test_data`` (N, 32, 32, 3);
                            ``train_label``/``test_label`` (N, 1) integers
    usps_28x28.mat          ``dataset``: a 2 x 2 cell {train images (N, 1, 28, 28) in
                            [0, 1], train labels (N, 1); test images, test labels}
    ======================  ==========================================================

    Labels may be one-hot (argmax is taken) or integer columns; 10 is read as 0 everywhere.
    Images become 32 x 32 RGB uint8 (resized bilinearly, grey repeated to three channels).

DomainNet
    ``<root>/<domain>_train.txt`` and ``<root>/<domain>_test.txt``, lines ``<path> <label>``
    with ``<path>`` relative to ``<root>`` (e.g. ``clipart/aircraft_carrier/x.jpg 0``).

Both return :class:`~dashsel_bench.domains.DomainImages`, so a suite can be cut from them like
from the offline build (``Digits5(source="original", root=...)`` and
``Digits5(source="domainnet", root=...)``; on the command line ``dashsel bench digits5
--source original DIR`` and ``dashsel bench domainnet DIR``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dashsel.errors import DashselError, DataError
from dashsel_bench.domains import N_CLASSES, DomainImages, balanced_order
from dashsel_bench.render import SIZE, grey_to_rgb, resize_stack

#: Digit-Five domains in the paper's table order, and their files.
DIGIT_FIVE_DOMAINS: tuple[str, ...] = ("mnist", "svhn", "usps", "mnistm", "syn")
#: The DomainNet domains the paper uses (Table 2).
DOMAINNET_DOMAINS: tuple[str, ...] = ("clipart", "quickdraw", "real", "sketch")
DIGIT_FIVE_FILES: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist_data.mat",),
    "svhn": ("svhn_train_32x32.mat", "svhn_test_32x32.mat"),
    "usps": ("usps_28x28.mat",),
    "mnistm": ("mnistm_with_label.mat",),
    "syn": ("syn_number.mat",),
}


# --- helpers ---------------------------------------------------------------------------------
def _loadmat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    if not path.is_file():
        raise DataError(f"Digit-Five file not found: {path}")
    try:
        return loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise DataError(f"cannot read {path}: {exc}") from None


def _key(mat: dict[str, Any], path: Path, *keys: str) -> np.ndarray:
    """The first of ``keys`` present in ``mat``; DataError naming the file and key if none is."""
    for k in keys:
        if k in mat:
            return np.asarray(mat[k])
    found = sorted(k for k in mat if not k.startswith("__"))
    raise DataError(f"{path}: key {' or '.join(map(repr, keys))} missing (found: {found})")


def labels_from(array: np.ndarray, what: str) -> np.ndarray:
    """Integer labels 0..9 from a one-hot (N, 10) matrix or an integer column/vector.

    10 is read as 0 (SVHN's and USPS's MATLAB convention).
    """
    a = np.asarray(array)
    if a.ndim == 2 and a.shape[1] == N_CLASSES and a.shape[0] > 0 and a.shape != (1, N_CLASSES):
        y = a.argmax(axis=1)
    else:
        y = a.reshape(-1)
    y = y.astype(np.int64)
    y[y == N_CLASSES] = 0
    if y.size and (y.min() < 0 or y.max() >= N_CLASSES):
        raise DataError(f"{what}: labels outside 0..9 (min {y.min()}, max {y.max()})")
    return y


def images_from(array: np.ndarray, layout: str, what: str) -> np.ndarray:
    """(N, 32, 32, 3) uint8 from an image array in ``layout``.

    ``layout`` names the axes: ``"NHW"``, ``"NHWC"``, ``"NCHW"`` or ``"HWCN"``. Floats in
    [0, 1] are scaled to 0..255.
    """
    a = np.asarray(array)
    if a.ndim != len(layout):
        raise DataError(f"{what}: expected {layout} images, got shape {a.shape}")
    a = np.transpose(a, [layout.index(c) for c in "NHWC" if c in layout])
    if a.ndim == 3:
        a = a[..., None]
    if a.shape[3] not in (1, 3):
        raise DataError(f"{what}: images need 1 or 3 channels, got shape {a.shape}")
    if a.dtype.kind == "f" and a.size and float(np.nanmax(a)) <= 1.0 + 1e-6:
        a = a * 255.0
    a = np.clip(a, 0, 255).astype(np.uint8)
    a = grey_to_rgb(resize_stack(a[..., 0])) if a.shape[3] == 1 else resize_stack(a)
    return np.ascontiguousarray(a)


def _cap(n: int, labels: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``cap`` class-balanced rows (all rows, in order, when no cap)."""
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(balanced_order(labels, rng)[:cap])


def _part(
    images: np.ndarray, labels: np.ndarray, layout: str, what: str, cap: int | None, rng: Any
) -> tuple[np.ndarray, np.ndarray]:
    y = labels_from(labels, f"{what} labels")
    n = images.shape[layout.index("N")]
    if n != y.size:
        raise DataError(f"{what}: {n} images but {y.size} labels")
    idx = _cap(n, y, cap, rng)  # subsample before resizing: the files are large
    picked = np.take(images, idx, axis=layout.index("N"))
    return images_from(picked, layout, what), y[idx]


# --- Digit-Five --------------------------------------------------------------------------------
def load_digit_five_domain(
    root: str | Path,
    name: str,
    *,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> DomainImages:
    """One Digit-Five domain from its ``.mat`` file(s) under ``root``.

    Parameters
    ----------
    root : path
        Folder holding the files listed in :data:`DIGIT_FIVE_FILES`.
    name : {"mnist", "svhn", "usps", "mnistm", "syn"}
    max_train, max_test : int, optional
        Keep at most this many class-balanced images of each part (seeded).
    seed : int

    Raises
    ------
    DataError
        Naming the file, and the key when one is missing.
    """
    if name not in DIGIT_FIVE_FILES:
        raise DashselError(
            f"unknown Digit-Five domain {name!r}: use {', '.join(DIGIT_FIVE_DOMAINS)}"
        )
    root = Path(root)
    rng = np.random.default_rng([seed, DIGIT_FIVE_DOMAINS.index(name)])
    files = [root / f for f in DIGIT_FIVE_FILES[name]]
    if name == "svhn":
        tr, te = _loadmat(files[0]), _loadmat(files[1])
        xtr, ytr = _part(
            _key(tr, files[0], "X"),
            _key(tr, files[0], "y"),
            "HWCN",
            f"{files[0]} X",
            max_train,
            rng,
        )
        xte, yte = _part(
            _key(te, files[1], "X"), _key(te, files[1], "y"), "HWCN", f"{files[1]} X", max_test, rng
        )
    elif name == "usps":
        mat = _loadmat(files[0])
        cell = _key(mat, files[0], "dataset")
        if cell.dtype != object or cell.shape[:2] != (2, 2):
            raise DataError(
                f"{files[0]}: key 'dataset' must be a 2 x 2 cell {{images, labels}} x "
                f"{{train, test}}, got {cell.dtype} {cell.shape}"
            )
        parts = []
        for row, cap, part in ((0, max_train, "train"), (1, max_test, "test")):
            imgs = np.asarray(cell[row, 0])
            layout = "NCHW" if imgs.ndim == 4 else "NHW"
            parts.append(_part(imgs, cell[row, 1], layout, f"{files[0]} dataset {part}", cap, rng))
        (xtr, ytr), (xte, yte) = parts
    else:
        mat = _loadmat(files[0])
        if name == "mnist":
            if "train_32" in mat:
                keys, layout = ("train_32", "test_32"), "NHW"
            else:
                keys = ("train_28", "test_28")
                layout = "NHWC" if _key(mat, files[0], "train_28").ndim == 4 else "NHW"
            lab = ("label_train", "label_test")
        elif name == "mnistm":
            keys, layout, lab = ("train", "test"), "NHWC", ("label_train", "label_test")
        else:  # syn
            keys, layout, lab = ("train_data", "test_data"), "NHWC", ("train_label", "test_label")
        xtr, ytr = _part(
            _key(mat, files[0], keys[0]),
            _key(mat, files[0], lab[0]),
            layout,
            f"{files[0]} {keys[0]}",
            max_train,
            rng,
        )
        xte, yte = _part(
            _key(mat, files[0], keys[1]),
            _key(mat, files[0], lab[1]),
            layout,
            f"{files[0]} {keys[1]}",
            max_test,
            rng,
        )
    return DomainImages(
        name, xtr, ytr, xte, yte, f"original Digit-Five files {', '.join(map(str, files))}"
    )


def load_digit_five(
    root: str | Path,
    *,
    domains: Sequence[str] = DIGIT_FIVE_DOMAINS,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> dict[str, DomainImages]:
    """Several Digit-Five domains (all five by default), see :func:`load_digit_five_domain`."""
    return {
        d: load_digit_five_domain(root, d, max_train=max_train, max_test=max_test, seed=seed)
        for d in domains
    }


# --- DomainNet ---------------------------------------------------------------------------------
def _read_split(path: Path) -> list[tuple[str, int]]:
    if not path.is_file():
        raise DataError(f"DomainNet split list not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}:{n}: expected '<path> <label>', got {line!r}")
        rows.append((parts[0], int(parts[1])))
    return rows


def _read_images(root: Path, rels: Sequence[str], size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(rels), size, size, 3), dtype=np.uint8)
    for i, rel in enumerate(rels):
        path = root / rel
        try:
            with Image.open(path) as im:
                out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read DomainNet image {path}: {exc}") from None
    return out


def load_domainnet(
    root: str | Path,
    domains: Sequence[str] = DOMAINNET_DOMAINS,
    *,
    classes: Sequence[int] | None = None,
    size: int = SIZE,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> dict[str, DomainImages]:
    """DomainNet domains from their image folders and split lists.

    Parameters
    ----------
    root : path
        Folder with ``<domain>_train.txt``, ``<domain>_test.txt`` and the image folders.
    domains : sequence of str
        Default: the four the paper uses.
    classes : sequence of int, optional
        Keep only these labels, renumbered 0..k-1 in the given order (DomainNet has 345).
    size : int
        Images are resized to ``size`` x ``size`` RGB.
    max_train, max_test : int, optional
        Keep at most this many class-balanced images per part (chosen before reading images).
    seed : int

    Returns
    -------
    dict
        Domain name to :class:`DomainImages`. Note that ``DomainImages`` labels are not
        limited to 0..9 here.
    """
    root = Path(root)
    remap = {c: i for i, c in enumerate(classes)} if classes is not None else None
    out = {}
    for k, dom in enumerate(domains):
        rng = np.random.default_rng([seed, 100 + k])
        parts = []
        for part, cap in (("train", max_train), ("test", max_test)):
            rows = _read_split(root / f"{dom}_{part}.txt")
            if remap is not None:
                rows = [(p, remap[lab]) for p, lab in rows if lab in remap]
            if not rows:
                raise DataError(f"{root / f'{dom}_{part}.txt'}: no images (after the class filter)")
            y = np.array([lab for _, lab in rows], dtype=np.int64)
            idx = _cap(len(rows), y, cap, rng)
            parts.append((_read_images(root, [rows[i][0] for i in idx], size), y[idx]))
        (xtr, ytr), (xte, yte) = parts
        out[dom] = DomainImages(dom, xtr, ytr, xte, yte, f"DomainNet {dom} from {root}")
    return out
