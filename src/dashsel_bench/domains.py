"""Image domains shared by the digits5 suite and the loaders of original files.

:class:`DomainImages` (one domain's train and test images) and :func:`balanced_order` live
here, apart from :mod:`dashsel_bench.digits5` and :mod:`dashsel_bench.originals`, so that both
can use them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dashsel.errors import DataError

#: Classes of every digit domain (0..9).
N_CLASSES = 10


@dataclass(frozen=True)
class DomainImages:
    """One domain's images and labels, with disjoint train and test parts.

    Images are (N, 32, 32, 3) uint8 RGB (height, width, channel); labels are int64 in 0..9.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    provenance: str = ""

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x = getattr(self, f"{part}_images")
            y = getattr(self, f"{part}_labels")
            if x.ndim != 4 or x.shape[3] != 3 or x.dtype != np.uint8:
                raise DataError(
                    f"domain {self.name!r}: {part} images must be (N, H, W, 3) uint8, "
                    f"got {x.shape} {x.dtype}"
                )
            if y.shape != (x.shape[0],):
                raise DataError(
                    f"domain {self.name!r}: {x.shape[0]} {part} images but labels of shape "
                    f"{y.shape}"
                )

    @property
    def n_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_labels.shape[0])

    def save(self, path: str | Path) -> None:
        """Write the domain to one ``.npz`` file (written to a temporary name, then moved)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            train_images=self.train_images,
            train_labels=self.train_labels,
            test_images=self.test_images,
            test_labels=self.test_labels,
            provenance=np.array(self.provenance),
        )
        tmp.replace(path)  # atomic: a reader never sees half a file

    @classmethod
    def load(cls, path: str | Path, name: str | None = None) -> DomainImages:
        """Read a domain written by :meth:`save`."""
        path = Path(path)
        try:
            with np.load(path) as z:
                return cls(
                    name=name or path.stem,
                    train_images=z["train_images"],
                    train_labels=z["train_labels"].astype(np.int64),
                    test_images=z["test_images"],
                    test_labels=z["test_labels"].astype(np.int64),
                    provenance=str(z["provenance"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot read domain file {path}: {exc}") from None


def balanced_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``labels`` shuffled within each class, then interleaved class by class.

    Any prefix, and any run of consecutive indices, is then as class-balanced as the data
    allows, so cutting the order into slices gives balanced, disjoint subsets.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    per = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    # rank of each index within its class; sorting by (rank, class) interleaves the classes
    ranks = np.empty(labels.shape[0], dtype=np.int64)
    for idx in per:
        ranks[idx] = np.arange(idx.size)
    order = np.concatenate(per)
    key = ranks[order] * (len(classes) + 1) + np.searchsorted(classes, labels[order])
    return order[np.argsort(key, kind="stable")]
