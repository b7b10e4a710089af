"""The study runner: the paper's Table 1, Figures 4 and 5, Tables 3 and 4 on a benchmark suite.

How a study spends its compute
------------------------------
Trial trainings are expensive and policies need hundreds of them per run, so the harness
evaluates each candidate dataset once per evaluation seed and stores the rewards in a
:class:`RewardBank` (through the on-disk evaluation cache). Policies then run against a
:class:`BankEvaluator`, which replays ``reward[dataset][spec.seed % n_seeds]``: a pull is a
noisy draw (the default evaluator bootstraps its training data), different runs and steps map
to different seeds, and a run of 150 steps costs microseconds per step. Only the final
models (local + chosen data, scored on the test split) are trained for real, through the same
cached evaluator, so repeated selections cost nothing.

Every table and plot comes from the raw per-run rows each study returns (see
:data:`ROW_COLUMNS`); :mod:`dashsel.bench.report` aggregates them (mean ± std over runs).

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

import json
import logging
import multiprocessing
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashsel.bench.common import BenchmarkSuite, cache_dir, relevant_ids
from dashsel.bench.methods import (
    INSTANCE_METHODS,
    PEER_METHODS,
    Method,
    MethodOutcome,
    RunContext,
    label,
    make_method,
)
from dashsel.errors import DashselError
from dashsel.evaluators.base import Evaluator
from dashsel.pool import Pool
from dashsel.trial import TrialSpec

log = logging.getLogger(__name__)

#: Studies in the order they run (and appear in reports).
STUDIES: tuple[str, ...] = (
    "main_table",
    "curve",
    "small_budget",
    "weak_init",
    "grouping_ablation",
    "instance_baselines",
    "peers",
)
_STUDY_ALIASES = {
    "main": "main_table",
    "table": "main_table",
    "curves": "curve",
    "small": "small_budget",
    "weak": "weak_init",
    "grouping": "grouping_ablation",
    "instance": "instance_baselines",
    "baselines": "instance_baselines",
}
#: Bandit policies compared by default (the paper's DaSH and flat DaS plus classic bandits).
POLICY_METHODS: tuple[str, ...] = (
    "dash",
    "dash-eb",
    "flat",
    "ucb",
    "egreedy",
    "roundrobin",
    "random",
)
DEFAULT_METHODS: tuple[str, ...] = (*POLICY_METHODS, *INSTANCE_METHODS, *PEER_METHODS)
#: Figure 4's three methods.
CURVE_METHODS: tuple[str, ...] = ("flat", "dash-mixed", "dash")
GROUPING_METHODS: tuple[str, ...] = ("flat", "dash", "dash-mixed", "dash-cross")
SMALL_BUDGET_METHODS: tuple[str, ...] = ("flat", "dash-mixed", "dash")
#: The method whose selection sizes the instance-level baselines and anchors comparisons.
REFERENCE_METHOD = "dash"

#: Columns of every study's raw rows (one row per target × method × budget × run).
ROW_COLUMNS: tuple[str, ...] = (
    "study",
    "suite",
    "target",
    "method",
    "label",
    "kind",
    "local_fraction",
    "budget",
    "run",
    "accuracy",
    "n_evaluations",
    "evaluation_seconds",
    "overhead_seconds",
    "n_selected",
    "n_relevant",
    "n_samples",
    "selected",
)

Progress = Callable[..., None]
EvaluatorFactory = Callable[[Pool], Evaluator]


# --- configuration ---------------------------------------------------------------------------
@dataclass
class StudyConfig:
    """What to run. Every field has a default matching the paper's setup where it has one.

    Attributes
    ----------
    suite : str or BenchmarkSuite
        ``"digits5"``, ``"spam"`` or a suite object.
    targets : tuple of str or None
        Target domains; None for all of the suite's, in its order.
    methods : tuple of str
        Methods to compare (see :func:`dashsel.bench.methods.make_method`): bandit policies go
        to the main table, instance-level selectors to ``instance_baselines``, peers to
        ``peers``.
    runs : int
        Independent runs (seeds 0..runs-1) per cell.
    budgets : tuple of int
        Evaluation budgets of the main table; the largest is the *main budget*.
    checkpoints : tuple of int
        Budgets at which the accuracy-vs-evaluations curves are measured (those above the main
        budget are dropped and the main budget is added).
    curve_methods : tuple of str
        Methods on the curves (policy methods from ``methods`` are added).
    small_budget : int or None
        Budget of the small-budget study; None for one evaluation per candidate (15 on
        digits5, as in the paper's Figure 5).
    local_fractions : tuple of float
        Fractions of local data of the weak-initial-model study.
    n_subsets : int
        Candidate subsets per domain.
    n_seeds : int
        Evaluation seeds per dataset in the reward bank.
    k, percentile : int or float or None
        Final selection rule; ``k=None`` and ``percentile=None`` mean top-``n_subsets``.
    studies : tuple of str
        Studies to run (see :data:`STUDIES`).
    features : str or None
        Feature extractor passed to the suite's ``make_pool`` (None: the suite's default).
    split_seed : int
        Seed of the pools' data splits.
    workers : int
        Processes used to fill the reward bank.
    blas_threads : int or None
        Thread limit of BLAS/OpenMP pools during the study (None: leave as is). Trial models
        are small, where threaded BLAS only adds contention (10x slower fits were measured on
        a busy 2-core machine), and worker processes would oversubscribe the cores.
    cache : bool
        Cache evaluations on disk (``cache_dir("evals")``).
    reach_tolerance : float
        "Reached Global" means accuracy >= Global - this (a fraction: 0.01 is one point).
    evaluator : callable or None
        ``evaluator(pool) -> Evaluator`` for rewards and final scores; None for
        ``LogisticEvaluator(pool, bootstrap=True)``. It must implement ``score`` (and
        ``score_arrays`` for instance-level baselines).
    evaluator_name : str
        How ``evaluator`` is described in result files.
    out : str or None
        Output folder (used by scripts; :meth:`StudyResult.write` takes its own).
    command : str or None
        The command that started the study, recorded in the results.
    """

    suite: str | BenchmarkSuite = "digits5"
    targets: tuple[str, ...] | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    runs: int = 5
    budgets: tuple[int, ...] = (15, 45, 150)
    checkpoints: tuple[int, ...] = (5, 10, 15, 20, 30, 45, 60, 90, 120, 150)
    curve_methods: tuple[str, ...] = CURVE_METHODS
    small_budget: int | None = None
    local_fractions: tuple[float, ...] = (0.1, 0.2, 0.5)
    n_subsets: int = 3
    n_seeds: int = 5
    k: int | None = None
    percentile: float | None = None
    studies: tuple[str, ...] = STUDIES
    features: str | None = None
    split_seed: int = 0
    workers: int = 1
    blas_threads: int | None = 1
    cache: bool = True
    reach_tolerance: float = 0.01
    evaluator: EvaluatorFactory | None = field(default=None, repr=False)
    evaluator_name: str = "LogisticEvaluator(bootstrap=True)"
    out: str | None = None
    command: str | None = None

    def __post_init__(self) -> None:
        self.methods = tuple(m.strip().lower() for m in self.methods if m.strip())
        self.budgets = tuple(sorted({int(b) for b in self.budgets}))
        self.checkpoints = tuple(sorted({int(b) for b in self.checkpoints}))
        self.studies = tuple(dict.fromkeys(_study_name(s) for s in self.studies))
        self.local_fractions = tuple(float(f) for f in self.local_fractions)
        if self.targets is not None:
            self.targets = tuple(self.targets)
        if self.runs < 1:
            raise DashselError(f"runs must be >= 1, got {self.runs}")
        if not self.budgets or min(self.budgets) < 1:
            raise DashselError(f"budgets must be positive integers, got {self.budgets}")
        if self.n_seeds < 1:
            raise DashselError(f"n_seeds must be >= 1, got {self.n_seeds}")
        if not self.methods:
            raise DashselError("no methods to compare")
        for m in self.methods:
            make_method(m)  # fails early on a malformed name

    @property
    def suite_name(self) -> str:
        return self.suite if isinstance(self.suite, str) else self.suite.name

    @property
    def main_budget(self) -> int:
        """The largest budget: the one of the single-budget studies."""
        return max(self.budgets)

    @classmethod
    def quick(cls, suite: str | BenchmarkSuite = "digits5", **overrides: Any) -> StudyConfig:
        """The short preset of ``make demo``: 2 targets, 3 runs, budgets 15 and 45, the main
        table and a small curve (under two minutes on two cores once the data is built)."""
        params: dict[str, Any] = dict(
            suite=suite,
            targets=None,
            methods=("dash", "flat", "ucb", "random"),
            # The small budgets are where the methods differ (with 45 evaluations on 15
            # candidates every bandit finds the answer); 5 runs show the spread.
            runs=5,
            budgets=(10, 15),
            checkpoints=(5, 10, 15, 30),
            curve_methods=("flat", "dash"),
            # Two reward seeds keep the first (uncached) run near a minute on two cores.
            n_seeds=2,
            studies=("main_table", "curve"),
            workers=2,
        )
        params.update(overrides)
        config = cls(**params)
        if config.targets is None:
            config.targets = tuple(_suite(config.suite).targets[:2])
        return config

    @classmethod
    def from_options(
        cls,
        suite: str | BenchmarkSuite = "digits5",
        *,
        methods: Sequence[str] | str | None = None,
        runs: int | None = None,
        budgets: Sequence[int] | str | None = None,
        targets: Sequence[str] | str | None = None,
        studies: Sequence[str] | str | None = None,
        quick: bool = False,
        command: str | None = None,
        **overrides: Any,
    ) -> StudyConfig:
        """Build a config from command-line style options (None keeps the default).

        Lists may be given as sequences or comma-separated strings, e.g.
        ``from_options("digits5", methods="dash,flat", budgets="15,45,150")``.
        """
        params: dict[str, Any] = dict(overrides)
        for key, value, conv in (
            ("methods", methods, str),
            ("budgets", budgets, int),
            ("targets", targets, str),
            ("studies", studies, str),
        ):
            items = _split(value)
            if items is not None:
                params[key] = tuple(conv(v) for v in items)
        if runs is not None:
            params["runs"] = int(runs)
        params["command"] = command
        if quick:
            return cls.quick(suite, **params)
        return cls(suite=suite, **params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the suite by name, the evaluator by ``evaluator_name``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "evaluator":
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out["suite"] = self.suite_name
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        """Inverse of :meth:`to_dict` (the suite comes back as its name)."""
        names = {f.name for f in fields(cls)} - {"evaluator"}
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**{k: v for k, v in params.items() if k in names})


def _split(value: Sequence[Any] | str | None) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def _study_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = _STUDY_ALIASES.get(key, key)
    if key not in STUDIES:
        raise DashselError(f"unknown study {name!r}: use one of {', '.join(STUDIES)}")
    return key


def _suite(suite: str | BenchmarkSuite) -> BenchmarkSuite:
    if not isinstance(suite, str):
        return suite
    from dashsel.bench.suites import get_suite

    return get_suite(suite)


# --- reward bank -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RewardBank:
    """Precomputed rewards: ``rewards[i, s]`` of dataset ``ids[i]`` evaluated with seed ``s``.

    Attributes
    ----------
    ids : tuple of str
        Dataset ids, in pool order.
    rewards : numpy.ndarray
        Shape (n_datasets, n_seeds).
    source : dict
        ``describe()`` of the evaluator that produced them (the bank's identity).
    seconds : float
        Wall time spent filling the bank (near zero when the cache held everything).
    """

    ids: tuple[str, ...]
    rewards: np.ndarray
    source: dict[str, Any]
    seconds: float = 0.0

    @property
    def n_seeds(self) -> int:
        return int(self.rewards.shape[1])


# Set in the parent just before forking, so workers inherit the evaluator instead of
# unpickling it (pools hold loader closures that cannot be pickled).
_WORKER_EVALUATOR: Evaluator | None = None


def _bank_task(task: tuple[str, int]) -> float:
    assert _WORKER_EVALUATOR is not None
    dataset_id, seed = task
    return float(_WORKER_EVALUATOR.evaluate(TrialSpec(0, dataset_id, seed, 0)))


def build_bank(
    evaluator: Evaluator, dataset_ids: Sequence[str], n_seeds: int, *, workers: int = 1
) -> RewardBank:
    """Evaluate every dataset with seeds ``0..n_seeds-1``.

    Entry ``[i, s]`` is exactly ``evaluator.evaluate(TrialSpec(0, ids[i], s, 0))``, so replay
    and direct evaluation agree. With ``workers > 1`` the evaluations run in forked processes
    (sequentially where fork is unavailable); a caching evaluator makes reruns free.
    """
    global _WORKER_EVALUATOR
    ids = tuple(dataset_ids)
    tasks = [(d, s) for d in ids for s in range(n_seeds)]
    start = time.perf_counter()
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods() and len(tasks) > 1:
        _WORKER_EVALUATOR = evaluator
        try:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                chunk = max(1, len(tasks) // (4 * workers))
                values = list(pool.map(_bank_task, tasks, chunksize=chunk))
        finally:
            _WORKER_EVALUATOR = None
    else:
        values = [float(evaluator.evaluate(TrialSpec(0, d, s, 0))) for d, s in tasks]
    rewards = np.asarray(values, dtype=float).reshape(len(ids), n_seeds)
    return RewardBank(ids, rewards, evaluator.describe(), time.perf_counter() - start)


class BankEvaluator(Evaluator):
    """Replays a :class:`RewardBank`: ``evaluate(spec) = rewards[spec.dataset_id][spec.seed %
    n_seeds]``.

    Trial seeds are ``derive_seed(run, t)``, so different runs and steps read different seeds
    of the same dataset (noisy repeated pulls) and a run is replayed exactly.
    """

    can_train = False

    def __init__(self, bank: RewardBank) -> None:
        self.bank = bank
        self._index = {d: i for i, d in enumerate(bank.ids)}

    def evaluate(self, spec: TrialSpec) -> float:
        try:
            row = self._index[spec.dataset_id]
        except KeyError:
            raise DashselError(f"dataset {spec.dataset_id!r} is not in the reward bank") from None
        return float(self.bank.rewards[row, spec.seed % self.bank.n_seeds])

    def describe(self) -> dict[str, Any]:
        return {"kind": "reward-bank", "n_seeds": self.bank.n_seeds, "source": self.bank.source}


def versions() -> dict[str, str]:
    """Versions of Python, dashsel and the numeric stack, for result files."""
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("dashsel", "numpy", "scipy", "scikit-learn", "pandas", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# --- results ---------------------------------------------------------------------------------
@dataclass
class StudyResult:
    """Raw per-run rows of every study, with what produced them.

    Attributes
    ----------
    config : StudyConfig
    frames : dict of str to pandas.DataFrame
        One tidy frame per study, columns :data:`ROW_COLUMNS`.
    notes : list of str
        Skipped methods and other remarks.
    timings : dict of str to float
        Wall seconds per study, for the reward banks, and in total.
    versions : dict of str to str
    bank_stats : list of dict
        Per pool: reward mean/std over seeds and how long filling the bank took.
    """

    config: StudyConfig
    frames: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)
    bank_stats: list[dict[str, Any]] = field(default_factory=list)

    def frame(self, study: str) -> pd.DataFrame:
        """Rows of one study (empty frame when it was not run)."""
        return self.frames.get(_study_name(study), pd.DataFrame(columns=list(ROW_COLUMNS)))

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready data (summaries are added by the report)."""
        return {
            "config": self.config.to_dict(),
            "versions": self.versions,
            "notes": self.notes,
            "timings": self.timings,
            "bank_stats": self.bank_stats,
            "studies": {
                name: json.loads(df.to_json(orient="records")) for name, df in self.frames.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyResult:
        frames = {
            name: pd.DataFrame(rows, columns=list(ROW_COLUMNS))
            for name, rows in data.get("studies", {}).items()
        }
        return cls(
            config=StudyConfig.from_dict(data["config"]),
            frames=frames,
            notes=list(data.get("notes", [])),
            timings=dict(data.get("timings", {})),
            versions=dict(data.get("versions", {})),
            bank_stats=list(data.get("bank_stats", [])),
        )

    @classmethod
    def load(cls, path: str | Path) -> StudyResult:
        """Read a ``results.json`` written by :meth:`write`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def write(self, out_dir: str | Path, *, plots: bool = True) -> Path:
        """Write tables, plots (unless ``plots=False``), ``results.json`` and a README into
        ``out_dir``; returns it."""
        from dashsel.bench.report import write_report

        return write_report(self, out_dir, plots=plots)

    def headline_markdown(self) -> str:
        """The main table at the main budget, as markdown (for the terminal)."""
        from dashsel.bench.report import headline_markdown

        return headline_markdown(self)


# --- the runner ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Cell:
    study: str
    target: str
    fraction: float
    method: str
    budget: int
    run: int


class _Runner:
    """Plans every cell of the requested studies, then runs them, sharing work between studies.

    A cell's outcome depends only on (target, local fraction, method, budget, run), so cells
    that several studies need (DaSH at the main budget appears in five) run once.
    """

    def __init__(self, config: StudyConfig, progress: Progress | None) -> None:
        self.config = config
        self.suite = _suite(config.suite)
        self.progress = progress
        self.notes: list[str] = []
        self.bank_stats: list[dict[str, Any]] = []
        self.bank_seconds = 0.0
        self._pools: dict[tuple[str, float], Pool] = {}
        self._scorers: dict[tuple[str, float], Evaluator] = {}
        self._banks: dict[tuple[str, float], BankEvaluator] = {}
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
            self._scorers[key] = self._cached(inner)
        return self._scorers[key]

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

    def bank(self, target: str, fraction: float) -> BankEvaluator:
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
            self._banks[key] = BankEvaluator(bank)
        return self._banks[key]

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
                budget=budget,
                run=run,
                k=self.k(pool),
                percentile=self.config.percentile,
                reference=lambda: self.reference(target, fraction, budget, run),
            )
            self._memo[key] = method.run(ctx)
        return self._memo[key]

    def reference(self, target: str, fraction: float, budget: int, run: int) -> MethodOutcome:
        ref = self.method(REFERENCE_METHOD)
        if ref is None:
            raise DashselError(f"the reference method {REFERENCE_METHOD!r} is unavailable")
        return self.outcome(target, fraction, ref, budget, run)

    # -- planning --
    def plan(self) -> list[_Cell]:
        cfg = self.config
        main = cfg.main_budget
        by_kind: dict[str, list[str]] = {"policy": [], "instance": [], "peer": [], "reference": []}
        for name in cfg.methods:
            by_kind[make_method(name).kind].append(name)
        refs = ["local", "global"]
        cells: list[_Cell] = []

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
                            cells.append(_Cell(study, t, fraction, m, b, r))

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

    def _row(self, cell: _Cell, method: Method, out: MethodOutcome) -> dict[str, Any]:
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
        return _Runner(config, progress).run()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=config.blas_threads):
        return _Runner(config, progress).run()


__all__ = [
    "DEFAULT_METHODS",
    "ROW_COLUMNS",
    "STUDIES",
    "BankEvaluator",
    "RewardBank",
    "StudyConfig",
    "StudyResult",
    "build_bank",
    "run_study",
    "versions",
]
