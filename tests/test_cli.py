"""The command line: run, resume, report, errors as one line, example pools, bench."""

from __future__ import annotations

import json
import sqlite3
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dashsel import __version__
from dashsel.cli import app
from dashsel.pool import ArraySplit, DatasetEntry, Pool
from dashsel.toy import write_toy_manifest, write_toy_table
from dashsel_bench.common import regroup

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pools")
    return {
        "arrays": write_toy_manifest(root / "arrays", seed=0),
        "table": write_toy_table(root / "table", seed=0),
    }


def test_version() -> None:
    out = invoke("--version")
    assert out.exit_code == 0 and __version__ in out.stdout


def test_run_on_arrays_writes_json_with_required_keys(pools, tmp_path: Path) -> None:
    out_json = tmp_path / "out.json"
    res = invoke(
        "run", pools["arrays"], "--policy", "dash", "--budget", "15", "--top-k", "3",
        "--json", out_json,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(out_json.read_text())
    for key in ("selected", "selected_groups", "posterior", "trials", "test_accuracy"):
        assert key in data
    assert len(data["selected"]) == 3 and len(data["trials"]) == 15
    assert {"id", "group", "mean", "std", "pulls"} <= set(data["posterior"][0])
    # The toy pool is built so that group g3's datasets help: DaSH must find them.
    assert data["selected_groups"] == ["g3"]
    assert data["test_accuracy"] > data["local_accuracy"]


def test_run_on_table_manifest_needs_no_arrays(pools) -> None:
    res = invoke("run", pools["table"], "--policy", "flat", "--budget", "24", "--top-k", "2")
    assert res.exit_code == 0, res.output
    assert "selected" in res.stdout and "test accuracy" not in res.stdout


def test_resume_from_journal_gives_the_same_result(pools, tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    full = tmp_path / "full.json"
    invoke("run", pools["table"], "--budget", "20", "--top-k", "3", "--journal", tmp_path / "u.db",
           "--json", full)  # fmt: skip
    # A shorter run, then the same command with the full budget continues it.
    invoke("run", pools["table"], "--budget", "8", "--top-k", "3", "--journal", db)
    resumed = tmp_path / "resumed.json"
    res = invoke(
        "run", pools["table"], "--budget", "20", "--top-k", "3", "--journal", db, "--json", resumed
    )
    assert res.exit_code == 0, res.output
    a, b = json.loads(full.read_text()), json.loads(resumed.read_text())
    assert a["selected"] == b["selected"]
    key = [(t["dataset_id"], t["reward"]) for t in a["trials"]]
    assert key == [(t["dataset_id"], t["reward"]) for t in b["trials"]]
    with sqlite3.connect(db) as con:
        (n,) = con.execute("select count(*) from trials").fetchone()
    assert n == 20  # nothing repeated


def test_report_shows_posterior_and_trials(pools, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    invoke("run", pools["table"], "--budget", "10", "--journal", db)
    res = invoke("report", db, "--trials", "3")
    assert res.exit_code == 0, res.output
    assert "posterior" in res.stdout and "last 3 trials" in res.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "missing.toml"], "no such manifest"),
        (["run", "{bad}"], "datasets[0].group"),
        (["run", "{table}", "--policy", "nope"], "unknown policy 'nope'"),
        (["run", "{table}", "-p", "sigma_r"], "key=value"),
        (["run", "{table}", "--top-k", "2", "--percentile", "90"], "either k"),
        (["report", "{notdb}"], "not a dashsel journal"),
    ],
)
def test_errors_are_one_line_without_traceback(pools, tmp_path: Path, args, needle) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[pool]\nname = "x"\n[[datasets]]\nid = "a"\n')
    notdb = tmp_path / "notes.txt"
    notdb.write_text("hello\n")
    subs = {"{bad}": str(bad), "{table}": str(pools["table"]), "{notdb}": str(notdb)}
    res = runner.invoke(app, [subs.get(a, a) for a in args])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    err = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and needle in err[0], res.output


def test_journal_of_another_run_is_refused_untouched(pools, tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    invoke("run", pools["table"], "--budget", "5", "--journal", db)
    before = db.read_bytes()
    res = runner.invoke(app, ["run", str(pools["table"]), "--seed", "1", "--journal", str(db)])
    assert res.exit_code == 2 and "seed" in res.output
    with sqlite3.connect(db) as con:
        (n,) = con.execute("select count(*) from trials").fetchone()
    assert n == 5 and len(before) > 0


def test_nan_reward_is_reported_with_dataset(tmp_path: Path) -> None:
    root = tmp_path / "nan"
    manifest = write_toy_table(root, seed=1)
    csv = root / "rewards.csv"
    lines = csv.read_text().splitlines()
    header, first = lines[0], lines[1].split(",")
    bad_id = first[0]
    first[1] = "nan"
    csv.write_text("\n".join([header, ",".join(first), *lines[2:]]) + "\n")
    res = runner.invoke(
        app, ["run", str(manifest), "--policy", "roundrobin", "--budget", "5",
              "--journal", str(tmp_path / "n.db")],
    )  # fmt: skip
    # A NaN reward is a failed trial: logged with the dataset, set aside, and the run goes on.
    assert res.exit_code == 0, res.output
    assert f"dataset {bad_id} " in res.output and "not finite" in res.output
    assert "Traceback" not in res.output


def test_labels_outside_the_task_name_the_dataset(tmp_path: Path) -> None:
    manifest = write_toy_manifest(tmp_path / "p", seed=0)
    bad = tmp_path / "p" / "data" / "g1-1.npz"
    with np.load(bad, allow_pickle=False) as z:
        X, y = z["X"], z["y"].copy()
    y[0] = 99  # one row outside the task: dropped with a warning, the run goes on
    np.savez(bad, X=X, y=y)
    for args in (["check", str(manifest)], ["run", str(manifest), "--policy", "roundrobin"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and "Traceback" not in res.output
    np.savez(bad, X=X, y=np.full_like(y, 99))  # nothing left: an error naming the dataset
    for args in (["check", str(manifest)], ["run", str(manifest), "--policy", "roundrobin"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert "'g1-1'" in res.output and "none of the task's classes" in res.output
    ok = write_toy_manifest(tmp_path / "ok", seed=0)
    res = invoke("check", ok)
    assert res.exit_code == 0 and "12 datasets in 4 groups" in res.stdout


def test_data_example_and_policies(tmp_path: Path) -> None:
    res = invoke("data", "example", tmp_path / "ex")
    assert res.exit_code == 0
    assert (tmp_path / "ex" / "arrays" / "manifest.toml").exists()
    assert (tmp_path / "ex" / "table" / "manifest.toml").exists()
    res = invoke("policies")
    assert res.exit_code == 0 and "dash" in res.stdout and "optuna" in res.stdout


class _TinySuite:
    """Two shifted Gaussian domains: the target's own subsets help, the other's hurt."""

    name = "tiny"
    targets = ("a", "b")

    def make_pool(self, target, *, n_subsets=3, grouping="perfect", local_fraction=1.0, seed=0,
                  **_: object) -> Pool:  # fmt: skip
        rng = np.random.default_rng(seed)
        shift = {"a": 0.0, "b": 3.0}

        def draw(domain: str, n: int) -> tuple[np.ndarray, np.ndarray]:
            y = rng.integers(0, 2, n)
            flip = 1 if domain != target else 0
            X = rng.normal(size=(n, 4)) + shift[domain] + (y ^ flip)[:, None] * 1.5
            return X, y

        entries = [
            DatasetEntry(
                f"{dom}{s}",
                dom,
                data=ArraySplit(*draw(dom, 40)),
                meta={"domain": dom, "subset": s, "relevant": dom == target, "n": 40},
            )
            for dom in ("a", "b")
            for s in range(n_subsets)
        ]
        n_local = max(4, int(10 * local_fraction))
        return Pool(
            regroup(entries, grouping),
            local=ArraySplit(*draw(target, n_local)),
            validation=ArraySplit(*draw(target, 100)),
            test=ArraySplit(*draw(target, 100)),
            name=f"tiny-{target}",
        )


def test_bench_writes_tables_and_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("dashsel_tiny_suite")
    module.SUITE = _TinySuite()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dashsel_tiny_suite", module)
    from dashsel_bench import suites

    monkeypatch.setitem(suites.SUITES, "tiny", "dashsel_tiny_suite")
    monkeypatch.setenv("DASHSEL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    res = invoke(
        "bench", "tiny", "--policies", "dash,flat,random", "--runs", "2", "--budget", "6,12",
        "--studies", "main_table,curve", "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    table = (out / "main_table.md").read_text()
    for label in ("Local", "Global", "DaSH", "DaS (flat)"):
        assert label in table
    assert (out / "results.json").exists() and list(out.glob("*.png"))


# --- original files: Digit-Five and DomainNet, on the fixture files of test_bench_originals ----
def _bench_small(out: Path, *args: object):
    return invoke(
        "bench", *args, "--policies", "dash,random", "--runs", "1", "--budget", "4",
        "--studies", "main_table", "--subsets", "2", "--out", out,
    )  # fmt: skip


def test_bench_digits5_from_original_files(tmp_path: Path, monkeypatch) -> None:
    from test_bench_originals import write_digit_five

    root = tmp_path / "digit-five"
    root.mkdir()
    write_digit_five(root, np.random.default_rng(0))
    monkeypatch.setenv("DASHSEL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    res = _bench_small(
        out, "digits5", root, "--source", "original", "--targets", "usps",
        "--local-size", "10", "--val-size", "10",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    rows = data["studies"]["main_table"]
    assert {r["target"] for r in rows} == {"usps"}  # the original files' USPS domain
    assert {r["method"] for r in rows} >= {"dash", "random", "local", "global"}


def test_bench_domainnet(tmp_path: Path, monkeypatch) -> None:
    from test_bench_originals import write_domainnet

    write_domainnet(tmp_path / "dn", n_train=40, n_test=9, n_classes=3)
    monkeypatch.setenv("DASHSEL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    res = _bench_small(
        out, "domainnet", tmp_path / "dn", "--domains", "clipart,sketch", "--classes", "0,1,2",
        "--targets", "sketch", "--local-size", "6", "--val-size", "6",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["suite"] == "domainnet"
    selected = {r["selected"] for r in data["studies"]["main_table"] if r["method"] == "dash"}
    assert selected and all(s.split(";")[0][:-1] in ("clipart", "sketch") for s in selected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("domainnet",), "needs ROOT"),
        (("digits5", "--source", "original"), "needs ROOT"),
        (("digits5", "--source", "nope"), "unknown --source"),
        (("spam", "--source", "original", "."), "applies to digits5 only"),
        (("digits5", "--classes", "1,2"), "applies to original files only"),
        (("digits5", "/no/such/folder", "--source", "original"), "no such folder"),
    ],
)
def test_bench_source_errors_are_one_line(args: tuple[str, ...], message: str) -> None:
    res = invoke("bench", *args)
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("command", [("demo",), ("bench", "digits5"), ("data", "build", "digits5")])
def test_missing_bench_extra_gives_install_hint(command, monkeypatch, tmp_path: Path) -> None:
    # A None entry in sys.modules makes `import mlxtend` raise ImportError, as if uninstalled.
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    res = invoke(*command, *(("--out", tmp_path) if command[0] != "data" else ()))
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert "mlxtend" in lines[0]
    assert "install the benchmark extra: pip install 'dashsel[bench]'" in lines[0]


def test_data_build_spam_does_not_need_the_bench_extra(monkeypatch) -> None:
    # spam's data needs scikit-learn only: building it must not demand matplotlib and co.
    from dashsel_bench import suites

    built = []
    module = types.ModuleType("dashsel_fake_spam")
    module.SUITE = types.SimpleNamespace(build=lambda rebuild: built.append(rebuild))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dashsel_fake_spam", module)
    monkeypatch.setitem(suites.SUITES, "spam", "dashsel_fake_spam")
    for name in ("matplotlib", "skimage", "mlxtend"):
        monkeypatch.setitem(sys.modules, name, None)
    res = invoke("data", "build", "spam")
    assert res.exit_code == 0, res.output
    assert built == [False]
