"""What a study runs: :class:`StudyConfig`, the study names and the default method lists."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from dashsel.errors import DashselError
from dashsel.evaluators.base import Evaluator
from dashsel.pool import Pool
from dashsel_bench.common import BenchmarkSuite
from dashsel_bench.methods import INSTANCE_METHODS, PEER_METHODS, make_method
from dashsel_bench.suites import resolve_suite

STUDIES: tuple[str, ...] = (
    "main_table",
    "curve",
    "small_budget",
    "weak_init",
    "grouping_ablation",
    "instance_baselines",
    "peers",
)
#: Other spellings accepted for study names.
STUDY_ALIASES = {
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
    "hits",
    "hits-noscores",
    "dash",
    "dash-eb",
    "flat",
    "ucb",
    "egreedy",
    "roundrobin",
    "random",
    "heuristic",
    "scores-only",
)
#: The engine studies' methods (docs/benchmarks/<suite>-engine): the engine with and without
#: scores beside DaSH, the flat bandits, the trivial heuristic and the scores alone.
ENGINE_STUDY_METHODS: tuple[str, ...] = (
    "hits",
    "hits-noscores",
    "dash",
    "flat",
    "ucb",
    "roundrobin",
    "random",
    "heuristic",
    "scores-only",
    "scores-only-dedupe",
)
#: What ``make demo`` compares.
DEMO_METHODS: tuple[str, ...] = (
    "hits",
    "dash",
    "flat",
    "ucb",
    "random",
    "heuristic",
    "scores-only",
    "scores-only-dedupe",
)
#: The demo's targets (where 100 candidates are hardest for DaSH in docs/benchmarks/digits5-100).
DEMO_TARGETS: tuple[str, ...] = ("svhn", "syn")
#: Robustness of the engine to scores that carry no information or point the wrong way.
SCORE_CHECK_METHODS: tuple[str, ...] = ("hits-shuffled", "hits-reversed")
DEFAULT_METHODS: tuple[str, ...] = (*POLICY_METHODS, *INSTANCE_METHODS, *PEER_METHODS)
#: Figure 4's three methods.
CURVE_METHODS: tuple[str, ...] = ("flat", "dash-mixed", "dash", "hits")
#: The grouping ablation: DaSH and the engine on perfect, mixed and cross-domain groups.
GROUPING_METHODS: tuple[str, ...] = (
    "flat",
    "dash",
    "dash-mixed",
    "dash-cross",
    "hits",
    "hits-mixed",
    "hits-cross",
)
SMALL_BUDGET_METHODS: tuple[str, ...] = ("flat", "dash-mixed", "dash", "hits")
#: The method whose selection sizes the instance-level baselines and anchors comparisons.
REFERENCE_METHOD = "dash"

EvaluatorFactory = Callable[[Pool], Evaluator]


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
        Methods to compare (see :func:`dashsel_bench.methods.make_method`): bandit policies go
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
    traps : bool
        Add trap datasets in the target's own look to every pool (the suite's
        ``make_pool(traps=True)``: mislabelled, few-class and near-duplicate target data, in
        groups of their own and mixed into honest groups). Off by default, so earlier numbers
        stay comparable.
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
    traps: bool = False
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
        self.studies = tuple(dict.fromkeys(study_name(s) for s in self.studies))
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
        """The short preset of ``make demo``: the regime the engine is for, more candidates
        than evaluations (digits5 with 20 subsets per domain: 100 candidates, k = 20, plus 30
        trap datasets in the target's own look, so that looking alike is not enough), 15 and
        30 evaluations, two targets, 5 runs, the main table and a small curve."""
        params: dict[str, Any] = dict(
            suite=suite,
            targets=None,
            methods=DEMO_METHODS,
            runs=5,
            budgets=(15, 30),
            checkpoints=(5, 15, 30),
            curve_methods=(),
            # Two reward seeds keep the first (uncached) run short on two cores.
            n_seeds=2,
            n_subsets=20,
            studies=("main_table", "curve"),
            workers=2,
            # Traps where the suite can make them (digits5, spam; not a user's own suite).
            traps="traps" in inspect.signature(resolve_suite(suite).make_pool).parameters,
        )
        params.update(overrides)
        config = cls(**params)
        if config.targets is None:
            targets = resolve_suite(config.suite).targets
            config.targets = tuple(t for t in DEMO_TARGETS if t in targets) or tuple(targets[:2])
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
            items = split_list(value)
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


def split_list(value: Sequence[Any] | str | None) -> list[Any] | None:
    """``"a, b"`` or a sequence as a list (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def study_name(name: str) -> str:
    """The canonical name of a study (aliases and dashes accepted)."""
    key = name.strip().lower().replace("-", "_")
    key = STUDY_ALIASES.get(key, key)
    if key not in STUDIES:
        raise DashselError(f"unknown study {name!r}: use one of {', '.join(STUDIES)}")
    return key
