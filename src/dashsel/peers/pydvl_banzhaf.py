"""pyDVL's Banzhaf data valuation over whole datasets, held to an evaluation budget.

Data valuation is not an ask/tell bandit: it trains on random *subsets* of the candidates
and credits each candidate with the average difference its presence makes. Here every
candidate dataset is one player, the local data is in every coalition, and the maximum
sample reuse (MSR) estimator of Wang & Jia (2023) turns each trained subset into an update
of every player's value, so one evaluation = one model trained, as for the bandits.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dashsel.errors import DashselError, require
from dashsel.hierarchy import Hierarchy
from dashsel.policies.base import top_by_mean, validate_selection_rule
from dashsel.random_state import check_random_state, derive_seed

if TYPE_CHECKING:  # only for annotations: keeps importing this module light
    from dashsel.evaluators.base import Evaluator


@dataclass(frozen=True)
class PeerSelection:
    """The outcome of a peer that is not a :class:`~dashsel.policies.base.Policy`.

    Attributes
    ----------
    selected : tuple of str
        Chosen dataset ids, best first.
    groups : tuple of str
        Groups of the chosen datasets, in order of first appearance.
    values : dict of str to float
        Estimated utility of every candidate (here its Banzhaf value), in pool order.
    n_evaluations : int
        Models trained (utility evaluations actually run); never more than the budget.
    evaluation_seconds : float
        Wall time spent inside the evaluator.
    overhead_seconds : float
        Wall time spent in the method itself (sampling, bookkeeping), i.e. total minus
        evaluation time.
    """

    selected: tuple[str, ...]
    groups: tuple[str, ...]
    values: dict[str, float]
    n_evaluations: int
    evaluation_seconds: float
    overhead_seconds: float


def pydvl_banzhaf_select(
    pool: Hierarchy | Any,
    evaluator: Evaluator,
    budget: int,
    *,
    k: int | None = None,
    percentile: float | None = None,
    seed: int | np.random.Generator | None = 0,
    split: str = "validation",
) -> PeerSelection:
    """Value every candidate dataset with MSR-Banzhaf (pyDVL) and keep the top ones.

    Parameters
    ----------
    pool : Pool or Hierarchy
        The candidates (anything with a ``.hierarchy`` works).
    evaluator : Evaluator
        Must be able to train on any set of datasets (``can_train``): the utility of a subset
        S is ``evaluator.score(S, seed_i, split)``, a model trained on the local data plus S.
    budget : int
        Number of utility evaluations (models trained); the run uses exactly this many.
    k, percentile : optional
        The final rule, as for policies: top ``k`` by value, or every dataset at or above
        the ``percentile``-th percentile of the values; default the single best.
    seed : int or Generator, default 0
        Seeds the subset sampler and, through :func:`~dashsel.random_state.derive_seed`,
        the i-th evaluation (``derive_seed(seed, i)``), as trials of a run are seeded.
    split : str, default "validation"
        Split the utility is measured on. Keep the test split for the final model.

    Returns
    -------
    PeerSelection

    Notes
    -----
    *Adaptations.* pyDVL values data points of a ``Dataset`` with a ``Utility`` that trains a
    model on them. Here the "points" are the candidate datasets (point i is
    ``hierarchy.dataset_ids[i]``) and the utility is overridden to call the evaluator; pyDVL
    has no notion of data that is always in the coalition, so the local data is pinned by
    the utility itself, and the empty coalition is the local data alone (pyDVL would score
    it 0). Each evaluation gets its own seed, so repeated subsets are re-trained, like
    repeated pulls in a bandit, rather than served from a cache.

    *Budget.* pyDVL's stopping rules count value updates or checks, and MSR updates every
    player after each evaluation with a check after each update; ``MaxUpdates(budget)``
    would stop after updating only the first player with the last evaluation, and pyDVL's
    driver keeps two jobs in flight, so it can start evaluations it then discards. Instead
    the MSR sampler is cut to exactly ``budget`` subsets, the criterion never stops, and
    evaluations run synchronously in this process (an in-process backend) as one batch, in
    sample order, so every evaluation is used and counted and the values are reproducible
    to the bit.

    *Not expressed.* Banzhaf values are utility averages, with no Gaussian reward model,
    no hierarchy (groups play no part in valuation) and no adaptivity: subsets are drawn
    uniformly (each dataset in with probability 1/2) whatever earlier evaluations showed.
    With few evaluations per player the values are noisy; a player that was in (or out of)
    every sampled subset gets value 0.

    The first call adds ``numpy.float_`` (an alias of ``numpy.float64``) back to NumPy 2 if
    it is missing, because pyDVL 0.9 still refers to it at import time.
    """
    hierarchy = pool if isinstance(pool, Hierarchy) else pool.hierarchy
    if (
        isinstance(budget, bool)
        or not isinstance(budget, int | float | np.integer)
        or not math.isfinite(budget)
        or int(budget) != budget
        or budget < 1
    ):
        raise DashselError(f"budget must be a positive integer, got {budget!r}")
    budget = int(budget)
    validate_selection_rule(k, percentile)
    if not getattr(evaluator, "can_train", False):
        raise DashselError(
            f"pyDVL Banzhaf valuation trains on subsets of datasets: evaluator "
            f"{type(evaluator).__name__} cannot train (its can_train is False)"
        )
    pydvl = _import_pydvl()
    # Timed from here: importing pyDVL (seconds, once per process) is not the method's cost.
    t_start = time.perf_counter()

    base_seed = int(check_random_state(seed).integers(0, 2**32 - 1))
    utility = _make_utility(pydvl, hierarchy, evaluator, base_seed, split)
    sampler_cls = _budgeted_msr_sampler(pydvl, budget)
    with warnings.catch_warnings():
        # pyDVL's own deprecation shim warns about a ``config`` argument we never pass. Only
        # that message is silenced: the evaluator runs inside this call and its warnings stay.
        warnings.filterwarnings("ignore", message="Both `config`")
        warnings.filterwarnings("ignore", message=".*uses deprecated arguments: `config`")
        warnings.filterwarnings("ignore", message="Parameter `batch_size` is for experimental")
        result = pydvl.semivalues.compute_msr_banzhaf_semivalues(
            utility,
            done=pydvl.stopping.MaxChecks(None),  # never stops: the sampler ends the run
            sampler_t=sampler_cls,
            # One job holding every sample: pyDVL's driver keeps two jobs in flight and
            # processes finished ones in set order (by memory address), which would make the
            # order of MSR updates, and so the last bits of the values, vary between runs.
            batch_size=budget,
            n_jobs=1,
            parallel_backend=_in_process_backend(pydvl),
            progress=False,
            seed=base_seed,
        )
    if utility.n_evaluations > budget:  # pragma: no cover - guarded by the sampler
        raise AssertionError(f"pyDVL ran {utility.n_evaluations} evaluations, budget {budget}")

    values = np.full(hierarchy.n_datasets, np.nan)
    values[np.asarray(result.indices, dtype=int)] = np.asarray(result.values, dtype=float)
    ids = list(hierarchy.dataset_ids)
    chosen = top_by_mean(ids, values, k, percentile)
    total = time.perf_counter() - t_start
    return PeerSelection(
        selected=tuple(chosen),
        groups=tuple(dict.fromkeys(hierarchy.group_of(d) for d in chosen)),
        values={d: float(v) for d, v in zip(ids, values, strict=True)},
        n_evaluations=utility.n_evaluations,
        evaluation_seconds=utility.seconds,
        overhead_seconds=max(total - utility.seconds, 0.0),
    )


class _Modules:
    """The pyDVL modules this peer uses, imported once."""

    def __init__(self) -> None:
        import pydvl.parallel as parallel
        import pydvl.utils as utils
        import pydvl.value.sampler as sampler
        import pydvl.value.semivalues as semivalues
        import pydvl.value.stopping as stopping

        self.parallel = parallel
        self.utils = utils
        self.sampler = sampler
        self.semivalues = semivalues
        self.stopping = stopping


_PYDVL: _Modules | None = None


def _import_pydvl() -> _Modules:
    global _PYDVL
    # pyDVL 0.9 annotates with ``np.float_``, removed in NumPy 2.0; restore the alias (it is
    # float64) so that its modules import. Nothing else changes in NumPy.
    if not hasattr(np, "float_"):
        setattr(np, "float_", np.float64)  # noqa: B010 - a literal np.float_ trips NPY201
    with warnings.catch_warnings():
        # pyDVL's decorators from the `deprecate` package warn (Future/User/Deprecation
        # warnings) when its modules are imported; none concerns the user.
        warnings.simplefilter("ignore")
        # Checked on every call (a cheap sys.modules look-up), not only the first.
        require("pydvl", "peers", "the pyDVL Banzhaf peer")
        if _PYDVL is None:
            _PYDVL = _Modules()
    return _PYDVL


def _make_utility(
    pydvl: _Modules, hierarchy: Hierarchy, evaluator: Evaluator, base_seed: int, split: str
) -> Any:
    """A pyDVL ``Utility`` whose point i is candidate dataset i, scored by the evaluator."""

    class DatasetSubsetUtility(pydvl.utils.Utility):
        # Utility.__init__ wants a model and a scorer to train on the points of a Dataset;
        # here training is the evaluator's job, so only what pyDVL's valuation code reads
        # (data, cache settings) is set, and ``_utility`` is replaced.
        def __init__(self) -> None:
            n = hierarchy.n_datasets
            self.data = pydvl.utils.Dataset(
                np.arange(n, dtype=float).reshape(-1, 1),
                np.zeros(n),
                np.zeros((1, 1)),
                np.zeros(1),
                data_names=list(hierarchy.dataset_ids),
            )
            self.cache = None
            self.default_score = math.nan
            self.score_range = np.array([-np.inf, np.inf])
            self.catch_errors = False
            self.show_warnings = True
            self.clone_before_fit = False
            self.n_evaluations = 0
            self.seconds = 0.0
            self._initialize_utility_wrapper()

        def _utility(self, indices: frozenset[int]) -> float:
            # Sorted, so the evaluator sees a canonical order whatever the set's iteration.
            datasets: Sequence[str] = [hierarchy.dataset_ids[i] for i in sorted(indices)]
            eval_seed = derive_seed(base_seed, self.n_evaluations)
            self.n_evaluations += 1
            t0 = time.perf_counter()
            try:
                score = float(evaluator.score(datasets, eval_seed, split))  # type: ignore[arg-type]
            finally:
                self.seconds += time.perf_counter() - t0
            if not math.isfinite(score):
                raise DashselError(
                    f"evaluator score for datasets {list(datasets)[:5]} is not finite: {score!r}"
                )
            return score

    return DatasetSubsetUtility()


def _budgeted_msr_sampler(pydvl: _Modules, budget: int) -> type:
    """pyDVL's MSR sampler, cut to ``budget`` subsets."""

    class BudgetedMSRSampler(pydvl.sampler.MSRSampler):
        def __iter__(self):  # type: ignore[override]
            return itertools.islice(super().__iter__(), budget)

    return BudgetedMSRSampler


class _SynchronousExecutor(Executor):
    """Runs each submitted job at once in the calling thread (order = submission order)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


_BACKEND_CLS: type | None = None


def _in_process_backend(pydvl: _Modules) -> Any:
    """A pyDVL parallel backend that evaluates in this process, one job at a time.

    pyDVL's default (joblib/loky) runs the utility in worker processes: the evaluator would
    be pickled to each, evaluation counts would be lost, and order would vary.
    """
    global _BACKEND_CLS
    if _BACKEND_CLS is None:
        base = pydvl.parallel.ParallelBackend

        # Subclassing registers the name in pyDVL's backend table, so define it once.
        class _InProcessBackend(base, backend_name="dashsel-in-process"):  # type: ignore[misc]
            def __init__(self, config: Any = None) -> None:
                self.config = {}

            @classmethod
            def executor(cls, max_workers=None, *, config=None, cancel_futures=None):
                return _SynchronousExecutor()

            def get(self, v, *args, **kwargs):
                return v

            def put(self, v, *args, **kwargs):
                return v

            def wrap(self, fun, **kwargs):
                return fun

            def wait(self, v, *args, **kwargs):
                return v

            def _effective_n_jobs(self, n_jobs: int) -> int:
                return 1

        _BACKEND_CLS = _InProcessBackend
    return _BACKEND_CLS()
