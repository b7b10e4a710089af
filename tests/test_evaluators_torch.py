"""Tests of the torch CNN evaluator on a tiny synthetic image pool (horizontal vs vertical bars)."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from dashsel.errors import DashselError, DataError, MissingExtraError
from dashsel.evaluators.torch_cnn import TorchCNNEvaluator
from dashsel.pool import ArraySplit, Pool
from dashsel.testing import EvaluatorConformance
from dashsel.trial import TrialSpec

SHAPE = (1, 16, 16)
SMALL = {"image_shape": SHAPE, "epochs": 2, "batch_size": 16, "lr": 1e-2, "channels": (4, 8),
         "hidden": 16, "device": "cpu", "threads": 1}  # fmt: skip


def bars(n: int, rng: np.random.Generator, flip: bool = False) -> ArraySplit:
    """``n`` noisy 16x16 images: a horizontal (label 0) or vertical (label 1) bar."""
    y = rng.integers(0, 2, size=n)
    X = rng.uniform(0.0, 0.3, size=(n, 16, 16)).astype(np.float32)
    pos = rng.integers(2, 14, size=n)
    for i in range(n):
        if y[i] == 0:
            X[i, pos[i] - 1 : pos[i] + 1, :] = 1.0
        else:
            X[i, :, pos[i] - 1 : pos[i] + 1] = 1.0
    labels = 1 - y if flip else y  # flipped labels: a harmful dataset
    return ArraySplit(X.reshape(n, -1), labels)


def make_pool() -> Pool:
    rng = np.random.default_rng(0)
    datasets = {"good-0": bars(120, rng), "good-1": bars(120, rng),
                "bad-0": bars(120, rng, flip=True), "bad-1": bars(120, rng, flip=True)}  # fmt: skip
    groups = {d: d.split("-")[0] for d in datasets}
    return Pool.from_arrays(
        datasets, groups, local=bars(6, rng), validation=bars(100, rng),
        test=bars(100, rng), name="bars",
    )  # fmt: skip


def test_missing_torch_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'dashsel\[torch\]'"):
        TorchCNNEvaluator(make_pool(), **SMALL)


def test_installed_torch_is_not_imported_when_the_evaluator_is_made(monkeypatch) -> None:
    # A run whose trials run in workers leaves importing torch to them: the main process only
    # checks that it is installed. (The spec stands in for an installed torch; `import torch`
    # would fail, and raise here, if the constructor tried it.)
    import importlib.machinery
    import importlib.util

    real = importlib.util.find_spec
    fake = importlib.machinery.ModuleSpec("torch", None)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: fake if n == "torch" else real(n, *a)
    )
    ev = TorchCNNEvaluator(make_pool(), **SMALL)
    assert "torch" not in sys.modules
    assert ev.describe()["params"]["channels"] == [4, 8]


# Everything below needs torch: skipped (not failed) where the extra is not installed.
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def evaluator(torch) -> TorchCNNEvaluator:
    return TorchCNNEvaluator(make_pool(), **SMALL)


@pytest.mark.torch
def test_helpful_dataset_beats_harmful(evaluator: TorchCNNEvaluator) -> None:
    good = evaluator.evaluate(TrialSpec(0, "good-0", seed=1, pull=0))
    bad = evaluator.evaluate(TrialSpec(1, "bad-0", seed=1, pull=0))
    assert good > 0.8 and bad < 0.4, (good, bad)


@pytest.mark.torch
def test_same_seed_same_reward(evaluator: TorchCNNEvaluator) -> None:
    spec = TrialSpec(0, "good-1", seed=7, pull=0)
    assert evaluator.evaluate(spec) == evaluator.evaluate(spec)
    others = {evaluator.evaluate(TrialSpec(0, "good-1", seed=s, pull=0)) for s in (8, 9)}
    assert len(others) > 1  # the seed does reach the training


@pytest.mark.torch
def test_score_and_score_arrays(evaluator: TorchCNNEvaluator) -> None:
    pool = evaluator.pool
    both = evaluator.score(["good-0", "good-1"], seed=3, split="test")
    arrays = evaluator.score_arrays(
        ArraySplit.concat([pool.dataset("good-0"), pool.dataset("good-1")]), 3, "test"
    )
    assert both == arrays and both > 0.8
    assert 0.0 <= evaluator.score([], seed=3, split="validation") <= 1.0


@pytest.mark.torch
def test_describe_and_pickle(evaluator: TorchCNNEvaluator) -> None:
    d = evaluator.describe()
    assert d["kind"] == "torch" and d["params"]["channels"] == [4, 8]
    assert d["params"]["hidden"] == [16] and d["pool"] == "bars"
    clone = pickle.loads(pickle.dumps(evaluator))
    spec = TrialSpec(0, "good-0", seed=2, pull=0)
    assert clone.evaluate(spec) == evaluator.evaluate(spec)
    assert clone.describe() == d


@pytest.mark.torch
def test_deterministic_mode_is_restored(torch, evaluator: TorchCNNEvaluator) -> None:
    before = torch.are_deterministic_algorithms_enabled()
    evaluator.evaluate(TrialSpec(0, "good-0", seed=0, pull=0))
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.torch
def test_fact_size_model_shapes(torch) -> None:
    ev = TorchCNNEvaluator(make_pool(), channels=(64, 128), hidden=(3072, 100))
    model = ev.build_model(10)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (8192, 3072), (3072, 100), (100, 10),
    ]  # fmt: skip
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.torch
def test_bad_configuration(torch) -> None:
    pool = make_pool()
    with pytest.raises(DashselError, match="divisible"):
        TorchCNNEvaluator(pool, image_shape=(1, 18, 18), channels=(4, 8))
    with pytest.raises(DataError, match="image_shape"):
        TorchCNNEvaluator(pool, image_shape=(3, 32, 32)).score([], seed=0)
    if not torch.cuda.is_available():
        with pytest.raises(DashselError, match="CUDA is not available"):
            TorchCNNEvaluator(pool, **{**SMALL, "device": "cuda"}).score([], seed=0)


# --- the conformance suite (skipped without torch) ---------------------------------------------
class TestTorchConformance(EvaluatorConformance):
    @pytest.fixture
    def evaluator(self, evaluator: TorchCNNEvaluator) -> TorchCNNEvaluator:
        return evaluator
