"""The estimator allow-list: a manifest names only scikit-learn classifiers or what the user
allowed outside it; nothing else is imported or built (issue 10, item 1)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.dummy import DummyClassifier
from typer.testing import CliRunner

from dashsel.cli import app
from dashsel.errors import DashselError, ManifestError
from dashsel.evaluators import SklearnEvaluator, make_evaluator, validate_evaluator_config
from dashsel.evaluators.sklearn import check_estimator_name, resolve_estimator
from dashsel.manifest import load_manifest
from dashsel.toy import make_toy_pool, write_toy_manifest

runner = CliRunner()

# A module that records being imported: naming it in a manifest must never import it.
EVIL_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")

class Thing:
    def __init__(self, **kwargs):
        Path({marker!r}).write_text("constructed")
"""

# A classifier in a module the user may allow by dotted path.
TRUSTED_MODULE = """
from sklearn.dummy import DummyClassifier

class MyClassifier(DummyClassifier):
    pass
"""


class Recorded(ClassifierMixin, BaseEstimator):
    """A classifier that records every construction."""

    built: ClassVar[list[dict]] = []

    def __init__(self, depth: int = 1) -> None:
        Recorded.built.append({"depth": depth})
        self.depth = depth

    def fit(self, X, y):
        self.classes_ = sorted(set(y))
        return self

    def predict(self, X):
        return [self.classes_[0]] * len(X)


def _manifest(root: Path, estimator: str, params: dict | None = None) -> Path:
    evaluator = {"kind": "sklearn", "estimator": estimator}
    if params is not None:
        evaluator["params"] = params
    return write_toy_manifest(
        root, evaluator=evaluator, n_groups=2, datasets_per_group=2, n_per_dataset=20
    )


@pytest.fixture
def popen(tmp_path: Path) -> tuple[Path, Path]:
    """The manifest from issue 10 item 1, and the file its shell command would create."""
    marker = tmp_path / "FILE"
    params = {"args": ["sh", "-c", f"id > {marker}"]}
    return _manifest(tmp_path / "pool", "subprocess.Popen", params), marker


@pytest.fixture
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    marker = tmp_path / "evil-ran"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "evilmod.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.delitem(sys.modules, "evilmod", raising=False)
    return _manifest(tmp_path / "pool", "evilmod.Thing", {"x": 1}), marker


def _one_line(exc: pytest.ExceptionInfo, manifest: Path, value: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(manifest) in msg and "evaluator.estimator" in msg and repr(value) in msg, msg
    assert "--allow-estimator" in msg and "allow_estimators=" in msg, msg
    return msg


# --- the manifest from the issue ---------------------------------------------------------------
def test_popen_manifest_is_refused_by_load_manifest(popen):
    manifest, marker = popen
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    _one_line(info, manifest, "subprocess.Popen")
    assert not marker.exists()


def test_popen_config_is_refused_by_make_evaluator(popen, tmp_path):
    manifest, marker = popen
    config = {
        "kind": "sklearn",
        "estimator": "subprocess.Popen",
        "params": {"args": ["sh", "-c", f"id > {marker}"]},
    }
    with pytest.raises(ManifestError) as info:
        make_evaluator(config, make_toy_pool(n_groups=2), tmp_path, source=manifest)
    _one_line(info, manifest, "subprocess.Popen")
    assert not marker.exists()


@pytest.mark.parametrize("command", [["check"], ["run", "--budget", "2", "--no-final"]])
def test_popen_manifest_is_refused_by_the_cli(popen, command):
    manifest, marker = popen
    res = runner.invoke(app, [*command, str(manifest)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "evaluator.estimator" in res.output and "subprocess.Popen" in res.output
    assert not marker.exists()


@pytest.mark.parametrize(
    "name", ["os.system", "builtins.eval", "sklearn.decomposition.PCA", "subprocess.Popen"]
)
def test_dangerous_or_wrong_names_are_refused(tmp_path, name):
    manifest = _manifest(tmp_path / "pool", name, {})
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    msg = _one_line(info, manifest, name)
    if name.startswith("sklearn."):
        assert "not a classifier" in msg
    with pytest.raises(ManifestError):
        make_evaluator({"kind": "sklearn", "estimator": name}, make_toy_pool(), tmp_path)
    res = runner.invoke(app, ["check", str(manifest)])
    assert res.exit_code == 2 and "Traceback" not in res.output


# --- nothing the manifest names is imported or built --------------------------------------------
def test_an_unlisted_module_is_never_imported(evil):
    manifest, marker = evil
    with pytest.raises(ManifestError, match="is not allowed"):
        load_manifest(manifest)
    with pytest.raises(ManifestError, match="is not allowed"):
        make_evaluator(
            {"kind": "sklearn", "estimator": "evilmod.Thing"}, make_toy_pool(), manifest.parent
        )
    for command in (["check"], ["run", "--budget", "1", "--no-final"]):
        assert runner.invoke(app, [*command, str(manifest)]).exit_code == 2
    assert "evilmod" not in sys.modules and not marker.exists()


def test_validate_refuses_before_import_and_allowed_paths_wait_for_build(evil):
    _, marker = evil
    with pytest.raises(ManifestError):
        validate_evaluator_config({"kind": "sklearn", "estimator": "evilmod.Thing"})
    # Allowed by the user: validation still imports nothing, building does.
    validate_evaluator_config(
        {"kind": "sklearn", "estimator": "evilmod.Thing"}, allow_estimators=["evilmod.Thing"]
    )
    assert "evilmod" not in sys.modules and not marker.exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.from_regex(r"[a-z_][a-z0-9_]{0,8}(\.[A-Za-z_][A-Za-z0-9_]{0,8}){1,3}", fullmatch=True)
)
def test_names_outside_sklearn_never_reach_import(name):
    check_estimator_name("LogisticRegression")  # warm the scikit-learn lookup
    real = importlib.import_module
    calls: list[str] = []

    def spy(module, *args, **kwargs):
        calls.append(module)
        return real(module, *args, **kwargs)

    importlib.import_module = spy
    try:
        if name.split(".")[0] == "sklearn":
            return
        with pytest.raises(ManifestError, match="is not allowed"):
            validate_evaluator_config(
                {"kind": "sklearn", "estimator": name, "params": {"a": 1}}, source="m.toml"
            )
    finally:
        importlib.import_module = real
    assert calls == []


# --- what is allowed --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "RandomForestClassifier",
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.linear_model.LogisticRegression",
    ],
)
def test_sklearn_classifiers_by_name_or_path(tmp_path, name):
    ev = make_evaluator(
        {"kind": "sklearn", "estimator": name, "params": {"random_state": 3}},
        make_toy_pool(),
        tmp_path,
    )
    assert isinstance(ev, SklearnEvaluator) and ev.estimator.random_state == 3


def test_user_allowed_class_and_dotted_path(tmp_path, monkeypatch):
    pool = make_toy_pool()
    Recorded.built.clear()
    name = f"{Recorded.__module__}.{Recorded.__qualname__}"
    ev = make_evaluator(
        {"kind": "sklearn", "estimator": name, "params": {"depth": 2}},
        pool,
        tmp_path,
        allow_estimators=[Recorded],
    )
    assert isinstance(ev.estimator, Recorded) and ev.estimator.depth == 2
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "trustedmod.py").write_text(TRUSTED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    assert resolve_estimator("trustedmod.MyClassifier", ["trustedmod.MyClassifier"]).__name__ == (
        "MyClassifier"
    )
    assert resolve_estimator("DummyClassifier") is DummyClassifier


def test_params_are_checked_before_construction(tmp_path):
    Recorded.built.clear()
    name = f"{Recorded.__module__}.{Recorded.__qualname__}"
    with pytest.raises(ManifestError, match=r"evaluator\.params: .*no parameter 'dept'.*'depth'"):
        make_evaluator(
            {"kind": "sklearn", "estimator": name, "params": {"dept": 2}},
            make_toy_pool(),
            tmp_path,
            allow_estimators=[Recorded],
        )
    assert Recorded.built == []


def test_bad_param_values_are_caught_before_the_first_trial(tmp_path):
    with pytest.raises(ManifestError, match=r"evaluator\.params: .*rejects these parameters"):
        make_evaluator(
            {"kind": "sklearn", "estimator": "SVC", "params": {"C": "big"}},
            make_toy_pool(),
            tmp_path,
        )


def test_allowed_non_classifier_is_still_refused(tmp_path):
    with pytest.raises(ManifestError, match=r"evaluator\.estimator: .*not a scikit-learn classif"):
        make_evaluator(
            {"kind": "sklearn", "estimator": "sklearn.decomposition.PCA"},
            make_toy_pool(),
            tmp_path,
            allow_estimators=["sklearn.decomposition.PCA"],
        )


def test_bad_allowance_is_one_line(tmp_path):
    with pytest.raises(ManifestError, match="must be a class or a dotted path"):
        make_evaluator(
            {"kind": "sklearn", "estimator": "os.system"},
            make_toy_pool(),
            tmp_path,
            allow_estimators=["not a path"],
        )


def test_cli_allow_estimator_option(tmp_path, monkeypatch):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "trustedmod.py").write_text(TRUSTED_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    manifest = _manifest(tmp_path / "pool", "trustedmod.MyClassifier", {"strategy": "prior"})
    refused = runner.invoke(app, ["check", str(manifest)])
    assert refused.exit_code == 2 and "--allow-estimator trustedmod.MyClassifier" in refused.output
    ok = runner.invoke(
        app, ["check", str(manifest), "--allow-estimator", "trustedmod.MyClassifier"]
    )
    assert ok.exit_code == 0, ok.output
    res = runner.invoke(
        app,
        [
            "run",
            str(manifest),
            "--budget",
            "2",
            "--no-final",
            "--allow-estimator",
            "trustedmod.MyClassifier",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        load_manifest(manifest, allow_estimators=["trustedmod.MyClassifier"])
        .make_evaluator()
        .estimator.strategy
        == "prior"
    )


_TOML_VALUES = st.recursive(
    st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=4,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(
        [
            "RandomForestClassifier",
            "SVC",
            "LogisticRegression",
            "KNeighborsClassifier",
            "GaussianNB",
        ]
    ),
    params=st.dictionaries(
        st.sampled_from(["n_estimators", "C", "max_depth", "n_neighbors", "kernel", "bogus", ""]),
        _TOML_VALUES,
        max_size=3,
    ),
)
def test_any_params_give_an_evaluator_or_a_manifest_error(name, params):
    pool = make_toy_pool(n_groups=2, datasets_per_group=1, n_per_dataset=5, n_validation=5)
    try:
        make_evaluator(
            {"kind": "sklearn", "estimator": name, "params": params}, pool, ".", source="m.toml"
        )
    except ManifestError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("m.toml: evaluator.")


@pytest.mark.parametrize("name", ["A\n", "\n", "a.b\r\nc"])
def test_refusal_of_a_name_with_a_newline_is_one_line(name: str) -> None:
    """Found by tests/test_fuzz_manifest.py: the --allow-estimator hint printed the raw name."""
    with pytest.raises(DashselError) as info:
        check_estimator_name(name, ())
    assert "\n" not in str(info.value) and "\r" not in str(info.value)
