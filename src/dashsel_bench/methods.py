"""One interface for everything a study compares: references, bandit policies, peers, baselines.

A :class:`Method` turns a :class:`RunContext` (one pool, one run seed, one budget) into a
:class:`MethodOutcome`: the datasets (or samples) it chose and the test accuracy of a model
trained on the local data plus that choice. The harness loops over methods without knowing
what kind each is:

* references: ``local`` (no extra data, the paper's lower bound) and ``global`` (every
  same-domain candidate, the oracle upper bound);
* bandit policies from :func:`dashsel.policies.make_policy` (``dash``, ``flat``, ``ucb``, ...)
  and the peer policies ``optuna``, ``mabwiser-ts``, ``mabwiser-ucb``, run through
  :func:`dashsel.run.select` against the context's (replayed) reward evaluator; a suffix
  ``-mixed`` or ``-cross`` runs the policy on the same datasets regrouped (the paper's
  DaSH (mixed) and cross-domain ablations);
* ``pydvl-banzhaf``: pyDVL's Data Banzhaf valuation of whole datasets, which evaluates
  *subsets* and so uses the real evaluator, not the single-dataset reward bank;
* dashsel's engine (``hits``, HiTS with the pool's training-free scores as prior covariates;
  ``hits-noscores`` without them; ``hits-shuffled`` / ``hits-reversed`` with the scores
  shuffled across datasets or negated, the robustness checks), the ``heuristic`` baseline
  (random order without repeats, rank by reward / group mean) and ``scores-only`` (top-k by
  the default label-aware score, no evaluation at all). The engine's final choice is
  set-aware (:mod:`dashsel.sets`: a near-copy of a chosen dataset gives way to the next one);
  ``hits-nodedupe`` is the engine without it, ``hits-set`` the engine that also spends 10 % of
  the budget evaluating the chosen set and swaps, and ``scores-only-dedupe`` the scores'
  top-k made set-aware the same way (still no evaluation);
* instance-level baselines (``coresets``, ``activeft``, ``bilaf``, ``freesel``,
  ``random-samples``) that pick samples from the union of all candidates. Their sample budget
  is the number of samples in the datasets the reference method (DaSH) chose in the same run,
  so both add the same amount of data.

Methods whose optional dependency is missing report it from :meth:`Method.unavailable` and
the harness skips them with a note instead of failing the whole study.
"""

from __future__ import annotations

import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dashsel.errors import DashselError
from dashsel.evaluators.base import Evaluator
from dashsel.hierarchy import Hierarchy
from dashsel.policies.engine import HiTS
from dashsel.pool import ArraySplit, Pool
from dashsel_bench.common import GROUPINGS, regroup, relevant_ids

#: Reference rows of every table.
REFERENCES: tuple[str, ...] = ("local", "global")
#: Instance-level selectors of :mod:`dashsel_bench.baselines` (the paper's Table 1 baselines).
INSTANCE_METHODS: tuple[str, ...] = ("coresets", "activeft", "bilaf", "freesel", "random-samples")
#: Dataset-level peers from :mod:`dashsel.peers`.
PEER_POLICIES: tuple[str, ...] = ("optuna", "mabwiser-ts", "mabwiser-ucb")
PEER_METHODS: tuple[str, ...] = (*PEER_POLICIES, "pydvl-banzhaf")
#: The engine's variants -> the covariates each gets (None: no scores).
ENGINE_METHODS: dict[str, str | None] = {
    "hits": "scores",
    "hits-noscores": None,
    "hits-shuffled": "shuffled",
    "hits-reversed": "reversed",
}
#: Top-k by the default training-free score, no evaluation (a flat curve).
SCORES_ONLY = "scores-only"
#: The same, skipping near-copies of chosen candidates (:func:`dashsel.sets.dedupe_ranking`).
SCORES_ONLY_DEDUPE = "scores-only-dedupe"
#: Engine variants of the set-level choice -> (covariates, options of :class:`EngineMethod`).
ENGINE_SET_METHODS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "hits-nodedupe": ("scores", {"dedupe": False}),
    "hits-set": ("scores", {"set_share": 0.1}),
}
#: Benchmark names of library policies that are not (yet) in the policy registry.
POLICY_ALIASES: dict[str, str] = {"heuristic": "group-mean"}
#: Score columns the engine gets as covariates (the library's default covariates).
COVARIATE_SCORES: tuple[str, ...] = ("otdd", "label_quality", "mmd")

#: Display names for tables and plots (anything else is shown as its name).
LABELS: dict[str, str] = {
    "local": "Local",
    "global": "Global",
    "hits": "Engine (HiTS)",
    "hits-noscores": "Engine, no scores",
    "hits-shuffled": "Engine, shuffled scores",
    "hits-reversed": "Engine, reversed scores",
    "heuristic": "Heuristic (group mean)",
    "scores-only": "Scores only",
    "scores-only-dedupe": "Scores only, deduplicated",
    "hits-nodedupe": "Engine, no dedupe",
    "hits-set": "Engine + set refinement (10%)",
    "dash": "DaSH",
    "dash-mixed": "DaSH (mixed)",
    "dash-cross": "DaSH (cross)",
    "flat": "DaS (flat)",
    "ucb": "UCB",
    "dash-eb": "DaSH (EB prior)",
    "egreedy": "ε-greedy",
    "roundrobin": "Round robin",
    "random": "Random (datasets)",
    "coresets": "Core-sets",
    "activeft": "ActiveFT",
    "bilaf": "BiLAF",
    "freesel": "FreeSel",
    "random-samples": "Random (samples)",
    "optuna": "Optuna (TPE)",
    "mabwiser-ts": "MABWiser TS",
    "mabwiser-ucb": "MABWiser UCB1",
    "pydvl-banzhaf": "pyDVL Banzhaf",
}


def label(name: str) -> str:
    """Display name of a method (``"dash-mixed"`` -> ``"DaSH (mixed)"``)."""
    if name in LABELS:
        return LABELS[name]
    base, _, grouping = name.rpartition("-")
    if base and grouping in GROUPINGS:
        return f"{LABELS.get(base, base)} ({grouping})"
    return name


@dataclass(frozen=True)
class MethodOutcome:
    """What one method produced in one run.

    Attributes
    ----------
    selected : tuple of str
        Chosen dataset ids (empty for Local and for instance-level methods).
    accuracy : float
        Test accuracy (fraction in [0, 1]) of the model trained on local data plus the choice.
    n_evaluations : int
        Trial trainings the method used to decide (0 for references and one-shot baselines).
    evaluation_seconds : float
        Wall time inside those evaluations (replays are nearly free).
    overhead_seconds : float
        Wall time spent deciding, outside evaluations and outside the final scoring.
    n_samples : int
        Training samples added to the local data.
    n_relevant : int
        Chosen datasets from the target domain (-1 where it does not apply).
    """

    selected: tuple[str, ...]
    accuracy: float
    n_evaluations: int = 0
    evaluation_seconds: float = 0.0
    overhead_seconds: float = 0.0
    n_samples: int = 0
    n_relevant: int = -1


@dataclass
class RunContext:
    """Everything one method needs for one run on one pool.

    Attributes
    ----------
    pool : Pool
        The pool with the default (perfect) grouping and its arrays.
    rewards : Evaluator
        Single-dataset reward evaluator for policies (the harness passes a replaying
        :class:`~dashsel_bench.bank.BankReplay`).
    scorer : Evaluator
        The real, trainable evaluator: final test accuracies and subset evaluations.
    trainer : Evaluator or None
        The evaluator that trains on sample arrays (``score_arrays``), for instance-level
        baselines; None means ``scorer``. The harness passes the uncached evaluator behind
        ``scorer``.
    budget : int
        Evaluations allowed.
    run : int
        Run index; the seed of the policy and of the final model's training.
    k : int or None
        Datasets to keep at the end (top-k by posterior mean); None with ``percentile``.
    percentile : float or None
        Alternative percentile selection rule.
    reference : callable or None
        Returns the reference method's outcome for this run and budget (DaSH's), which sets
        the sample budget of instance-level methods.
    """

    pool: Pool
    rewards: Evaluator
    scorer: Evaluator
    budget: int
    run: int
    k: int | None = None
    percentile: float | None = None
    reference: Callable[[], MethodOutcome] | None = None
    trainer: Evaluator | None = None
    scores: Callable[[], pd.DataFrame] | None = None
    redundancy: Callable[[], Any] | None = None
    _regrouped: dict[str, Pool] = field(default_factory=dict, repr=False)

    def pool_for(self, grouping: str) -> Pool:
        """The same datasets regrouped (``perfect`` is the pool itself)."""
        if grouping == "perfect":
            return self.pool
        if grouping not in self._regrouped:
            self._regrouped[grouping] = regrouped(self.pool, grouping)
        return self._regrouped[grouping]

    def score_frame(self) -> pd.DataFrame:
        """The pool's training-free scores (:func:`dashsel.scores.score_pool`), by dataset id."""
        if self.scores is None:
            raise DashselError("this study gives its methods no training-free scores")
        return self.scores()

    def near_copies(self) -> Any:
        """The pool's near-copy structure (:func:`dashsel.sets.find_near_copies`), computed
        once per pool by the harness (or here when it gives none)."""
        if self.redundancy is not None:
            return self.redundancy()
        from dashsel.sets import find_near_copies

        return find_near_copies(self.pool)

    def outcome(self, selected: tuple[str, ...], accuracy: float, **timing: Any) -> MethodOutcome:
        """An outcome for a dataset-level choice, with sample and relevance counts filled in."""
        relevant = set(relevant_ids(self.pool))
        return MethodOutcome(
            selected=tuple(selected),
            accuracy=float(accuracy),
            n_samples=dataset_samples(self.pool, selected),
            n_relevant=sum(d in relevant for d in selected),
            **timing,
        )


def regrouped(pool: Pool, grouping: str) -> Pool:
    """A pool with the same datasets and splits but the groups of ``grouping``.

    Only the hierarchy changes, so rewards (which depend on a dataset and a seed, never on its
    group) can be shared between groupings: one reward bank serves DaSH, DaSH (mixed) and the
    cross-domain ablation.
    """
    splits = {
        name: pool.split(name) for name in ("local", "validation", "test") if pool.has_split(name)
    }
    return Pool(regroup(pool.entries, grouping), name=f"{pool.name}-{grouping}", **splits)


def dataset_samples(pool: Pool, ids: tuple[str, ...] | list[str]) -> int:
    """Total samples in the given candidates (``meta["n"]`` when present, else the arrays)."""
    total = 0
    for d in ids:
        entry = pool.entry(d)
        n = entry.meta.get("n")
        total += int(n) if n is not None else len(entry.load())
    return total


class Method(ABC):
    """A way of choosing extra training data, scored by the harness.

    Attributes
    ----------
    name : str
        The method's key in configs and result files.
    kind : str
        ``"reference"``, ``"policy"``, ``"peer"`` or ``"instance"``.
    uses_budget : bool
        Whether the evaluation budget changes what it does (False for references and
        instance-level baselines, so the harness can reuse one outcome across budgets).
    """

    name: str = "method"
    kind: str = "method"
    uses_budget: bool = True

    @property
    def label(self) -> str:
        return label(self.name)

    def unavailable(self) -> str | None:
        """None when the method can run, else why not (a missing optional dependency)."""
        return None

    @abstractmethod
    def run(self, ctx: RunContext) -> MethodOutcome:
        """Choose data for one run and score the result on the test split."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class LocalMethod(Method):
    """Local data only (the paper's lower bound)."""

    name, kind, uses_budget = "local", "reference", False

    def run(self, ctx: RunContext) -> MethodOutcome:
        return ctx.outcome((), ctx.scorer.score([], ctx.run, "test"))


class GlobalMethod(Method):
    """Local data plus every same-domain candidate (the oracle upper bound)."""

    name, kind, uses_budget = "global", "reference", False

    def run(self, ctx: RunContext) -> MethodOutcome:
        ids = tuple(relevant_ids(ctx.pool))
        return ctx.outcome(ids, ctx.scorer.score(list(ids), ctx.run, "test"))


class PolicyMethod(Method):
    """A bandit policy run through :func:`dashsel.run.select` on the reward evaluator.

    Parameters
    ----------
    name : str
        Method key, e.g. ``"dash"`` or ``"dash-mixed"``.
    policy : str
        Name for :func:`dashsel.policies.make_policy`.
    grouping : str
        ``"perfect"``, ``"mixed"`` or ``"cross"``: the groups the policy sees.
    params : dict
        Extra policy parameters.
    """

    def __init__(
        self,
        name: str,
        policy: str | None = None,
        grouping: str = "perfect",
        params: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.policy = policy or name
        self.grouping = grouping
        self.params = dict(params or {})
        self.kind = "peer" if self.policy in PEER_POLICIES else "policy"

    def _make(self) -> Any:
        if self.policy in PEER_POLICIES:
            import dashsel.peers as peers

            # Registration is idempotent; it makes the names known to make_policy.
            register = getattr(peers, "register_peers", None)
            if register is not None:
                register()
        from dashsel.policies import make_policy

        name = POLICY_ALIASES.get(self.policy, self.policy)
        try:
            return make_policy(name, **self.params)
        except DashselError:
            # The engine and the heuristic may not be registered under these names yet.
            from dashsel.policies.heuristic import GroupMean

            factories: dict[str, Any] = {"hits": HiTS, "group-mean": GroupMean}
            if name not in factories:
                raise
            return factories[name](**self.params)

    def unavailable(self) -> str | None:
        try:
            # Peers import their library in reset(), so bind to a one-dataset hierarchy to
            # find a missing optional dependency now rather than in the middle of a study.
            self._make().reset(Hierarchy(["probe"], ["probe"]), 0)
        except ImportError as exc:
            return f"{self.name}: {exc}"
        return None

    def run(self, ctx: RunContext) -> MethodOutcome:
        return self._select(ctx, self._make())

    #: Whether the final choice skips near-copies (the engine's methods turn it on).
    dedupe: bool = False

    def _select(self, ctx: RunContext, policy: Any, budget: int | None = None) -> MethodOutcome:
        from dashsel.run import select

        # The pool's near-copy structure is computed once per pool, not once per run.
        dedupe = ctx.near_copies() if self.dedupe else False
        result = select(
            ctx.pool_for(self.grouping),
            policy,
            ctx.rewards,
            ctx.budget if budget is None else budget,
            seed=ctx.run,
            k=ctx.k,
            percentile=ctx.percentile,
            score_final=False,
            dedupe=dedupe,
        )
        selected = tuple(result.selected)
        return ctx.outcome(
            selected,
            ctx.scorer.score(list(selected), ctx.run, "test"),
            n_evaluations=int(result.n_evaluations),
            evaluation_seconds=float(result.evaluation_seconds),
            overhead_seconds=float(result.overhead_seconds),
        )


class _BenchHiTS(HiTS):
    """HiTS that always binds the covariates the benchmark chose (none included), whatever
    the run loop passes, so "with scores" and "without scores" mean exactly that."""

    bench_covariates: np.ndarray | None = None

    def reset(self, hierarchy: Any, random_state: Any = 0, *, covariates: Any = None) -> Any:
        return super().reset(hierarchy, random_state, covariates=self.bench_covariates)


class EngineMethod(PolicyMethod):
    """dashsel's engine (HiTS) with the pool's training-free scores as prior covariates.

    Parameters
    ----------
    name : str
        Method key (``hits``, ``hits-noscores``, ``hits-shuffled``, ``hits-reversed``, with an
        optional ``-mixed`` / ``-cross`` suffix).
    covariates : {"scores", "shuffled", "reversed"} or None
        ``scores``: the standardised ``otdd``, ``label_quality`` and ``mmd`` scores (the
        library's default covariates); ``shuffled``: the same rows permuted across datasets
        (seeded by the run), so they carry no information; ``reversed``: negated
        (adversarial); None: no covariates.
    grouping : str
        The groups the engine sees.
    dedupe : bool
        Make the final choice set-aware (skip near-copies of chosen datasets).
    set_share : float
        Share of the budget spent evaluating the chosen set and swaps
        (:func:`dashsel.sets.refine_set`, on the real evaluator's validation split); the
        engine gets the rest. 0: none.
    """

    def __init__(
        self,
        name: str,
        covariates: str | None,
        grouping: str = "perfect",
        *,
        dedupe: bool = True,
        set_share: float = 0.0,
    ) -> None:
        super().__init__(name, policy="hits", grouping=grouping)
        self.covariates = covariates
        self.dedupe = bool(dedupe)
        self.set_share = float(set_share)

    def unavailable(self) -> str | None:
        return None

    def covariate_matrix(self, ctx: RunContext, pool: Pool) -> np.ndarray | None:
        """Covariates in the order of ``pool``'s hierarchy (None without scores)."""
        if self.covariates is None:
            return None
        from dashsel.scores import covariates_from_scores

        frame = ctx.score_frame().loc[list(pool.hierarchy.dataset_ids)]
        X = covariates_from_scores(frame, [f"score_{w}" for w in COVARIATE_SCORES])
        if self.covariates == "shuffled":
            X = X[np.random.default_rng([ctx.run, 4242]).permutation(len(X))]
        elif self.covariates == "reversed":
            X = -X
        return X

    def run(self, ctx: RunContext) -> MethodOutcome:
        pool = ctx.pool_for(self.grouping)
        policy = _BenchHiTS(k=ctx.k, percentile=ctx.percentile)
        policy.bench_covariates = self.covariate_matrix(ctx, pool)
        n_set = set_evaluations(ctx.budget, self.set_share)
        if n_set == 0:
            return self._select(ctx, policy)
        out = self._select(ctx, policy, budget=ctx.budget - n_set)
        return self._refine(ctx, policy, out, n_set)

    def _refine(
        self, ctx: RunContext, policy: Any, out: MethodOutcome, n_set: int
    ) -> MethodOutcome:
        """Spend ``n_set`` set evaluations on the chosen set and swaps (dashsel.sets)."""
        from dashsel.sets import refine_set

        t0 = time.perf_counter()
        n = policy.hierarchy_.n_datasets
        ranking = list(policy.recommend(k=min(n, len(out.selected) + 2 * n_set + 10)).datasets)
        ranking = [*out.selected, *(d for d in ranking if d not in set(out.selected))]
        red = ctx.near_copies() if self.dedupe else None
        ref = refine_set(ctx.scorer, out.selected, ranking, n_set, seed=ctx.run, redundancy=red)
        seconds = time.perf_counter() - t0
        selected = tuple(ref.selected)
        return ctx.outcome(
            selected,
            ctx.scorer.score(list(selected), ctx.run, "test"),
            n_evaluations=out.n_evaluations + ref.n_evaluations,
            evaluation_seconds=out.evaluation_seconds + seconds,
            overhead_seconds=out.overhead_seconds,
        )


def set_evaluations(budget: int, share: float) -> int:
    """Set evaluations out of ``budget`` for a share: ``round(share * budget)``, at least 1
    when the share is positive, and at most ``budget - 1`` (the engine keeps one)."""
    if share <= 0.0 or budget < 2:
        return 0
    return int(min(budget - 1, max(1, round(share * budget))))


class ScoresOnlyMethod(Method):
    """Top-k by the default (label-aware) training-free score: no evaluation at all.

    Its outcome does not depend on the budget, so its curve is flat. The seconds spent on the
    scores are reported as overhead. With ``dedupe`` (``scores-only-dedupe``) a candidate
    that nearly copies one already chosen is skipped (:func:`dashsel.sets.dedupe_ranking`),
    the near-copy search's seconds added to the overhead.
    """

    name, kind, uses_budget = SCORES_ONLY, "policy", False

    def __init__(self, dedupe: bool = False) -> None:
        self.dedupe = bool(dedupe)
        if self.dedupe:
            self.name = SCORES_ONLY_DEDUPE

    def run(self, ctx: RunContext) -> MethodOutcome:
        frame = ctx.score_frame()
        ids = list(ctx.pool.dataset_ids)
        key = frame.loc[ids, "score_default"].to_numpy(dtype=float)
        n = len(ids)
        if ctx.k is not None:
            k = min(int(ctx.k), n)
        else:
            k = max(1, min(n, int(np.ceil(n * (1.0 - float(ctx.percentile or 0.0) / 100.0)))))
        # NaN (a candidate without rows) ranks last; ties keep pool order.
        order = np.lexsort((np.arange(n), -np.nan_to_num(key, nan=-np.inf)))
        seconds = float(frame.attrs.get("seconds", 0.0))
        if self.dedupe:
            from dashsel.sets import dedupe_ranking

            red = ctx.near_copies()
            selected = dedupe_ranking([ids[i] for i in order], k, red).selected
            seconds += red.seconds
        else:
            selected = tuple(ids[i] for i in order[:k])
        return ctx.outcome(
            selected, ctx.scorer.score(list(selected), ctx.run, "test"), overhead_seconds=seconds
        )


class PyDVLMethod(Method):
    """pyDVL's Data Banzhaf values of whole datasets, top-k by value.

    Banzhaf evaluates utility on random *subsets* of datasets, so it needs the real evaluator
    (one training per subset, cached on disk), with the same evaluation budget as the policies.
    """

    name, kind = "pydvl-banzhaf", "peer"

    def unavailable(self) -> str | None:
        try:
            from dashsel.peers.pydvl_banzhaf import pydvl_banzhaf_select  # noqa: F401
        except ImportError as exc:
            return f"{self.name}: {exc}"
        return None

    def run(self, ctx: RunContext) -> MethodOutcome:
        from dashsel.peers.pydvl_banzhaf import pydvl_banzhaf_select

        peer = pydvl_banzhaf_select(
            ctx.pool, ctx.scorer, ctx.budget, k=ctx.k, percentile=ctx.percentile, seed=ctx.run
        )
        selected = tuple(peer.selected)
        return ctx.outcome(
            selected,
            ctx.scorer.score(list(selected), ctx.run, "test"),
            n_evaluations=int(peer.n_evaluations),
            evaluation_seconds=float(peer.evaluation_seconds),
            overhead_seconds=float(peer.overhead_seconds),
        )


class InstanceMethod(Method):
    """An instance-level selector picking samples from the union of all candidates.

    The sample budget is the number of samples in the datasets the reference method chose in
    the same run (``ctx.reference()``), so the comparison adds equal amounts of data. Labels of
    the chosen samples are used only to train the final model.
    """

    kind, uses_budget = "instance", True

    def __init__(self, name: str) -> None:
        self.name = name

    def unavailable(self) -> str | None:
        try:
            from dashsel_bench.baselines import SAMPLE_SELECTORS
        except ImportError as exc:
            return f"{self.name}: {exc}"
        if self.name not in SAMPLE_SELECTORS:
            return f"{self.name}: not among dashsel_bench.baselines.SAMPLE_SELECTORS"
        return None

    def run(self, ctx: RunContext) -> MethodOutcome:
        from dashsel_bench.baselines import select_samples

        if ctx.reference is None:
            raise DashselError(f"{self.name} needs a reference selection to size its budget")
        n_budget = sample_budget(ctx.reference())
        union = candidate_union(ctx.pool)
        start = time.perf_counter()
        embedded, local = selection_space(ctx.pool)
        idx = np.asarray(
            select_samples(
                self.name,
                embedded,
                n_budget,
                local=local,
                random_state=ctx.run,
                **INSTANCE_PARAMS.get(self.name, {}),
            ),
            dtype=np.intp,
        )
        seconds = time.perf_counter() - start
        extra = ArraySplit(union.X[idx], union.y[idx]) if idx.size else None
        trainer = ctx.trainer if ctx.trainer is not None else ctx.scorer
        score_arrays = getattr(trainer, "score_arrays", None)
        if score_arrays is None:
            raise DashselError(
                f"{self.name} needs an evaluator that trains on sample arrays (score_arrays); "
                f"{type(trainer).__name__} has none"
            )
        acc = score_arrays(extra, ctx.run, "test")
        return MethodOutcome(
            selected=(), accuracy=float(acc), overhead_seconds=seconds, n_samples=int(idx.size)
        )


#: Dimensions of the space instance-level selectors work in (see :func:`selection_space`).
SELECTION_DIM = 64
#: Per-method settings for the benchmark: ActiveFT (and BiLAF's ActiveFT stage) with 100
#: optimisation steps, the authors' ImageNet setting, instead of 300 (its cost is
#: steps x samples x budget x dimensions; 300 steps made one digits5 run take minutes).
INSTANCE_PARAMS: dict[str, dict[str, Any]] = {
    "activeft": {"n_iter": 100},
    "bilaf": {"activeft_params": {"n_iter": 100}},
}
_SPACES: weakref.WeakKeyDictionary[Pool, tuple[np.ndarray, np.ndarray | None]] = (
    weakref.WeakKeyDictionary()
)


def selection_space(pool: Pool, dim: int = SELECTION_DIM) -> tuple[np.ndarray, np.ndarray | None]:
    """Candidates (and local data) embedded for instance-level selection.

    The originals select in a pretrained network's embedding space (hundreds of dimensions);
    here the pool's features are standardised and projected on their first ``dim`` principal
    components, fitted on the candidates. This plays the embedding's role and keeps the
    selectors' distance computations affordable. Computed once per pool object.
    """
    if pool in _SPACES:
        return _SPACES[pool]
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    union = candidate_union(pool)
    flat = union.X.reshape(len(union), -1).astype(np.float64)
    local = pool.local.X if pool.has_split("local") else None
    scaler = StandardScaler().fit(flat)
    n_comp = int(min(dim, flat.shape[0], flat.shape[1]))
    pca = PCA(n_components=n_comp, svd_solver="randomized", random_state=0)
    embedded = pca.fit_transform(scaler.transform(flat)).astype(np.float32)
    local_e = (
        pca.transform(scaler.transform(local.reshape(local.shape[0], -1))).astype(np.float32)
        if local is not None
        else None
    )
    _SPACES[pool] = (embedded, local_e)
    return embedded, local_e


def sample_budget(reference: MethodOutcome) -> int:
    """Sample budget of instance-level methods: the samples in the reference's datasets."""
    return int(reference.n_samples)


def candidate_union(pool: Pool) -> ArraySplit:
    """All candidate datasets stacked in pool order (the instance-level selection pool)."""
    return ArraySplit.concat([pool.dataset(d) for d in pool.dataset_ids])


def make_method(name: str) -> Method:
    """The method called ``name``.

    ``local`` / ``global``, an instance-level selector, ``pydvl-banzhaf`` (alias ``pydvl``),
    a policy name, or a policy name with ``-mixed`` / ``-cross`` (or ``-perfect``) to run it
    on regrouped datasets. Whether a policy name exists is checked when the method runs (see
    :meth:`Method.unavailable`), since policies register themselves on import.
    """
    name = name.strip().lower()
    if not name:
        raise DashselError("empty method name")
    if name == "local":
        return LocalMethod()
    if name == "global":
        return GlobalMethod()
    if name in ("pydvl", "pydvl-banzhaf"):
        return PyDVLMethod()
    if name in INSTANCE_METHODS:
        return InstanceMethod(name)
    if name == SCORES_ONLY:
        return ScoresOnlyMethod()
    if name == SCORES_ONLY_DEDUPE:
        return ScoresOnlyMethod(dedupe=True)
    if name in ENGINE_METHODS:
        return EngineMethod(name, ENGINE_METHODS[name])
    if name in ENGINE_SET_METHODS:
        covariates, options = ENGINE_SET_METHODS[name]
        return EngineMethod(name, covariates, **options)
    base, _, grouping = name.rpartition("-")
    if base in ENGINE_METHODS and grouping in GROUPINGS:
        return EngineMethod(name, ENGINE_METHODS[base], grouping=grouping)
    if base and grouping in GROUPINGS and base not in PEER_POLICIES:
        return PolicyMethod(name, policy=base, grouping=grouping)
    return PolicyMethod(name)
