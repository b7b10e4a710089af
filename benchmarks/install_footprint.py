"""Install footprint: what `pip install dashsel`, the demo and the dev install weigh.

Builds three fresh virtual environments from this checkout (under a temporary folder, or
``--where``) and measures each with ``du``:

* ``pip install .``: the library alone. Checked to hold none of the optional heavy packages
  (:data:`FORBIDDEN`), and to run: ``import dashsel``, ``dashsel data example DIR``, then
  ``dashsel run`` on both example pools (the replay table and the arrays).
* ``pip install '.[bench]'``: what ``make demo`` installs now.
* ``pip install '.[dev]'``: what ``make demo`` installed before (the whole dev extra, which
  now includes ``bench``), and what ``make test`` installs.

Writes the figures to ``docs/benchmarks/footprint.md`` (``--out``). Needs a package index
(pip) and a few minutes; exits non-zero when a check fails.

    python benchmarks/install_footprint.py [--skip-dev] [--keep] [--where DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Distributions a plain `pip install dashsel` must not pull in (pip names, lower case).
FORBIDDEN: tuple[str, ...] = (
    "matplotlib",
    "scikit-image",
    "mlxtend",
    "ray",
    "torch",
    "optuna",
    "pydvl",
    "mabwiser",
    "pyarrow",
)


@dataclass
class Install:
    name: str
    spec: str
    venv: Path
    seconds: float = 0.0
    bytes: int = 0
    packages: dict[str, str] = field(default_factory=dict)

    @property
    def mib(self) -> float:
        return self.bytes / 2**20


def sh(*args: str | Path, cwd: Path | None = None) -> str:
    """Run a command; on failure raise with its output (the point of a check is to show it)."""
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


def du_bytes(path: Path) -> int:
    """Disk usage of ``path`` as ``du -sk`` reports it (blocks, as `du -sh` counts)."""
    return int(sh("du", "-sk", path).split()[0]) * 1024


def install(name: str, extra: str, where: Path) -> Install:
    venv = where / name
    spec = f"{REPO}[{extra}]" if extra else str(REPO)
    inst = Install(name, f"pip install '.[{extra}]'" if extra else "pip install .", venv)
    start = time.perf_counter()
    sh(sys.executable, "-m", "venv", venv)
    sh(venv / "bin" / "python", "-m", "pip", "install", "-q", spec)
    inst.seconds = time.perf_counter() - start
    listed = json.loads(sh(venv / "bin" / "python", "-m", "pip", "list", "--format=json"))
    inst.packages = {p["name"].lower(): p["version"] for p in listed}
    inst.bytes = du_bytes(venv)
    return inst


def check_library(inst: Install, work: Path) -> list[str]:
    """The checks of a plain install; returns the lines of the report (raises on failure)."""
    present = sorted(p for p in FORBIDDEN if p in inst.packages)
    if present:
        raise RuntimeError(f"`pip install .` pulled in {', '.join(present)}")
    py = inst.venv / "bin" / "python"
    cli = inst.venv / "bin" / "dashsel"
    sh(py, "-c", "import dashsel, dashsel.cli, dashsel.run, dashsel.policies")
    lines = [f"* none of {', '.join(FORBIDDEN)} installed", "* `import dashsel`: ok"]
    example = work / "example"
    sh(cli, "data", "example", example)
    for pool in ("table", "arrays"):
        out = work / f"{pool}.json"
        sh(cli, "run", example / pool / "manifest.toml", "--budget", "12", "--top-k", "3",
           "--json", out)  # fmt: skip
        result = json.loads(out.read_text())
        if len(result["selected"]) != 3:
            raise RuntimeError(f"dashsel run on {pool}: selected {result['selected']}")
        lines.append(
            f"* `dashsel run DIR/{pool}/manifest.toml --budget 12 --top-k 3`: ok, selected "
            f"{', '.join(result['selected'])}"
        )
    # The benchmark commands answer with the install hint, not a traceback.
    proc = subprocess.run([cli, "demo", "--out", work / "demo"], capture_output=True, text=True)
    hint = "install the benchmark extra: pip install 'dashsel[bench]'"
    if proc.returncode != 2 or hint not in proc.stderr or "Traceback" in proc.stderr:
        raise RuntimeError(f"dashsel demo without the extra: {proc.returncode} {proc.stderr}")
    # Double backticks: the message itself holds backticks.
    lines.append(f"* `dashsel demo` without the extra: `` {proc.stderr.strip()} ``")
    return lines


def report(installs: list[Install], checks: list[str]) -> str:
    by = {i.name: i for i in installs}
    rows = [
        "| install | what it is for | size | packages | install time |",
        "|---|---|---:|---:|---:|",
    ]
    purpose = {
        "library": "`pip install dashsel`: the library and its CLI",
        "demo": "`make demo` now (library + bench extra)",
        "dev": "`make test`, and `make demo` before this change",
    }
    for i in installs:
        rows.append(
            f"| `{i.spec}` | {purpose[i.name]} | {i.mib:,.0f} MiB | {len(i.packages)} | "
            f"{i.seconds:.0f} s |"
        )
    text = [
        "# Install footprint",
        "",
        "Measured by `benchmarks/install_footprint.py` (`make footprint`): fresh virtual",
        "environments built from this checkout, sized with `du -sk` (the venv folder, pip's",
        f"cache not included). Python {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}. Install times depend on the machine's load and pip's cache.",
        "",
        *rows,
        "",
    ]
    if "demo" in by and "dev" in by:
        ratio = by["demo"].bytes / by["dev"].bytes
        text += [
            f"The demo's install is {100 * ratio:.0f}% of the dev install it used to be "
            f"({by['demo'].mib:,.0f} MiB against {by['dev'].mib:,.0f} MiB).",
            "",
        ]
    if "library" in by:
        heavy = ", ".join(
            f"{p} {v}"
            for p, v in sorted(by["library"].packages.items())
            if p in ("numpy", "scipy", "scikit-learn", "pandas")
        )
        text += ["## `pip install .` checks", "", *checks, "", f"Numeric stack: {heavy}.", ""]
    if "demo" in by and "dev" in by:
        only_dev = sorted(set(by["dev"].packages) - set(by["demo"].packages))
        text += [
            "## What the dev install adds to the demo's",
            "",
            ", ".join(only_dev) + ".",
            "",
        ]
    return "\n".join(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "footprint.md")
    parser.add_argument("--where", type=Path, default=None, help="Folder for the venvs.")
    parser.add_argument("--skip-dev", action="store_true", help="Skip the dev install.")
    parser.add_argument("--keep", action="store_true", help="Keep the venvs.")
    args = parser.parse_args()
    where = args.where or Path(tempfile.mkdtemp(prefix="dashsel-footprint-"))
    where.mkdir(parents=True, exist_ok=True)
    try:
        installs = []
        lib = install("library", "", where)
        installs.append(lib)
        print(f"library: {lib.mib:,.0f} MiB", flush=True)
        checks = check_library(lib, where / "work")
        print("\n".join(checks), flush=True)
        for name, extra in (("demo", "bench"), ("dev", "dev")):
            if name == "dev" and args.skip_dev:
                continue
            inst = install(name, extra, where)
            installs.append(inst)
            print(f"{name}: {inst.mib:,.0f} MiB", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(installs, checks))
        print(f"wrote {args.out}")
        by = {i.name: i for i in installs}
        if "dev" in by and by["demo"].bytes > by["dev"].bytes / 2:
            print("the demo install is more than half the dev install", file=sys.stderr)
            return 1
        return 0
    finally:
        if not args.keep and args.where is None:
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
