"""``dashsel study ...`` and ``dashsel journal ...``: drive a journaled study from a shell.

Each command is one short process: it takes the journal's lock for one ask or tell and lets
go, so a shell loop, a SLURM array job or ten Kubernetes pods may share one journal (on a
local or lock-capable filesystem; see docs/cluster.md). Exit status: 0 done, 2 a user error
(one line), 3 the budget is spent (``ask``), 4 a serial study has pending trials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

study_app = typer.Typer(
    help="Ask/tell on a journal from any process (cluster jobs, your own training script).",
    no_args_is_help=True,
)
journal_app = typer.Typer(help="Journal files: consistent copies.", no_args_is_help=True)

#: Exit status of ``study ask`` once the budget is spent, so ``while dashsel study ask ...``
#: loops end.
EXIT_BUDGET_SPENT = 3
#: Exit status of ``study ask`` on a serial study with pending trials.
EXIT_PENDING = 4

JournalArg = Annotated[Path, typer.Argument(help="The study's journal (SQLite file).")]


def _errors():
    from dashsel.cli import _user_errors

    return _user_errors()


@study_app.command("create")
def create(
    journal: JournalArg,
    manifest: Annotated[Path, typer.Argument(help="Pool manifest (TOML).")],
    policy: Annotated[
        str | None, typer.Option(help="Policy name (default: the default engine).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Study seed.")] = 0,
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, help="Aim at the top-k datasets.")
    ] = None,
    percentile: Annotated[
        float | None, typer.Option(help="Aim at everything above this percentile.")
    ] = None,
    budget: Annotated[
        int | None, typer.Option(min=1, help="Trials in all (default: no limit).")
    ] = None,
    pending_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds after which a pending trial is given back."),
    ] = None,
    deterministic: Annotated[
        bool,
        typer.Option(
            help="The trainings are deterministic (a repeat returns the same reward): the "
            "engine never asks for an evaluated dataset while others remain."
        ),
    ] = False,
    serial: Annotated[
        bool,
        typer.Option(help="Refuse to ask while trials are pending (timing-free trials)."),
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Policy parameter key=value (repeatable)."),
    ] = None,
    no_dedupe: Annotated[
        bool,
        typer.Option(
            "--no-dedupe",
            help="Keep near-copies of chosen candidates in the selection (by default they "
            "are skipped when every candidate has arrays, as in `dashsel run`).",
        ),
    ] = False,
) -> None:
    """Create a study of the pool in MANIFEST in a new JOURNAL."""
    with _errors():
        from dashsel.cli import _parse_params
        from dashsel.study import Study

        with Study.create(
            journal,
            manifest,
            policy,
            seed=seed,
            k=top_k,
            percentile=percentile,
            budget=budget,
            pending_timeout=pending_timeout,
            deterministic=deterministic,
            serial=serial,
            policy_params=_parse_params(param, "--param"),
            dedupe=False if no_dedupe else None,
        ) as study:
            meta = study.meta
        typer.echo(
            f"created {journal}: policy {meta['policy']['name']}, seed {seed}, "
            f"{meta['pool']['n_datasets']} datasets, budget {budget or 'unlimited'}",
            err=True,
        )


@study_app.command("ask")
def ask(
    journal: JournalArg,
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="Trials to ask for.")] = 1,
) -> None:
    """Hand out trials: one line per trial, TRIAL<TAB>DATASET_ID; marks them running."""
    with _errors():
        from dashsel.study import BudgetSpent, Study, TrialsPending

        try:
            with Study.open(journal) as study:
                asked = study.ask(n)
        except BudgetSpent as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(EXIT_BUDGET_SPENT) from None
        except TrialsPending as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(EXIT_PENDING) from None
    for trial, dataset in asked:
        typer.echo(f"{trial}\t{dataset}")


@study_app.command("tell")
def tell(
    journal: JournalArg,
    trial: Annotated[int, typer.Argument(help="The trial number `study ask` printed.")],
    reward: Annotated[
        str | None, typer.Argument(help="The reward (higher is better).", show_default=False)
    ] = None,
    failed: Annotated[
        str | None, typer.Option("--failed", help="Record the trial as failed, with why.")
    ] = None,
) -> None:
    """Record a pending trial's REWARD (or --failed "why")."""
    with _errors():
        from dashsel.errors import RewardError
        from dashsel.study import Study

        value: float | None = None
        if reward is not None:
            try:
                value = float(reward)
            except ValueError:
                raise RewardError(f"reward for trial {trial} is not a number: {reward!r}") from None
        with Study.open(journal) as study:
            study.tell(trial, value, failed=failed)


@study_app.command("abandon")
def abandon(
    journal: JournalArg,
    trial: Annotated[int, typer.Argument(help="A pending trial to give back.")],
) -> None:
    """Give a pending TRIAL back (its dataset may be asked again; no budget spent)."""
    with _errors():
        from dashsel.study import Study

        with Study.open(journal) as study:
            study.abandon(trial)


@study_app.command("show")
def show(
    journal: JournalArg,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1)] = None,
    percentile: Annotated[float | None, typer.Option()] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the selection as JSON here.")
    ] = None,
) -> None:
    """Show the selection so far (the study's rule unless --top-k/--percentile is given)."""
    with _errors():
        _show(journal, top_k, percentile, json_out)


def _show(journal: Path, k: int | None, percentile: float | None, json_out: Path | None) -> None:
    from dashsel.jsonable import write_json_atomic
    from dashsel.report import read_journal, report_dict

    if json_out is not None and json_out.is_dir():
        from dashsel.errors import DashselError

        raise DashselError(f"--json {json_out} is a folder; give a file name")
    meta, frame = read_journal(journal)
    rep: dict[str, Any] = report_dict(journal, meta, frame, k=k, percentile=percentile)
    typer.echo(
        f"{journal}: policy {rep['policy']}, seed {rep['seed']}, budget "
        f"{rep['budget'] or 'unlimited'}; {rep['n_complete']} complete, {rep['n_running']} "
        f"pending, {rep['n_failed']} failed or given back"
    )
    rule = rep["rule"]
    source = "as asked" if rule["source"] == "asked" else "the run's rule"
    typer.echo(f"selected by {rule['text']} ({source}):")
    for d in rep["selected"] or []:
        typer.echo(f"  {d}")
    for d, why in rep["set_skipped"].items():
        typer.echo(f"  (skipped {d}: {why})")
    if json_out is not None:
        write_json_atomic(rep, json_out)
        typer.echo(f"wrote {json_out}", err=True)


@journal_app.command("backup")
def backup(
    journal: Annotated[Path, typer.Argument(help="A journal (may be in use by a run).")],
    copy: Annotated[Path, typer.Argument(help="The new single-file copy.")],
) -> None:
    """Copy JOURNAL consistently to one self-contained file COPY, even during a run."""
    with _errors():
        from dashsel.journal import backup as do_backup

        do_backup(journal, copy)
        typer.echo(f"wrote {copy}", err=True)
