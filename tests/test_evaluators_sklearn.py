"""Tests of dashsel.evaluators.sklearn and of the sklearn-side kinds of make_evaluator."""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from dashsel.errors import DashselError, DataError, ManifestError, MissingExtraError
from dashsel.evaluators import (
    LogisticEvaluator,
    SklearnEvaluator,
    evaluator_kinds,
    make_evaluator,
    validate_evaluator_config,
)
from dashsel.manifest import load_manifest
from dashsel.pool import Pool
from dashsel.testing import EvaluatorConformance
from dashsel.toy import make_toy_pool, write_toy_manifest
from dashsel.trial import TrialSpec


@pytest.fixture(scope="module")
def pool() -> Pool:
    return make_toy_pool(seed=0, relevant_group=1)


def spec(dataset_id: str, seed: int = 0, number: int = 0, pull: int = 0) -> TrialSpec:
    return TrialSpec(number=number, dataset_id=dataset_id, seed=seed, pull=pull)


def test_helpful_dataset_beats_harmful_one(pool):
    ev = LogisticEvaluator(pool)
    rewards = {e.id: ev.evaluate(spec(e.id)) for e in pool.entries}
    relevant = [r for d, r in rewards.items() if pool.entry(d).meta["relevant"]]
    harmful = [r for d, r in rewards.items() if not pool.entry(d).meta["relevant"]]
    assert min(relevant) > max(harmful)
    assert all(0.0 <= r <= 1.0 for r in rewards.values())


def test_score_global_beats_local_and_harmful(pool):
    ev = LogisticEvaluator(pool)
    relevant = [e.id for e in pool.entries if e.meta["relevant"]]
    harmful = [e.id for e in pool.entries if not e.meta["relevant"]]
    local = ev.score([], seed=0, split="test")
    assert ev.score(relevant, seed=0, split="test") > local
    assert ev.score(relevant, seed=0) > ev.score(harmful, seed=0)
    assert local == ev.score_arrays(None, seed=0, split="test")


def test_score_arrays_matches_score(pool):
    ev = LogisticEvaluator(pool)
    assert ev.score(["g1-0"], 3, "validation") == ev.score_arrays(
        pool.dataset("g1-0"), 3, "validation"
    )


def test_same_seed_same_reward_different_seed_differs(pool):
    ev = SklearnEvaluator(pool, RandomForestClassifier(n_estimators=5))
    a = ev.evaluate(spec("g0-0", seed=1))
    assert ev.evaluate(spec("g0-0", seed=1, number=9, pull=3)) == a
    assert any(ev.evaluate(spec("g0-0", seed=s)) != a for s in range(2, 6))


def test_random_state_is_set_everywhere(pool):
    ev = SklearnEvaluator(pool, RandomForestClassifier(n_estimators=5))
    assert ev.make_model(7).get_params()["model__random_state"] == 7
    assert ev.estimator.random_state is None  # the template is never touched
    plain = SklearnEvaluator(pool, RandomForestClassifier(), standardize=False)
    assert plain.make_model(5).random_state == 5


def test_bootstrap_makes_repeated_pulls_noisy(pool):
    plain = LogisticEvaluator(pool)
    noisy = LogisticEvaluator(pool, bootstrap=True)
    assert plain.evaluate(spec("g1-0", seed=0)) == plain.evaluate(spec("g1-0", seed=1))
    rewards = [noisy.evaluate(spec("g1-0", seed=s)) for s in range(3)]
    assert len(set(rewards)) > 1
    assert noisy.evaluate(spec("g1-0", seed=2)) == rewards[2]
    # the final model trains on every row, bootstrap or not
    assert noisy.score(["g1-0"], 0) == plain.score(["g1-0"], 0)


def test_single_class_training_predicts_that_class():
    rng = np.random.default_rng(0)
    pool = Pool.from_arrays(
        {"a": (rng.normal(size=(4, 2)), [0, 0, 0, 0])},
        {"a": "g"},
        local=(rng.normal(size=(3, 2)), [0, 0, 0]),
        validation=(rng.normal(size=(4, 2)), [0, 1, 1, 1]),
    )
    assert LogisticEvaluator(pool).evaluate(spec("a")) == 0.25


def test_images_are_flattened():
    rng = np.random.default_rng(0)
    y = np.arange(8) % 2
    images = rng.normal(size=(8, 1, 3, 3)) + y[:, None, None, None]
    pool = Pool.from_arrays(
        {"a": (images, y)}, {"a": "g"}, local=(images, y), validation=(images, y)
    )
    assert LogisticEvaluator(pool).evaluate(spec("a")) > 0.5


def test_feature_width_mismatch_names_the_dataset():
    pool = Pool.from_arrays(
        {"wide": (np.ones((2, 5)), [0, 1])},
        {"wide": "g"},
        local=(np.ones((2, 3)), [0, 1]),
        validation=(np.ones((2, 3)), [0, 1]),
    )
    with pytest.raises(DataError, match="dataset 'wide': features have shape"):
        LogisticEvaluator(pool).evaluate(spec("wide"))


def test_not_a_classifier():
    from sklearn.linear_model import LinearRegression

    with pytest.raises(DashselError, match="not a scikit-learn classifier"):
        SklearnEvaluator(make_toy_pool(n_groups=1), LinearRegression())


def test_describe_is_json_and_tracks_config_and_data(pool):
    ev = LogisticEvaluator(pool, C=0.5)
    d = ev.describe()
    assert json.loads(json.dumps(d)) == d
    assert d["kind"] == "logistic" and d["params"]["C"] == 0.5
    assert d["pool"] == pool.name and d["hierarchy"] == pool.hierarchy.fingerprint()
    assert LogisticEvaluator(pool, C=0.5).describe() == d
    assert LogisticEvaluator(pool, C=1.0).describe() != d
    assert LogisticEvaluator(pool, C=0.5, bootstrap=True).describe() != d
    other = make_toy_pool(seed=0, relevant_group=2)  # same ids, other arrays
    assert LogisticEvaluator(other, C=0.5).describe()["data"] != d["data"]
    rf = SklearnEvaluator(pool, RandomForestClassifier(n_estimators=3)).describe()
    assert rf["estimator"].endswith("RandomForestClassifier") and rf["params"]["n_estimators"] == 3


def test_pickle_round_trip_with_lazy_manifest_pool(tmp_path):
    m = load_manifest(write_toy_manifest(tmp_path, n_groups=2, n_per_dataset=20))
    ev = m.make_evaluator()
    assert all(e.data is None for e in m.pool.entries)
    clone = pickle.loads(pickle.dumps(ev))
    s = spec(m.pool.dataset_ids[0], seed=4)
    assert clone.evaluate(s) == ev.evaluate(s)
    assert clone.describe() == ev.describe()


# --- make_evaluator ----------------------------------------------------------------------------
def test_kinds_registered():
    assert set(evaluator_kinds()) >= {"logistic", "sklearn", "table", "torch"}


def test_make_logistic(pool, tmp_path):
    ev = make_evaluator(
        {"kind": "logistic", "C": 2, "max_iter": 50, "bootstrap": True}, pool, tmp_path
    )
    assert isinstance(ev, LogisticEvaluator)
    assert ev.C == 2.0 and ev.max_iter == 50 and ev.bootstrap and ev.standardize


def test_make_sklearn_by_dotted_path(pool, tmp_path):
    config = {
        "kind": "sklearn",
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 4, "max_depth": 3},
        "standardize": False,
    }
    ev = make_evaluator(config, pool, tmp_path)
    assert isinstance(ev, SklearnEvaluator) and not isinstance(ev, LogisticEvaluator)
    assert ev.estimator.n_estimators == 4 and not ev.standardize
    assert 0.0 <= ev.evaluate(spec("g1-0")) <= 1.0


@pytest.mark.parametrize(
    ("config", "key", "problem"),
    [
        (
            {"kind": "sklearn", "estimator": "sklearn.linear_model.LinearRegression"},
            "evaluator.estimator",
            "is a scikit-learn estimator but not a classifier",
        ),
        (
            {"kind": "sklearn", "estimator": "sklearn.nope.Thing"},
            "evaluator.estimator",
            "'sklearn.nope.Thing' is not allowed",
        ),
        (
            {"kind": "sklearn", "estimator": "sklearn.ensemble.Nope"},
            "evaluator.estimator",
            "'sklearn.ensemble.Nope' is not allowed",
        ),
        (
            {"kind": "sklearn", "estimator": "RandomForest"},
            "evaluator.estimator",
            "did you mean 'RandomForestClassifier'?",
        ),
        (
            {"kind": "sklearn", "estimator": "sklearn.svm.SVC", "params": {"bogus": 1}},
            "evaluator.params",
            "SVC has no parameter 'bogus'",
        ),
        ({"kind": "sklearn"}, "evaluator.estimator", "missing"),
        (
            {"kind": "sklearn", "estimator": "sklearn.svm.SVC", "params": 3},
            "evaluator.params",
            "must be a table",
        ),
        ({"kind": "logistic", "max_iter": 2.5}, "evaluator.max_iter", "positive integer"),
        ({"kind": "logistic", "C": -1}, "evaluator.C", "positive number"),
        ({"kind": "logistic", "bootstrap": "yes"}, "evaluator.bootstrap", "true or false"),
        ({"kind": "logistic", "alpha": 1}, "evaluator.alpha", "unknown key"),
        ({"C": 1}, "evaluator.kind", "missing"),
        ({"kind": "boost"}, "evaluator.kind", "unknown kind 'boost'; use one of"),
        ({"kind": "logistc"}, "evaluator.kind", "did you mean 'logistic'?"),
    ],
)
def test_bad_evaluator_config_names_source_and_key(pool, tmp_path, config, key, problem):
    with pytest.raises(ManifestError) as info:
        make_evaluator(config, pool, tmp_path, source="m.toml")
    msg = str(info.value)
    assert msg.startswith(f"m.toml: {key}: "), msg
    assert problem in msg and "\n" not in msg


def test_validate_applies_the_allow_list_without_importing():
    with pytest.raises(ManifestError, match=r"'no\.such\.Module' is not allowed"):
        validate_evaluator_config({"kind": "sklearn", "estimator": "no.such.Module"})
    # Allowed outside the manifest: accepted, and still not imported until the build.
    kind = validate_evaluator_config(
        {"kind": "sklearn", "estimator": "no.such.Module"}, allow_estimators=["no.such.Module"]
    )
    assert kind.trains


def test_torch_without_the_extra_says_how_to_install(pool, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dashsel.evaluators.torch_cnn", None)  # import fails
    with pytest.raises(MissingExtraError, match=r"pip install 'dashsel\[torch\]'"):
        make_evaluator({"kind": "torch", "epochs": 1}, pool, tmp_path)


def test_torch_keys_are_checked_against_the_class(pool, tmp_path, monkeypatch):
    import types

    class FakeTorch:
        def __init__(self, pool, epochs=1, lr=0.1):
            self.pool, self.epochs = pool, epochs

    module = types.ModuleType("dashsel.evaluators.torch_cnn")
    module.TorchCNNEvaluator = FakeTorch
    monkeypatch.setitem(sys.modules, "dashsel.evaluators.torch_cnn", module)
    assert make_evaluator({"kind": "torch", "epochs": 3}, pool, tmp_path).epochs == 3
    with pytest.raises(ManifestError, match=r"evaluator\.epoch: unknown key"):
        make_evaluator({"kind": "torch", "epoch": 3}, pool, tmp_path)


def test_plain_logistic_regression_matches_evaluator(pool):
    # The reward is exactly: standardised LogisticRegression on local + dataset, accuracy on val.
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.concatenate([pool.local.X, pool.dataset("g1-0").X])
    y = np.concatenate([pool.local.y, pool.dataset("g1-0").y])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
    expected = float(np.mean(model.predict(pool.validation.X) == pool.validation.y))
    assert LogisticEvaluator(pool).evaluate(spec("g1-0")) == expected


# --- the conformance suite ---------------------------------------------------------------------
class TestLogisticConformance(EvaluatorConformance):
    @pytest.fixture
    def evaluator(self):
        return LogisticEvaluator(make_toy_pool(seed=0, relevant_group=1))


class TestSklearnConformance(EvaluatorConformance):
    @pytest.fixture
    def evaluator(self):
        from sklearn.tree import DecisionTreeClassifier

        pool = make_toy_pool(seed=0, relevant_group=1)
        return SklearnEvaluator(pool, DecisionTreeClassifier(max_depth=3), bootstrap=True)


# --- the logistic evaluator without scikit-learn in the main process --------------------------
LOGISTIC_SETS = [
    {},
    {"C": 0.5, "max_iter": 7},
    {"C": 100.0, "max_iter": 400, "bootstrap": True},
    {"C": 1, "standardize": False},  # an int C stays an int, as in get_params
    {"C": np.float64(3.0), "max_iter": np.int64(20)},
]


def old_description(ev: LogisticEvaluator, kwargs: dict) -> dict:
    """What describe() recorded when the evaluator made its LogisticRegression up front."""
    from dashsel.evaluators.base import pool_identity
    from dashsel.jsonable import to_jsonable

    est = LogisticRegression(C=kwargs.get("C", 1.0), max_iter=kwargs.get("max_iter", 300))
    return {
        "kind": "logistic",
        "estimator": f"{type(est).__module__}.{type(est).__qualname__}",
        "params": to_jsonable(est.get_params(deep=False)),
        "bootstrap": bool(kwargs.get("bootstrap", False)),
        "standardize": bool(kwargs.get("standardize", True)),
        **pool_identity(ev.pool),
    }


@pytest.mark.parametrize("kwargs", LOGISTIC_SETS, ids=lambda k: repr(sorted(k)))
def test_logistic_description_from_source_matches_the_estimator(pool, kwargs):
    lazy = LogisticEvaluator(pool, **kwargs)
    from_source = lazy.describe()
    assert lazy._estimator is None  # described without making the estimator
    made = LogisticEvaluator(pool, **kwargs)
    _ = made.estimator
    # Byte-identical journal headers: the same JSON text, keys in the same order.
    expected = json.dumps(old_description(made, kwargs))
    assert json.dumps(from_source) == json.dumps(made.describe()) == expected
    # Making it later checks it against the description (raises on a difference).
    assert lazy.estimator.get_params()["C"] == kwargs.get("C", 1.0)


def test_logistic_describe_imports_no_sklearn():
    import subprocess

    code = (
        "import json, sys\n"
        "from dashsel.toy import make_toy_pool\n"
        "from dashsel.evaluators.sklearn import LogisticEvaluator\n"
        "ev = LogisticEvaluator(make_toy_pool(seed=0), C=2.0, max_iter=9)\n"
        "d = ev.describe()\n"
        "print(json.dumps([d, sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn')]))\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": src},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    description, modules = json.loads(out.stdout)
    assert modules == []
    made = LogisticEvaluator(make_toy_pool(seed=0), C=2.0, max_iter=9)
    _ = made.estimator
    assert description == made.describe()


def test_logistic_falls_back_to_the_estimator_when_the_source_is_unreadable(pool, monkeypatch):
    from dashsel.evaluators import sklearn as sk

    monkeypatch.setattr(sk, "_logistic_defaults", lambda: None)
    ev = LogisticEvaluator(pool, C=0.25)
    assert ev._source_params is None
    assert json.dumps(ev.describe()) == json.dumps(old_description(ev, {"C": 0.25}))
    assert ev._estimator is not None  # made to describe it
    assert sk.logistic_params(no_such_parameter=1) is None


def test_logistic_source_params_that_differ_are_refused(pool):
    from dashsel.evaluators import sklearn as sk

    ev = LogisticEvaluator(pool)
    version, params = ev._source_params
    ev._source_params = (version, {**params, "tol": 0.5})
    with pytest.raises(DashselError, match="please report this as a dashsel bug"):
        _ = ev.estimator
    # Another scikit-learn version (a Ray worker elsewhere): nothing to compare against.
    other = LogisticEvaluator(pool)
    other._source_params = ("0.0-other", {**params, "tol": 0.5})
    assert other.estimator.get_params()["tol"] == LogisticRegression().tol
    assert sk.describe_estimator(other.estimator)[0] == sk.LOGISTIC_PATH


def test_logistic_pickles_without_its_estimator(pool):
    ev = LogisticEvaluator(pool, C=3.0)
    back = pickle.loads(pickle.dumps(ev))
    assert back._estimator is None and back._source_params == ev._source_params
    assert back.evaluate(spec(pool.entries[0].id)) == ev.evaluate(spec(pool.entries[0].id))


def test_logistic_unpickles_the_state_older_versions_sent(pool):
    ev = LogisticEvaluator(pool, C=3.0)
    state = {k: v for k, v in vars(ev).items() if k not in ("_estimator", "_source_params")}
    state["estimator"] = LogisticRegression(C=3.0, max_iter=300)
    back = LogisticEvaluator.__new__(LogisticEvaluator)
    back.__setstate__(state)
    assert back.estimator is state["estimator"]
    assert back.describe() == ev.describe()
