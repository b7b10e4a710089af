"""The one registry of policies and peers: names, typos, lazy peers, no import cycle, and the
pending-aware conformance checks run against every registered name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dashsel.errors import DashselError
from dashsel.policies import (
    DEFAULT_POLICY,
    PEER_POLICY_NAMES,
    POLICIES,
    DaSH,
    GroupMean,
    HiTS,
    available_policies,
    make_policy,
    policy_factory,
    register_policy,
)
from dashsel.testing import PolicyConformance


def test_typo_suggests_closest_name() -> None:
    with pytest.raises(DashselError, match=r"unknown policy 'dashh'; did you mean 'dash'\?") as e:
        make_policy("dashh")
    assert "\n" not in str(e.value)
    with pytest.raises(DashselError, match=r"did you mean 'optuna'"):
        make_policy("optnua")
    with pytest.raises(DashselError, match=r"unknown policy 'zzzz' \(use one of"):
        make_policy("zzzz")


def test_available_policies_lists_builtins_and_peers() -> None:
    names = set(available_policies())
    assert {"dash", "dash-eb", "flat", "ucb", "egreedy", "roundrobin", "random"} <= names
    assert {"hits", "group-mean"} <= names
    assert set(PEER_POLICY_NAMES) <= names
    assert all(callable(f) for f in available_policies().values())


def test_importing_policies_imports_no_peer_module() -> None:
    """Peers are registered by "module:attribute": importing dashsel.policies (or building
    a built-in policy) imports neither dashsel.peers nor any peer library."""
    code = (
        "import sys; import dashsel.policies as p; p.make_policy('dash'); "
        "bad = [m for m in sys.modules if m.startswith(('dashsel.peers', 'optuna', "
        "'mabwiser', 'pydvl'))]; print(bad); assert not bad; "
        "t = p.make_policy('optuna', n_startup_trials=2); "
        "assert 'dashsel.peers.optuna_tpe' in sys.modules and 'optuna' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout


def test_no_import_cycle_peers_first() -> None:
    code = "import dashsel.peers as q; import dashsel.policies as p; print(q.PEER_POLICIES)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_register_by_module_path(monkeypatch) -> None:
    monkeypatch.setitem(POLICIES, "dash-alias", "dashsel.policies.dash:DaSH")
    assert type(make_policy("dash-alias", sigma_r=0.1)) is DaSH
    assert POLICIES["dash-alias"] is DaSH  # resolved once
    with pytest.raises(DashselError, match="module:attribute"):
        register_policy("broken", "no-colon-here")
    register_policy("dash", DaSH)  # the same factory again: fine
    with pytest.raises(DashselError, match="already registered"):
        register_policy("dash", "dashsel.policies.flat:FlatTS")


def test_default_policy_is_the_engine_and_comes_first() -> None:
    assert DEFAULT_POLICY == "hits" and next(iter(POLICIES)) == DEFAULT_POLICY
    assert type(make_policy(DEFAULT_POLICY)) is HiTS and HiTS.name == DEFAULT_POLICY
    assert type(make_policy("group-mean")) is GroupMean and GroupMean.name == "group-mean"
    with pytest.raises(DashselError, match="does not take parameter"):
        make_policy("hits", sigma=0.1)


def test_policy_factory_resolves_peer() -> None:
    from dashsel.peers import OptunaTPE

    assert policy_factory("OPTUNA") is OptunaTPE


# --- the new conformance checks, on every registered name --------------------------------
_NEW_CHECKS = [
    "test_ask_honours_exclude",
    "test_exclude_checks_ids",
    "test_batch_is_single_asks_with_growing_exclude",
    "test_sklearn_clone_and_set_params",
    "test_bad_arguments_are_one_line_errors",
    "test_finite_tells_keep_posterior_finite",
]


def _suite(name: str) -> PolicyConformance:
    kwargs = {"n_startup_trials": 3} if name == "optuna" else {}
    cls = type(f"_Suite_{name}", (PolicyConformance,), {})
    cls.make_policy = staticmethod(lambda: make_policy(name, **kwargs))  # type: ignore[assignment]
    return cls()


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_registered_policy_passes_pending_checks(name: str) -> None:
    suite = _suite(name)
    for check in _NEW_CHECKS:
        getattr(suite, check)()
    for sizes in ([3, 1, 4], [1], [6]):
        suite.test_batch_holds_distinct_datasets(sizes)
