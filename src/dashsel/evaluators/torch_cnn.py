"""An evaluator that trains a small CNN from scratch with PyTorch (the ``dashsel[torch]`` extra).

Reward = validation accuracy of a CNN trained on the local data plus the chosen dataset, as in
the paper's Digit-Five experiments. Pool rows are flattened float32 images in [0, 1], channel
first, ``(N, C*H*W)``, reshaped to ``image_shape``.

The network is ``len(channels)`` blocks of [5x5 conv (padding 2), BatchNorm, ReLU, 2x2
max-pool], then fully connected layers of widths ``hidden`` with ReLU and dropout, then the
classifier. The paper's model (the FACT repository's digit CNN: convs of 64 and 128 channels,
FC 8192 -> 3072 -> 100 -> 10, dropout 0.5) is
``TorchCNNEvaluator(pool, channels=(64, 128), hidden=(3072, 100))``; the default
``channels=(32, 64), hidden=128`` is about 25x fewer weights, so a trial trains in seconds on
a CPU.

Evaluators must be picklable (they are shipped to worker processes), so no torch object lives
in the evaluator's state: torch is imported in each call and every model is built, trained
and dropped inside it.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from dashsel.errors import DashselError, DataError, require
from dashsel.evaluators.base import Evaluator, Split, pool_identity
from dashsel.pool import ArraySplit, Pool
from dashsel.trial import TrialSpec

_PURPOSE = "the torch CNN evaluator"
#: Rows scored per forward pass at evaluation time (no gradients, so memory is small).
_EVAL_BATCH = 1024


def _torch() -> Any:
    return require("torch", "torch", _PURPOSE)


def _check_torch() -> None:
    """Raise the install hint now if torch is missing, without importing it: a run whose
    trials run in worker processes or on Ray leaves importing it to them."""
    import importlib.util

    try:
        module = sys.modules.get("torch", False)
        found = (
            module is not None if module is not False else bool(importlib.util.find_spec("torch"))
        )
    except (ImportError, ValueError):
        found = False
    if not found:
        _torch()  # the MissingExtraError with the hint


class TorchCNNEvaluator(Evaluator):
    """Reward = validation accuracy of a CNN trained from scratch on local data + the dataset.

    Parameters
    ----------
    pool : Pool
        Pool with local and validation data (and test data for ``score(..., "test")``), whose
        rows are flattened images of ``image_shape``.
    image_shape : tuple of int
        ``(channels, height, width)``; height and width must be divisible by
        ``2 ** len(channels)``.
    epochs : int
        Passes over the training data.
    batch_size : int
        Minibatch size (Adam).
    lr : float
        Adam learning rate.
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        Rewards are bitwise reproducible on CPU; CUDA kernels may differ in the last bits.
    channels : sequence of int
        Output channels of each conv block.
    hidden : int or sequence of int
        Widths of the fully connected layers before the classifier.
    dropout : float
        Dropout after each hidden layer.
    threads : int, optional
        ``torch.set_num_threads`` for CPU training (None leaves torch's default); set it to 1
        when several evaluators run in parallel processes.

    Raises
    ------
    MissingExtraError
        When torch is not installed (``pip install 'dashsel[torch]'``).
    """

    kind = "torch"
    can_train = True

    def __init__(
        self,
        pool: Pool,
        *,
        image_shape: tuple[int, int, int] = (3, 32, 32),
        epochs: int = 5,
        batch_size: int = 64,
        lr: float = 1e-3,
        device: str = "auto",
        channels: Sequence[int] = (32, 64),
        hidden: int | Sequence[int] = 128,
        dropout: float = 0.5,
        threads: int | None = None,
    ) -> None:
        _check_torch()  # fail now, with the install hint, rather than in the first trial
        hidden_t = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        image_shape = tuple(int(v) for v in image_shape)  # type: ignore[assignment]
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise DashselError(f"image_shape must be (C, H, W), got {image_shape}")
        if not channels or min(channels) < 1 or min(hidden_t, default=1) < 1:
            raise DashselError("channels must be non-empty and all widths >= 1")
        shrink = 2 ** len(channels)
        if image_shape[1] % shrink or image_shape[2] % shrink:
            raise DashselError(
                f"image height and width must be divisible by {shrink} for {len(channels)} "
                f"pooling blocks, got {image_shape}"
            )
        if epochs < 1 or batch_size < 2 or lr <= 0 or not 0.0 <= dropout < 1.0:
            raise DashselError("need epochs >= 1, batch_size >= 2, lr > 0 and 0 <= dropout < 1")
        self.pool = pool
        self.image_shape: tuple[int, int, int] = image_shape
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.device = str(device)
        self.channels = tuple(int(c) for c in channels)
        self.hidden = hidden_t
        self.dropout = float(dropout)
        self.threads = threads
        self._description: dict[str, Any] | None = None

    # --- evaluator protocol --------------------------------------------------------------------
    def evaluate(self, spec: TrialSpec) -> float:
        """Validation accuracy after training on local data + ``spec.dataset_id``."""
        return self.score_arrays(self.pool.dataset(spec.dataset_id), spec.seed, "validation")

    def score(self, dataset_ids: Sequence[str], seed: int, split: Split = "test") -> float:
        """Accuracy on ``split`` of a CNN trained on local data plus ``dataset_ids``."""
        parts = [self.pool.dataset(d) for d in dataset_ids]
        return self.score_arrays(ArraySplit.concat(parts) if parts else None, seed, split)

    def score_arrays(self, extra: ArraySplit | None, seed: int, split: Split = "test") -> float:
        """Accuracy on ``split`` of a CNN trained on local data plus arbitrary samples.

        Parameters
        ----------
        extra : ArraySplit or None
            Samples added to the local data (None: local data only).
        seed : int
            Seeds the initialisation, dropout and the shuffling order.
        split : {"validation", "test"}
            Where accuracy is measured.
        """
        train = self.pool.local if extra is None else ArraySplit.concat([self.pool.local, extra])
        target = self.pool.split(split)
        # Classes seen in training; evaluation labels outside them simply count as errors.
        classes = np.unique(train.y)
        return self._fit_score(train, target, classes, int(seed))

    def describe(self) -> dict[str, Any]:
        """Kind, network and training parameters, pool name and data fingerprints.

        The device is left out: it changes speed, not the model (up to CUDA rounding).
        """
        if self._description is None:
            self._description = {
                "kind": self.kind,
                "params": {
                    "image_shape": list(self.image_shape),
                    "epochs": self.epochs,
                    "batch_size": self.batch_size,
                    "lr": self.lr,
                    "channels": list(self.channels),
                    "hidden": list(self.hidden),
                    "dropout": self.dropout,
                },
                **pool_identity(self.pool),
            }
        return copy.deepcopy(self._description)

    def __repr__(self) -> str:
        return (
            f"TorchCNNEvaluator(pool={self.pool.name!r}, image_shape={self.image_shape}, "
            f"epochs={self.epochs}, channels={self.channels}, hidden={self.hidden}, "
            f"device={self.device!r})"
        )

    # --- training ------------------------------------------------------------------------------
    def resolve_device(self) -> str:
        """The device trials run on (``"auto"`` resolved)."""
        torch = _torch()
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise DashselError(f"device {self.device!r} requested but CUDA is not available")
        return self.device

    def build_model(self, n_classes: int) -> Any:
        """A freshly initialised ``torch.nn.Module`` (uses torch's global RNG)."""
        nn = _torch().nn
        layers: list[Any] = []
        c_in, (_, h, w) = self.image_shape[0], self.image_shape
        for c in self.channels:
            layers += [
                nn.Conv2d(c_in, c, kernel_size=5, padding=2),
                nn.BatchNorm2d(c),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in, h, w = c, h // 2, w // 2
        layers.append(nn.Flatten())
        width = c_in * h * w
        for hid in self.hidden:
            layers += [nn.Linear(width, hid), nn.ReLU(), nn.Dropout(self.dropout)]
            width = hid
        layers.append(nn.Linear(width, n_classes))
        return nn.Sequential(*layers)

    def _images(self, data: ArraySplit, what: str) -> np.ndarray:
        want = int(np.prod(self.image_shape))
        X = np.asarray(data.X, dtype=np.float32)
        if X[0].size != want:
            raise DataError(
                f"{what}: rows have {X[0].size} values but image_shape {self.image_shape} "
                f"needs {want}"
            )
        return np.ascontiguousarray(X.reshape(len(X), *self.image_shape))

    def _fit_score(
        self, train: ArraySplit, target: ArraySplit, classes: np.ndarray, seed: int
    ) -> float:
        torch = _torch()
        if len(target) == 0:
            raise DataError("the evaluation split is empty")
        if classes.size == 1:  # nothing to learn: the only sensible model predicts that class
            return float(np.mean(target.y == classes[0]))
        device = self.resolve_device()
        X_train = self._images(train, "training data")
        X_eval = self._images(target, "evaluation data")
        y_train = np.searchsorted(classes, train.y)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        cudnn = torch.backends.cudnn
        was_cudnn = (cudnn.deterministic, cudnn.benchmark)
        # Global switches, so they are restored afterwards. Full determinism on CUDA would also
        # need a cuBLAS workspace setting made before start-up, which a library must not
        # impose; deterministic cuDNN convolutions (no autotuning) get most of the way.
        torch.use_deterministic_algorithms(device == "cpu")
        cudnn.deterministic, cudnn.benchmark = True, False
        try:
            torch.manual_seed(seed)  # initialisation and dropout
            gen = torch.Generator().manual_seed(seed)  # the shuffling order, on the CPU
            model = self.build_model(int(classes.size)).to(device)
            opt = torch.optim.Adam(model.parameters(), lr=self.lr)
            loss_fn = torch.nn.CrossEntropyLoss()
            xt = torch.from_numpy(X_train).to(device)
            yt = torch.from_numpy(y_train.astype(np.int64)).to(device)
            n = len(y_train)
            model.train()
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=gen).to(device)
                for start in range(0, n, self.batch_size):
                    idx = order[start : start + self.batch_size]
                    if idx.numel() < 2:  # BatchNorm cannot train on a single sample
                        continue
                    opt.zero_grad(set_to_none=True)
                    loss_fn(model(xt[idx]), yt[idx]).backward()
                    opt.step()
            model.eval()
            preds = []
            with torch.no_grad():
                for start in range(0, len(X_eval), _EVAL_BATCH):
                    xb = torch.from_numpy(X_eval[start : start + _EVAL_BATCH]).to(device)
                    preds.append(model(xb).argmax(dim=1).cpu().numpy())
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
            cudnn.deterministic, cudnn.benchmark = was_cudnn
        pred = classes[np.concatenate(preds)]
        return float(np.mean(pred == target.y))
