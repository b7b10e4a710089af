"""``dashsel score MANIFEST``: rank a pool's candidates by training-free scores.

The command function is registered on the main app in :mod:`dashsel.cli`; it lives here so the
CLI module stays small.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from dashsel.scores import DEFAULT_SCORE


def score(
    manifest: Annotated[Path, typer.Argument(help="Pool manifest (TOML) with arrays.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write every score and its cost as JSON here.")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows of the table to print.")] = 25,
    which: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated scores (mean, mmd, otdd, label_quality, otdd_exact) "
            "[default: all but otdd_exact]."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random state of the scores.")] = 0,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            min=1,
            help="Worker processes scoring candidates at once [default: the CPUs available; "
            "fewer for a small pool]. The scores do not depend on it.",
        ),
    ] = None,
) -> None:
    """Rank the candidates of MANIFEST by training-free scores (no model is trained)."""
    from dashsel.cli import _user_errors, console

    with _user_errors():
        from rich.table import Table

        from dashsel.manifest import load_manifest
        from dashsel.scores import ScoreError, score_pool

        m = load_manifest(manifest)
        names = [w.strip() for w in which.split(",") if w.strip()] if which else None
        try:
            frame = score_pool(m.pool, which=names, random_state=seed, n_jobs=jobs)
        except ScoreError as exc:
            raise ScoreError(f"{m.path}: {exc}") from None
        ranked = frame.sort_values("score_default", ascending=False, kind="stable")
        score_cols = [c for c in ranked.columns if c.startswith("score_") and c != "score_default"]
        table = Table(
            title=f"training-free scores of {m.pool.name}, ranked by {DEFAULT_SCORE} "
            f"(higher = expected better)"
        )
        table.add_column("rank", justify="right")
        table.add_column("dataset")
        table.add_column("group")
        table.add_column("rows", justify="right")
        for col in score_cols:
            table.add_column(col.removeprefix("score_"), justify="right", no_wrap=True)
        for rank, (did, row) in enumerate(ranked.head(top).iterrows(), start=1):
            table.add_row(
                str(rank),
                str(did),
                str(row["group"]),
                str(row["n_rows"]),
                *(_fmt(row[c]) for c in score_cols),
            )
        if len(ranked) > top:
            table.add_row("", f"... {len(ranked) - top} more", "", "", *[""] * len(score_cols))
        console.print(table)
        cost = frame.attrs["cost_seconds"]
        workers = frame.attrs["n_jobs"]
        console.print(
            f"{len(frame)} candidates scored in {frame.attrs['wall_seconds']:.2f}s "
            f"({cost['total']:.2f}s summed over {workers} worker{'s' * (workers > 1)}; "
            f"default score: {DEFAULT_SCORE})"
        )
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(_to_json(m.path, ranked), indent=2))
            console.print(f"wrote {json_out}")


def _fmt(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _to_json(manifest: Path, ranked: Any) -> dict[str, Any]:
    records = []
    for rank, (did, row) in enumerate(ranked.iterrows(), start=1):
        rec: dict[str, Any] = {"rank": rank, "dataset": str(did)}
        for col, value in row.items():
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif hasattr(value, "item"):
                value = value.item()
            rec[str(col)] = value
        records.append(rec)
    return {
        "manifest": str(manifest),
        "pool": ranked.attrs.get("pool"),
        "random_state": ranked.attrs.get("random_state"),
        "default_score": DEFAULT_SCORE,
        "cost_seconds": ranked.attrs.get("cost_seconds", {}),
        "datasets": records,
    }
