"""The study runner: the paper's Table 1, Figures 4 and 5, Tables 3 and 4 on a benchmark suite.

How a study spends its compute
------------------------------
Trial trainings are expensive and policies need hundreds of them per run, so the harness
evaluates each candidate dataset once per evaluation seed and stores the rewards in a
:class:`~dashsel_bench.bank.RewardBank` (through the on-disk evaluation cache). Policies
then run against :func:`~dashsel_bench.bank.replay_evaluator`, which replays
``reward[dataset][spec.seed % n_seeds]``: a pull is a noisy draw (the default evaluator
bootstraps its training data), different runs and steps map to different seeds, and a run of
150 steps costs microseconds per step. Only the final models (local + chosen data, scored on
the test split) are trained for real, through the same cached evaluator, so repeated
selections cost nothing.

Every table and plot comes from the raw per-run rows each study returns (see
:data:`~dashsel_bench.results.ROW_COLUMNS`); :mod:`dashsel_bench.report` aggregates them
(mean ± std over runs).

Conventions (documented in the report's README)
-----------------------------------------------
* Run ``r`` uses seed ``r`` for the policy (trial ``t`` is evaluated with
  ``derive_seed(r, t)``) and for training the final model.
* ``k`` (datasets kept at the end, top-k by posterior mean) defaults to the number of
  target-domain candidates, ``n_subsets``: the size of the Global oracle's choice.
* The *main budget* is the largest of ``budgets``; weak-init, grouping, instance-baseline and
  peer studies use it. The small-budget study (Figure 5) uses one evaluation per candidate.
* Instance-level baselines get as many samples as the datasets DaSH chose in the same run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from dashsel.errors import DashselError
from dashsel.evaluators.base import Evaluator
from dashsel.pool import Pool
from dashsel_bench.bank import build_bank, pool_scores, replay_evaluator
from dashsel_bench.common import cache_dir, relevant_ids
from dashsel_bench.config import (
    GROUPING_METHODS,
    REFERENCE_METHOD,
    SMALL_BUDGET_METHODS,
    StudyConfig,
)
from dashsel_bench.methods import Method, MethodOutcome, RunContext, label, make_method
from dashsel_bench.results import ROW_COLUMNS, StudyResult, versions
from dashsel_bench.suites import resolve_suite

log = logging.getLogger(__name__)

#: ``progress(message, done, total)``, called as cells complete.
Progress = Callable[..., None]


# --- the runner ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One (study, target, local fraction, method, budget, run) to run."""

    study: str
    target: str
    fraction: float
    method: str
    budget: int
    run: int


class StudyRunner:
    """Plans every cell of the requested studies, then runs them, sharing work between studies.

    A cell's outcome depends only on (target, local fraction, method, budget, run), so cells
    that several studies need (DaSH at the main budget appears in five) run once.
    """

    def __init__(self, config: StudyConfig, progress: Progress | None) -> None:
        self.config = config
        self.suite = resolve_suite(config.suite)
        self.progress = progress
        self.notes: list[str] = []
        self.bank_stats: list[dict[str, Any]] = []
        self.bank_seconds = 0.0
        self._pools: dict[tuple[str, float], Pool] = {}
        self._scorers: dict[tuple[str, float], Evaluator] = {}
        self._trainers: dict[tuple[str, float], Evaluator] = {}
        self._banks: dict[tuple[str, float], Evaluator] = {}
        self._scores: dict[tuple[str, float], pd.DataFrame] = {}
        self.scores_seconds = 0.0
        self._near_copies: dict[tuple[str, float], Any] = {}
        self.near_copies_seconds = 0.0
        self._memo: dict[tuple[str, float, str, int, int], MethodOutcome] = {}
        self._methods: dict[str, Method | None] = {}
        targets = config.targets or tuple(self.suite.targets)
        unknown = [t for t in targets if t not in self.suite.targets]
        if unknown:
            raise DashselError(
                f"unknown target(s) {unknown} for suite {config.suite_name!r}: "
                f"use {', '.join(self.suite.targets)}"
            )
        self.targets: tuple[str, ...] = tuple(targets)

    # -- resources --
    def _say(self, message: str, done: int | None = None, total: int | None = None) -> None:
        log.info(message)
        if self.progress is not None:
            self.progress(message, done, total)

    def method(self, name: str) -> Method | None:
        """The method, or None (with a note, once) when its dependency is missing."""
        if name not in self._methods:
            m = make_method(name)
            reason = m.unavailable()
            if reason is not None:
                self.notes.append(f"skipped {reason}")
                log.warning("skipped %s", reason)
                self._methods[name] = None
            else:
                self._methods[name] = m
        return self._methods[name]

    def pool(self, target: str, fraction: float) -> Pool:
        key = (target, fraction)
        if key not in self._pools:
            kwargs: dict[str, Any] = dict(
                n_subsets=self.config.n_subsets,
                grouping="perfect",
                local_fraction=fraction,
                seed=self.config.split_seed,
            )
            if self.config.features is not None:
                kwargs["features"] = self.config.features
            if self.config.traps:
                kwargs["traps"] = True
            self._pools[key] = self.suite.make_pool(target, **kwargs)
        return self._pools[key]

    def scorer(self, target: str, fraction: float) -> Evaluator:
        key = (target, fraction)
        if key not in self._scorers:
            pool = self.pool(target, fraction)
            if self.config.evaluator is not None:
                inner = self.config.evaluator(pool)
            else:
                from dashsel.evaluators.sklearn import LogisticEvaluator

                inner = LogisticEvaluator(pool, bootstrap=True)
            self._trainers[key] = inner
            self._scorers[key] = self._cached(inner)
        return self._scorers[key]

    def trainer(self, target: str, fraction: float) -> Evaluator:
        """The uncached evaluator behind :meth:`scorer` (instance-level baselines train on
        sample arrays, which the dataset-keyed cache cannot key)."""
        self.scorer(target, fraction)
        return self._trainers[(target, fraction)]

    def _cached(self, inner: Evaluator) -> Evaluator:
        if not self.config.cache:
            return inner
        try:
            from dashsel.evaluators.cache import CachedEvaluator
        except ImportError as exc:
            note = f"evaluations not cached on disk: {exc}"
            if note not in self.notes:
                self.notes.append(note)
            return inner
        path = cache_dir("evals") / f"{self.config.suite_name}.sqlite"
        return CachedEvaluator(inner, path)

    def bank(self, target: str, fraction: float) -> Evaluator:
        key = (target, fraction)
        if key not in self._banks:
            pool = self.pool(target, fraction)
            self._say(f"reward bank {target} (local {fraction:g})")
            bank = build_bank(
                self.scorer(target, fraction),
                pool.dataset_ids,
                self.config.n_seeds,
                workers=self.config.workers,
            )
            self.bank_seconds += bank.seconds
            relevant = [bool(e.meta.get("relevant")) for e in pool.entries]
            means = bank.rewards.mean(axis=1)
            self.bank_stats.append(
                {
                    "target": target,
                    "local_fraction": fraction,
                    "seconds": bank.seconds,
                    "n_datasets": len(bank.ids),
                    "n_seeds": bank.n_seeds,
                    "mean_reward_relevant": _mean(means[relevant]),
                    "mean_reward_other": _mean(means[[not r for r in relevant]]),
                    "mean_seed_std": float(bank.rewards.std(axis=1).mean()),
                }
            )
            self._banks[key] = replay_evaluator(bank)
        return self._banks[key]

    def scores(self, target: str, fraction: float) -> pd.DataFrame:
        """The pool's training-free scores (computed once, cached on disk with the banks)."""
        key = (target, fraction)
        if key not in self._scores:
            self._say(f"training-free scores {target} (local {fraction:g})")
            t0 = time.perf_counter()
            self._scores[key] = pool_scores(self.pool(target, fraction), cache=self.config.cache)
            self.scores_seconds += time.perf_counter() - t0
        return self._scores[key]

    def near_copies(self, target: str, fraction: float) -> Any:
        """The pool's near-copy structure (:func:`dashsel.sets.find_near_copies`), once."""
        key = (target, fraction)
        if key not in self._near_copies:
            from dashsel.sets import find_near_copies

            self._say(f"near-copies {target} (local {fraction:g})")
            red = find_near_copies(self.pool(target, fraction))
            self.near_copies_seconds += red.seconds
            self._near_copies[key] = red
        return self._near_copies[key]

    def k(self, pool: Pool) -> int | None:
        if self.config.percentile is not None:
            return None
        if self.config.k is not None:
            return self.config.k
        return max(1, len(relevant_ids(pool)))

    # -- cells --
    def outcome(
        self, target: str, fraction: float, method: Method, budget: int, run: int
    ) -> MethodOutcome:
        # Budget-free methods (references) are the same at every budget.
        b = budget if method.uses_budget else 0
        key = (target, fraction, method.name, b, run)
        if key not in self._memo:
            pool = self.pool(target, fraction)
            ctx = RunContext(
                pool=pool,
                rewards=self.bank(target, fraction),
                scorer=self.scorer(target, fraction),
                trainer=self.trainer(target, fraction),
                budget=budget,
                run=run,
                k=self.k(pool),
                percentile=self.config.percentile,
                reference=lambda: self.reference(target, fraction, budget, run),
                scores=lambda: self.scores(target, fraction),
                redundancy=lambda: self.near_copies(target, fraction),
            )
            self._memo[key] = method.run(ctx)
        return self._memo[key]

    def reference(self, target: str, fraction: float, budget: int, run: int) -> MethodOutcome:
        ref = self.method(REFERENCE_METHOD)
        if ref is None:
            raise DashselError(f"the reference method {REFERENCE_METHOD!r} is unavailable")
        return self.outcome(target, fraction, ref, budget, run)

    # -- planning --
    def plan(self) -> list[Cell]:
        cfg = self.config
        main = cfg.main_budget
        by_kind: dict[str, list[str]] = {"policy": [], "instance": [], "peer": [], "reference": []}
        for name in cfg.methods:
            by_kind[make_method(name).kind].append(name)
        refs = ["local", "global"]
        cells: list[Cell] = []

        def add(
            study: str,
            methods: Iterable[str],
            budgets: Iterable[int],
            fraction: float = 1.0,
            targets: Sequence[str] = self.targets,
        ) -> None:
            budgets = list(budgets)
            for t in targets:
                for m in dict.fromkeys(methods):
                    ref = make_method(m).kind == "reference"
                    for b in [0] if ref else budgets:
                        for r in range(cfg.runs):
                            cells.append(Cell(study, t, fraction, m, b, r))

        # Curves stop at the main budget (the most a user said they would spend) and end on it.
        ckpts = sorted({*(c for c in cfg.checkpoints if c <= main), main})
        for study in cfg.studies:
            if study == "main_table":
                add(study, [*refs, *by_kind["policy"]], cfg.budgets)
            elif study == "curve":
                add(study, [*refs, *cfg.curve_methods, *by_kind["policy"]], ckpts)
            elif study == "small_budget":
                for t in self.targets:
                    # One evaluation per candidate by default (the paper's 15 on digits5).
                    b = cfg.small_budget or len(self.pool(t, 1.0))
                    add(study, ["local", *SMALL_BUDGET_METHODS, "global"], [b], targets=(t,))
            elif study == "weak_init":
                for f in cfg.local_fractions:
                    add(study, ["local", REFERENCE_METHOD], [main], fraction=f)
            elif study == "grouping_ablation":
                add(study, [*refs, *GROUPING_METHODS], ckpts)
            elif study == "instance_baselines":
                add(study, [*refs, REFERENCE_METHOD, *by_kind["instance"]], [main])
            elif study == "peers":
                add(study, [*refs, REFERENCE_METHOD, *by_kind["peer"]], [main])
        return cells

    def run(self) -> StudyResult:
        start = time.perf_counter()
        cells = self.plan()
        rows: dict[str, list[dict[str, Any]]] = {s: [] for s in self.config.studies}
        seconds: dict[str, float] = dict.fromkeys(self.config.studies, 0.0)
        for i, cell in enumerate(cells):
            method = self.method(cell.method)
            if method is None:
                continue
            if i % max(1, self.config.runs) == 0:
                self._say(
                    f"{cell.study}: {cell.target} {label(cell.method)} budget {cell.budget}",
                    i,
                    len(cells),
                )
            t0 = time.perf_counter()
            out = self.outcome(cell.target, cell.fraction, method, cell.budget, cell.run)
            seconds[cell.study] += time.perf_counter() - t0
            rows[cell.study].append(self._row(cell, method, out))
        self._say("done", len(cells), len(cells))
        frames = {s: pd.DataFrame(r, columns=list(ROW_COLUMNS)) for s, r in rows.items()}
        timings = {f"study:{s}": round(v, 3) for s, v in seconds.items()}
        timings["reward_banks"] = round(self.bank_seconds, 3)
        timings["scores"] = round(self.scores_seconds, 3)
        timings["near_copies"] = round(self.near_copies_seconds, 3)
        timings["total"] = round(time.perf_counter() - start, 3)
        return StudyResult(
            # The targets actually run, so reports never depend on the suite object.
            config=replace(self.config, targets=self.targets),
            frames=frames,
            notes=self.notes,
            timings=timings,
            versions=versions(),
            bank_stats=self.bank_stats,
        )

    def _row(self, cell: Cell, method: Method, out: MethodOutcome) -> dict[str, Any]:
        return {
            "study": cell.study,
            "suite": self.config.suite_name,
            "target": cell.target,
            "method": method.name,
            "label": method.label,
            "kind": method.kind,
            "local_fraction": cell.fraction,
            "budget": cell.budget,
            "run": cell.run,
            "accuracy": out.accuracy,
            "n_evaluations": out.n_evaluations,
            "evaluation_seconds": out.evaluation_seconds,
            "overhead_seconds": out.overhead_seconds,
            "n_selected": len(out.selected),
            "n_relevant": out.n_relevant,
            "n_samples": out.n_samples,
            "selected": ";".join(out.selected),
        }


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def run_study(config: StudyConfig, progress: Progress | None = None) -> StudyResult:
    """Run the configured studies and return their raw rows.

    Parameters
    ----------
    config : StudyConfig
        What to run.
    progress : callable, optional
        Called as ``progress(message, done, total)`` as cells complete (``done``/``total``
        count planned cells; None while filling reward banks).

    Returns
    -------
    StudyResult
        Call :meth:`StudyResult.write` to produce the tables, plots and JSON.
    """
    if config.blas_threads is None:
        return StudyRunner(config, progress).run()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=config.blas_threads):
        return StudyRunner(config, progress).run()
