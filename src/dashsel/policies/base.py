"""The policy protocol: ``reset`` / ``ask`` / ``tell`` / ``posterior`` / ``recommend``.

A policy is configured in ``__init__`` (parameters only, scikit-learn style) and gets its state
from :meth:`Policy.reset`, which binds it to a pool's :class:`~dashsel.hierarchy.Hierarchy` and
a seed. Learned state lives in attributes ending in ``_``.

Reproducibility contract (checked by :mod:`dashsel.testing`): the dataset returned by the t-th
``ask`` depends only on the seed, ``t``, the rewards told before it and the ``exclude`` set it
is given. Policies draw their randomness from :func:`dashsel.random_state.step_generator`,
never from a generator that advances across calls, so replaying a journal's trials with
``tell`` and then asking again gives exactly what an uninterrupted run would have asked.

Pending trials: ``ask(exclude=ids)`` never returns one of ``ids`` while the pool holds another
dataset, and the slots of a batch ``ask(n)`` exclude the earlier slots, so a batch holds
distinct datasets while the pool has them (slot j of ``ask(n, exclude=E)`` is exactly what a
single ``ask(exclude=E + slots before j)`` would return at that step).

Naming: policies follow scikit-learn (``get_params(deep=True)``, ``set_params``,
``sklearn.base.clone``). The seed is given at :meth:`Policy.reset` as ``random_state`` (an
int, a ``numpy.random.Generator`` or None, as in scikit-learn); the CLI's ``--seed``, the
manifest's ``seed`` and ``run(..., seed=)`` are the same value under its everyday name.

Beliefs are columnar: :meth:`Policy.posterior` returns a :class:`Posterior` built with
:meth:`Posterior.from_arrays` from numpy arrays (``mean``, ``std``, ``pulls`` per dataset and
per group, hierarchy order), so the end of a run at 10^6 datasets costs a few array
operations. :class:`Belief` objects are made only for single look-ups
(``posterior.dataset(id)``, ``posterior.group(id)``) or when ``posterior.datasets`` is
iterated; :meth:`Posterior.to_frame` gives a pandas view and :meth:`Posterior.top` the
positions of the best datasets.
"""

from __future__ import annotations

import inspect
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Self, overload

import numpy as np
from numpy.typing import ArrayLike

from dashsel.errors import DashselError, RewardError, UnknownDatasetError, one_line
from dashsel.hierarchy import Hierarchy
from dashsel.random_state import RandomState, check_random_state, step_generator

if TYPE_CHECKING:
    import pandas as pd

#: Largest reward magnitude :meth:`Policy.tell` accepts. Far beyond any accuracy or loss, and
#: small enough that sums, squared deviations and posterior precisions built from up to
#: 10^100 such rewards stay finite (1e308 told twice would overflow them to inf and NaN).
MAX_ABS_REWARD = 1e100


@dataclass(frozen=True)
class Belief:
    """Current belief about one arm (a dataset or a group).

    ``mean`` and ``std`` are the posterior's (or, for frequentist policies, the empirical mean
    and its standard error; NaN where nothing is known). ``group`` is None for a group's own
    belief. A :class:`Posterior` holds its beliefs as arrays and builds a ``Belief`` only
    when one is looked up or iterated over.
    """

    id: str
    group: str | None
    mean: float
    std: float
    pulls: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BELIEF_COLUMNS = ("id", "group", "mean", "std", "pulls")


class BeliefSequence(Sequence[Belief]):
    """A read-only sequence of :class:`Belief` over one level of a :class:`Posterior`.

    Nothing is built in advance: each item is made when indexed or iterated, so holding
    ``posterior.datasets`` costs nothing at 10^6 datasets (iterating it still makes one
    object per dataset; use the posterior's arrays or :meth:`Posterior.to_frame` instead).
    """

    def __init__(self, posterior: Posterior, level: str) -> None:
        self._post = posterior
        self._level = level

    def __len__(self) -> int:
        p = self._post
        return p.n_datasets if self._level == "datasets" else p.n_groups

    @overload
    def __getitem__(self, i: int) -> Belief: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Belief, ...]: ...
    def __getitem__(self, i: int | slice) -> Belief | tuple[Belief, ...]:
        if isinstance(i, slice):
            return tuple(self._post._belief(self._level, k) for k in range(len(self))[i])
        n = len(self)
        k = int(i)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(i)
        return self._post._belief(self._level, k)

    def __iter__(self) -> Iterator[Belief]:
        p, level = self._post, self._level
        if level == "datasets":
            groups = p.group_ids
            rows = zip(
                p.dataset_ids,
                p.group_index.tolist(),
                p.mean.tolist(),
                p.std.tolist(),
                p.pulls.tolist(),
                strict=True,
            )
            for d, g, m, s, n in rows:
                yield Belief(d, groups[g], m, s, n)
        else:
            rows = zip(
                p.group_ids,
                p.group_mean.tolist(),
                p.group_std.tolist(),
                p.group_pulls.tolist(),
                strict=True,
            )
            for g, m, s, n in rows:
                yield Belief(g, None, m, s, n)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{len(self)} {self._level} beliefs>"


class Posterior:
    """Beliefs about every dataset (pool order) and every group (first-appearance order),
    held as columns.

    The posterior interface every policy implements: :meth:`Policy.posterior` returns
    ``Posterior.from_arrays(hierarchy, mean=..., std=..., pulls=..., group_mean=...,
    group_std=..., group_pulls=...)`` with one float per dataset (``mean``, ``std``; NaN where
    unknown), one count per dataset (``pulls``) and the same per group, in the hierarchy's
    order (``hierarchy.dataset_ids``, ``hierarchy.group_ids``). The arrays are the policy's
    beliefs at the time of the call (a snapshot: pass copies of arrays the policy keeps
    updating in place). Nothing per dataset is built in Python: ids come from the hierarchy,
    :class:`Belief` objects only on look-up or iteration, a DataFrame only on
    :meth:`to_frame`.

    ``Posterior(datasets=[Belief, ...], groups=[Belief, ...])`` still builds one from
    beliefs (small pools, tests).

    Attributes
    ----------
    dataset_ids, group_ids : sequence of str
        Arm ids, in order (the hierarchy's tuples, shared, not copied).
    group_index : ndarray of intp, shape (n_datasets,)
        Position in ``group_ids`` of each dataset's group.
    mean, std : ndarray of float64, shape (n_datasets,)
        Per dataset.
    pulls : ndarray of int64, shape (n_datasets,)
        Rewards told per dataset.
    group_mean, group_std, group_pulls : ndarray, shape (n_groups,)
        The same per group.

    Arrays are read-only views: a posterior never changes once made.
    """

    def __init__(self, datasets: Iterable[Belief] = (), groups: Iterable[Belief] = ()) -> None:
        ds, gs = tuple(datasets), tuple(groups)
        group_ids = tuple(g.id for g in gs)
        pos = {g: i for i, g in enumerate(group_ids)}
        for b in ds:  # a dataset's group absent from ``groups`` gets a NaN belief
            if b.group is not None and b.group not in pos:
                pos[b.group] = len(pos)
        group_ids = tuple(pos)
        extra = len(group_ids) - len(gs)
        nan = [math.nan] * extra
        self._set(
            dataset_ids=tuple(b.id for b in ds),
            group_ids=group_ids,
            group_index=np.array([pos.get(b.group, -1) for b in ds], dtype=np.intp),
            mean=[b.mean for b in ds],
            std=[b.std for b in ds],
            pulls=[b.pulls for b in ds],
            group_mean=[g.mean for g in gs] + nan,
            group_std=[g.std for g in gs] + nan,
            group_pulls=[g.pulls for g in gs] + [0] * extra,
            hierarchy=None,
        )

    @classmethod
    def from_arrays(
        cls,
        hierarchy: Hierarchy,
        *,
        mean: ArrayLike,
        std: ArrayLike,
        pulls: ArrayLike,
        group_mean: ArrayLike,
        group_std: ArrayLike,
        group_pulls: ArrayLike,
    ) -> Posterior:
        """A posterior from per-dataset and per-group arrays in ``hierarchy``'s order.

        Parameters
        ----------
        hierarchy : Hierarchy
            Gives the ids, the group of each dataset and O(1) id look-ups.
        mean, std : array_like of float, shape (n_datasets,)
        pulls : array_like of int, shape (n_datasets,)
        group_mean, group_std : array_like of float, shape (n_groups,)
        group_pulls : array_like of int, shape (n_groups,)

        Raises
        ------
        DashselError
            An array of the wrong length (a policy bug, named).
        """
        self = cls.__new__(cls)
        self._set(
            dataset_ids=hierarchy.dataset_ids,
            group_ids=hierarchy.group_ids,
            group_index=hierarchy.group_index,
            mean=mean,
            std=std,
            pulls=pulls,
            group_mean=group_mean,
            group_std=group_std,
            group_pulls=group_pulls,
            hierarchy=hierarchy,
        )
        return self

    def _set(
        self,
        *,
        dataset_ids: Sequence[str],
        group_ids: Sequence[str],
        group_index: np.ndarray,
        hierarchy: Hierarchy | None,
        **columns: ArrayLike,
    ) -> None:
        self.dataset_ids = dataset_ids
        self.group_ids = group_ids
        self._hierarchy = hierarchy
        self._group_pos: dict[str, int] | None = None
        self._dataset_pos: dict[str, int] | None = None
        n = {"": len(dataset_ids), "group_": len(group_ids)}
        arrays: dict[str, np.ndarray] = {"group_index": _frozen(group_index, np.intp)}
        for name, values in columns.items():
            level = "group_" if name.startswith("group_") else ""
            dtype = np.int64 if name.endswith("pulls") else np.float64
            a = _frozen(values, dtype)
            if a.shape != (n[level],):
                raise DashselError(
                    f"posterior: {name} has shape {a.shape}, expected ({n[level]},) "
                    f"(one per {'group' if level else 'dataset'})"
                )
            arrays[name] = a
        if arrays["group_index"].shape != (n[""],):
            raise DashselError("posterior: group_index needs one entry per dataset")
        self.group_index: np.ndarray = arrays["group_index"]
        self.mean: np.ndarray = arrays["mean"]
        self.std: np.ndarray = arrays["std"]
        self.pulls: np.ndarray = arrays["pulls"]
        self.group_mean: np.ndarray = arrays["group_mean"]
        self.group_std: np.ndarray = arrays["group_std"]
        self.group_pulls: np.ndarray = arrays["group_pulls"]

    # --- sizes and lazy views --------------------------------------------------------------
    @property
    def n_datasets(self) -> int:
        return len(self.dataset_ids)

    @property
    def n_groups(self) -> int:
        return len(self.group_ids)

    @property
    def datasets(self) -> BeliefSequence:
        """Dataset beliefs, pool order, built one by one on access (see :class:`BeliefSequence`)."""
        return BeliefSequence(self, "datasets")

    @property
    def groups(self) -> BeliefSequence:
        """Group beliefs, first-appearance order, built on access."""
        return BeliefSequence(self, "groups")

    def _belief(self, level: str, k: int) -> Belief:
        if level == "datasets":
            gi = int(self.group_index[k])
            return Belief(
                self.dataset_ids[k],
                self.group_ids[gi] if gi >= 0 else None,
                float(self.mean[k]),
                float(self.std[k]),
                int(self.pulls[k]),
            )
        return Belief(
            self.group_ids[k],
            None,
            float(self.group_mean[k]),
            float(self.group_std[k]),
            int(self.group_pulls[k]),
        )

    # --- look-ups --------------------------------------------------------------------------
    def dataset_position(self, dataset_id: str) -> int:
        """Position of a dataset id (O(1)); KeyError if the posterior has none."""
        if self._hierarchy is not None:
            if dataset_id not in self._hierarchy:
                raise KeyError(dataset_id)
            return self._hierarchy.index(dataset_id)
        if self._dataset_pos is None:
            self._dataset_pos = {d: i for i, d in enumerate(self.dataset_ids)}
        return self._dataset_pos[dataset_id]

    def dataset(self, dataset_id: str) -> Belief:
        """The belief about one dataset; KeyError if the posterior has none."""
        return self._belief("datasets", self.dataset_position(dataset_id))

    def group(self, group_id: str) -> Belief:
        """The belief about one group; KeyError if the posterior has none."""
        if self._group_pos is None:
            self._group_pos = {g: i for i, g in enumerate(self.group_ids)}
        return self._belief("groups", self._group_pos[group_id])

    def top(self, n: int = 25) -> np.ndarray:
        """Positions of the ``n`` datasets with the largest mean, best first (NaN last, ties
        in pool order): O(N) with a partial selection, for the tables that show the best."""
        return top_positions(self.mean, n)

    # --- exports ---------------------------------------------------------------------------
    def to_frame(self, level: str = "datasets") -> pd.DataFrame:
        """The beliefs of ``level`` ("datasets" or "groups") as a pandas DataFrame with
        columns ``id``, ``group``, ``mean``, ``std``, ``pulls`` (built from the arrays)."""
        import pandas as pd

        if level == "datasets":
            names = np.array([*self.group_ids, None], dtype=object)
            data = {
                "id": np.array(self.dataset_ids, dtype=object),
                "group": names[self.group_index],  # -1 (no group) picks the trailing None
                "mean": self.mean,
                "std": self.std,
                "pulls": self.pulls,
            }
        elif level == "groups":
            data = {
                "id": np.array(self.group_ids, dtype=object),
                "group": np.full(self.n_groups, None, dtype=object),
                "mean": self.group_mean,
                "std": self.group_std,
                "pulls": self.group_pulls,
            }
        else:
            raise DashselError(f"posterior level must be 'datasets' or 'groups', got {level!r}")
        return pd.DataFrame(data, columns=list(BELIEF_COLUMNS))

    def records(self, level: str = "datasets") -> list[dict[str, Any]]:
        """The beliefs of ``level`` as JSON-ready dicts (non-finite numbers as None), built
        column-wise: one dict per arm, no :class:`Belief` in between."""
        if level == "datasets":
            names = [*self.group_ids, None]
            ids = self.dataset_ids
            groups: Iterable[str | None] = (names[g] for g in self.group_index.tolist())
            cols = (self.mean, self.std, self.pulls)
        else:
            ids = self.group_ids
            groups = itertools.repeat(None, self.n_groups)
            cols = (self.group_mean, self.group_std, self.group_pulls)
        mean, std = (_finite_or_none(c) for c in cols[:2])
        return [
            {"id": i, "group": g, "mean": m, "std": s, "pulls": p}
            for i, g, m, s, p in zip(ids, groups, mean, std, cols[2].tolist(), strict=True)
        ]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Posterior):
            return NotImplemented
        if tuple(self.dataset_ids) != tuple(other.dataset_ids):
            return False
        if tuple(self.group_ids) != tuple(other.group_ids):
            return False
        floats = ("mean", "std")  # NaN (unknown) equals NaN
        return all(
            np.array_equal(getattr(self, a), getattr(other, a), equal_nan=a.endswith(floats))
            for a in _ARRAYS
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Posterior({self.n_datasets} datasets, {self.n_groups} groups)"


_ARRAYS = ("group_index", "mean", "std", "pulls", "group_mean", "group_std", "group_pulls")


def _frozen(values: ArrayLike, dtype: type) -> np.ndarray:
    """``values`` as a read-only array of ``dtype`` (no copy when it already is one)."""
    a = np.asarray(values, dtype=dtype)
    if a.flags.writeable:
        if a is values or (isinstance(values, np.ndarray) and np.shares_memory(a, values)):
            a = a.view()  # a view of the caller's array; freezing it leaves theirs writable
        a.flags.writeable = False
    return a


def _finite_or_none(a: np.ndarray) -> list[float | None]:
    values = a.tolist()
    bad = np.flatnonzero(~np.isfinite(a)).tolist()
    for i in bad:
        values[i] = None
    return values


# Size of the sample ``top_positions`` takes its threshold from.
_TOP_SAMPLE = 1 << 14


def top_positions(values: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` largest ``values``, best first; NaN ranks last and ties keep
    position order. O(N) for a small ``n`` whatever the ties (see the comments)."""
    key = np.asarray(values, dtype=float)
    nan = np.isnan(key)
    if nan.any():  # copied only when needed: the posterior's own array otherwise (8 MB at 10^6)
        key = np.where(nan, -np.inf, key)
    del nan
    n = max(0, min(int(n), key.size))
    if n == 0:
        return np.empty(0, dtype=np.intp)
    # Not numpy's argpartition: its SIMD selection takes about 0.25 s instead of 10 ms on
    # 10^6 values when the n-th largest lies in a large block of equal values (a posterior's
    # mean at the end of a short run: most datasets share their group's prior mean).
    # Instead a threshold from an evenly spaced sample keeps a few candidates (every value
    # >= it), which a stable sort ranks: ties stay in position order.
    stride = max(1, key.size // _TOP_SAMPLE)
    sample = np.sort(key[::stride])
    # The sample's j-th largest: about j * stride values lie above it; a margin of 8 + 2x
    # the expected count makes the full sort below rare.
    j = min(sample.size, 2 * -(-n * sample.size // key.size) + 8)
    candidates = np.flatnonzero(key >= sample[-j]) if j < sample.size else None
    if candidates is None or candidates.size < n:  # too few: rank everything
        return np.argsort(-key, kind="stable")[:n]
    order = np.argsort(-key[candidates], kind="stable")[:n]
    return candidates[order]


@dataclass(frozen=True)
class Recommendation:
    """The final choice: datasets (best first) and the groups they come from."""

    datasets: tuple[str, ...]
    groups: tuple[str, ...]


def _is_real(v: object) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(
        v, bool | np.bool_
    )


def check_count(what: str, n: object, minimum: int = 1) -> int:
    """``n`` as an int, or a one-line :class:`DashselError` unless it is a whole number
    >= ``minimum`` (bools, NaN, infinities and fractions are refused)."""
    if not (_is_real(n) and math.isfinite(float(n)) and int(n) == n and n >= minimum):  # type: ignore[arg-type]
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise DashselError(f"{what} must be a {bound} integer, got {n!r}")
    return int(n)  # type: ignore[call-overload]


def validate_selection_rule(k: int | None, percentile: float | None) -> None:
    """Refuse a final rule that is not ``k`` (positive integer) or ``percentile`` in [0, 100)."""
    if k is not None and percentile is not None:
        raise DashselError("give either k (top-k) or percentile, not both")
    if k is not None:
        check_count("k", k)
    if percentile is not None and not (_is_real(percentile) and 0.0 <= percentile < 100.0):
        raise DashselError(f"percentile must be a number in [0, 100), got {percentile!r}")


def top_by_mean(
    ids: Sequence[str], means: np.ndarray, k: int | None, percentile: float | None
) -> list[str]:
    """Ids ranked by mean (best first, ties by position) and cut by top-k or percentile.

    With ``percentile=x`` every id whose mean is >= the x-th percentile of ``means`` is kept,
    so at least one id is always kept. NaN means rank last and never pass a percentile.
    Default (both None): the single best.
    """
    means = np.asarray(means, dtype=float)
    if percentile is None:
        order = top_positions(means, min(int(k or 1), means.size))
        return [ids[i] for i in order.tolist()]
    finite = means[~np.isnan(means)]
    if finite.size == 0:
        return [ids[0]]
    cut = float(np.percentile(finite, percentile))
    kept = np.flatnonzero(means >= cut)  # NaN compares False: never kept
    return [ids[i] for i in kept[np.argsort(-means[kept], kind="stable")].tolist()]


class Policy(ABC):
    """Base class of all selection policies.

    Subclasses implement :meth:`_reset`, :meth:`_ask_one`, :meth:`_tell` and
    :meth:`posterior`; this class handles validation, batching, the step counter that seeds
    each decision, and the default (flat) :meth:`recommend`.
    """

    #: Name used by the CLI and in result files.
    name: str = "policy"

    # --- lifecycle -------------------------------------------------------------------------
    def reset(self, hierarchy: Hierarchy | Any, random_state: RandomState = 0) -> Self:
        """Bind to a pool's hierarchy (a :class:`Hierarchy` or anything with ``.hierarchy``)
        and start from the prior. Returns self so ``DaSH().reset(pool)`` chains."""
        if not isinstance(hierarchy, Hierarchy):
            given = hierarchy
            hierarchy = getattr(given, "hierarchy", None)
            if not isinstance(hierarchy, Hierarchy):
                raise DashselError(
                    f"{type(self).__name__}.reset needs a Pool or a Hierarchy, "
                    f"got {type(given).__name__}"
                )
        if isinstance(random_state, bool | np.bool_):  # an int to numpy, but surely a mistake
            raise DashselError(
                f"random_state must be an int, Generator or None, got {random_state!r}"
            )
        try:
            rng = check_random_state(random_state)
        except (TypeError, ValueError) as exc:  # a str, a negative int, ...
            raise DashselError(f"random_state: {one_line(exc)} (got {random_state!r})") from None
        self.hierarchy_ = hierarchy
        self.seed_ = int(rng.integers(0, 2**32 - 1))
        self.n_asked_ = 0
        self.n_told_ = 0
        self._validate()  # parameters may have been set since construction
        self._reset(hierarchy)
        return self

    def _validate(self) -> None:
        """Check the constructor parameters (one-line :class:`DashselError`); a no-op here."""
        return None

    def _check_reset(self) -> None:
        if not hasattr(self, "hierarchy_"):
            raise DashselError(
                f"{type(self).__name__} is not bound to a pool: call .reset(pool) first"
            )

    # --- ask / tell ------------------------------------------------------------------------
    @overload
    def ask(self, *, exclude: Iterable[str] = ()) -> str: ...
    @overload
    def ask(self, n: int, *, exclude: Iterable[str] = ()) -> list[str]: ...
    def ask(self, n: int | None = None, *, exclude: Iterable[str] = ()) -> str | list[str]:
        """Choose the next dataset to evaluate, or ``n`` of them for a parallel batch.

        Parameters
        ----------
        n : int, optional
            Batch size; None (default) returns a single id instead of a list.
        exclude : iterable of str, default ()
            Dataset ids not to return while the pool holds any other dataset: the pending
            (asked, not yet told) trials of a study. An id the pool does not hold raises
            :class:`~dashsel.errors.UnknownDatasetError`.

        Notes
        -----
        A batch is drawn from the current belief with independent randomness per slot (for
        Thompson sampling that is n posterior draws), before any of its rewards are told;
        each slot excludes the earlier ones, so the batch holds distinct datasets while the
        pool has enough of them that are not excluded.
        """
        self._check_reset()
        if n is not None:
            n = check_count("ask(n): n", n)
        mask = self._exclusion_mask(exclude)
        # id_at: the hierarchy remembers the ids it hands out, so the run's look-ups of them
        # need no index of the whole pool.
        if n is None:
            return self.hierarchy_.id_at(self._next(mask))
        chosen = []
        for _ in range(n):
            idx = self._next(mask)
            chosen.append(self.hierarchy_.id_at(idx))
            if mask is None:
                mask = np.zeros(self.hierarchy_.n_datasets, dtype=bool)
            mask[idx] = True
        return chosen

    def _exclusion_mask(self, exclude: Iterable[str]) -> np.ndarray | None:
        if isinstance(exclude, str):  # a lone id would otherwise be read letter by letter
            exclude = (exclude,)
        try:
            ids = list(exclude)
        except TypeError:
            raise DashselError(
                f"exclude must be an iterable of dataset ids, got {type(exclude).__name__}"
            ) from None
        if not ids:
            return None
        mask = np.zeros(self.hierarchy_.n_datasets, dtype=bool)
        mask[[self._index_of(d) for d in ids]] = True
        return mask

    def _index_of(self, dataset_id: object) -> int:
        if not isinstance(dataset_id, str):
            raise UnknownDatasetError(
                f"a dataset id must be a string, got {type(dataset_id).__name__} {dataset_id!r}"
            )
        return self.hierarchy_.index(dataset_id)

    def _next(self, excluded: np.ndarray | None) -> int:
        if excluded is not None and excluded.all():
            excluded = None  # nothing else left: any dataset may repeat
        rng = step_generator(self.seed_, self.n_asked_)
        if excluded is None or not self._takes_exclusion():
            choice = self._ask_one(rng, self.n_asked_)
        else:
            choice = self._ask_one(rng, self.n_asked_, excluded)  # type: ignore[call-arg]
        self.n_asked_ += 1
        return self._index_of(choice) if isinstance(choice, str) else int(choice)

    @classmethod
    def _takes_exclusion(cls) -> bool:
        # Policies written before ``exclude`` existed implement ``_ask_one(rng, step)``; they
        # keep working and simply ignore it (the conformance suite reports that).
        cached = cls.__dict__.get("_takes_exclusion_cache")
        if cached is None:
            cached = "excluded" in inspect.signature(cls._ask_one).parameters
            cls._takes_exclusion_cache = cached
        return bool(cached)

    def tell(self, dataset_id: str, reward: float) -> None:
        """Record the reward observed for ``dataset_id``.

        Raises :class:`~dashsel.errors.RewardError` for a reward that is not a finite number
        and :class:`~dashsel.errors.UnknownDatasetError` for an id the pool does not hold;
        neither changes the policy's state.
        """
        self._check_reset()
        idx = self._index_of(dataset_id)
        try:
            r = float(reward)
        except (TypeError, ValueError):
            raise RewardError(
                f"reward for dataset {dataset_id!r} is not a number: {reward!r}"
            ) from None
        if not math.isfinite(r):
            raise RewardError(f"reward for dataset {dataset_id!r} is not finite: {r!r}")
        if abs(r) > MAX_ABS_REWARD:
            raise RewardError(
                f"reward for dataset {dataset_id!r} is too large: {r!r} "
                f"(|reward| must be at most {MAX_ABS_REWARD:g})"
            )
        self._tell(idx, r)
        self.n_told_ += 1

    def replay(self, history: Iterable[tuple[str, float]], n_asked: int | None = None) -> Self:
        """Rebuild a resumed run's state: tell each finished trial, then set the ask counter.

        Parameters
        ----------
        history : iterable of (dataset_id, reward)
            Finished trials in the order they were told to the original policy.
        n_asked : int, optional
            How many asks the original run had made (trials started, finished or not).
            Default: the number of trials in ``history``.

        Returns
        -------
        Policy
            self; the next :meth:`ask` returns what the uninterrupted run would have asked.
        """
        self._check_reset()
        if self.n_asked_ or self.n_told_:
            raise DashselError(
                f"{type(self).__name__}.replay needs a freshly reset policy "
                f"(it has {self.n_asked_} asks and {self.n_told_} tells)"
            )
        if n_asked is not None:
            n_asked = check_count("replay: n_asked", n_asked, minimum=0)
        try:
            trials = list(history)
        except TypeError:
            raise DashselError(
                f"replay: history must be an iterable of (dataset_id, reward), "
                f"got {type(history).__name__}"
            ) from None
        for k, trial in enumerate(trials):
            if not isinstance(trial, tuple | list) or len(trial) != 2:
                raise DashselError(f"replay: history[{k}] is not a (dataset_id, reward) pair")
            self.tell(trial[0], trial[1])
        self.n_asked_ = self.n_told_ if n_asked is None else int(n_asked)
        return self

    # --- to implement ----------------------------------------------------------------------
    @abstractmethod
    def _reset(self, hierarchy: Hierarchy) -> None:
        """Initialise learned state (attributes ending in ``_``) for this hierarchy."""

    @abstractmethod
    def _ask_one(
        self, rng: np.random.Generator, step: int, excluded: np.ndarray | None = None
    ) -> str | int:
        """Choose one dataset (its id or its position) using only ``rng`` for randomness.

        ``excluded`` is None or a boolean mask over the datasets (pool order) marking those
        not to choose; it never marks them all. An implementation without the ``excluded``
        parameter is called without it and cannot honour ``ask(exclude=...)``.
        """

    @abstractmethod
    def _tell(self, index: int, reward: float) -> None:
        """Update state with a validated reward for dataset ``hierarchy_.dataset_ids[index]``."""

    @abstractmethod
    def posterior(self) -> Posterior:
        """Current beliefs about every dataset and group, as a columnar :class:`Posterior`.

        Implement it as ``Posterior.from_arrays(self.hierarchy_, mean=..., std=...,
        pulls=..., group_mean=..., group_std=..., group_pulls=...)``: numpy arrays in the
        hierarchy's dataset and group order, computed in O(N) numpy (no Python object per
        dataset) and not shared with state that later tells modify (copy such arrays).
        Policies without a group model report, per group, the empirical mean and standard
        error of the rewards its datasets received (``_stats.posterior_of`` does that).
        """

    # --- final choice ----------------------------------------------------------------------
    def recommend(self, k: int | None = None, percentile: float | None = None) -> Recommendation:
        """Final selection by estimated mean (never by an exploration score).

        Flat policies rank datasets by posterior mean and keep the top ``k`` or those at or
        above the ``percentile``-th percentile; the groups are those of the kept datasets.
        Hierarchical policies override this to choose groups first. Default: the best dataset.
        """
        self._check_reset()
        validate_selection_rule(k, percentile)
        chosen = top_by_mean(self.hierarchy_.dataset_ids, self._dataset_means(), k, percentile)
        groups = tuple(dict.fromkeys(self.hierarchy_.group_of(d) for d in chosen))
        return Recommendation(tuple(chosen), groups)

    def _dataset_means(self) -> np.ndarray:
        """Posterior mean per dataset (pool order; NaN where unknown), for :meth:`recommend`.

        Built-in policies override this with an O(N) array computation that skips the
        standard deviations; the default reads :meth:`posterior`'s ``mean`` column.
        """
        return self.posterior().mean

    # --- description (scikit-learn conventions) --------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (for journals, result files and ``sklearn.base.clone``).

        Parameters
        ----------
        deep : bool, default True
            Accepted for scikit-learn compatibility; policies hold no nested estimators, so
            it changes nothing.
        """
        return {p: getattr(self, p) for p in self._param_names() if hasattr(self, p)}

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters by name and check them as the constructor does.

        Takes effect at the next :meth:`reset`. Raises a one-line :class:`DashselError`
        naming an unknown parameter (nothing is changed then) or a value the policy refuses.
        """
        valid = self._param_names()
        bad = sorted(set(params) - set(valid))
        if bad:
            raise DashselError(
                one_line(  # a name may hold a newline
                    f"{type(self).__name__} has no parameter(s) {', '.join(bad)}; "
                    f"it takes: {', '.join(valid) or 'none'}"
                )
            )
        # Checked on a new instance first, so a refused value leaves this one unchanged.
        type(self)(**{**self.get_params(deep=False), **params})
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
