"""Reading a finished (or interrupted) run back from its journal, for ``dashsel report``.

The journal is storage only; rebuilding what the run's policy believed needs the policy
registry, so it lives here, beside its users (``dashsel report``, ``dashsel study show``,
:class:`dashsel.Study`), and not in :mod:`dashsel.journal`.

The journal keeps the run's selection rule (``top-k`` or a percentile), so a report makes the
same selection as the run did unless it is asked for another cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dashsel.errors import DashselError, JournalError, one_line
from dashsel.hierarchy import Hierarchy
from dashsel.journal import SQLiteJournal, meta_field
from dashsel.policies.base import validate_selection_rule

if TYPE_CHECKING:
    import pandas as pd

    from dashsel.policies.base import Policy, Posterior, Recommendation


def read_journal(path: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """Read a journal file without changing it: its run metadata and its trials.

    Opened read-only (another user's file, a read-only folder, a journal a run is writing).

    Returns
    -------
    meta : dict
        The run header (pool, policy, evaluator, seed, selection rule, ...).
    trials : pandas.DataFrame
        Every started trial, columns :data:`~dashsel.trial.TRIAL_COLUMNS`.

    Raises
    ------
    JournalError
        If ``path`` does not exist, is empty, holds no run, is damaged, or is not a dashsel
        journal; the message is one line naming the file and what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise JournalError(f"{path} is a folder, not a dashsel journal")
    if not path.is_file():
        raise JournalError(f"journal {path} does not exist")
    if path.stat().st_size == 0:
        raise JournalError(f"journal {path} is empty")
    # read-only: works on another user's journal, in a read-only folder, during a live run
    with SQLiteJournal(path, mode="read") as j:
        meta = j.meta()
        if not meta:
            raise JournalError(f"journal {path} holds no run yet")
        return meta, j.trials_frame()


def selection_rule(
    meta: Mapping[str, Any], k: int | None = None, percentile: float | None = None
) -> tuple[int | None, float | None, str]:
    """The rule a report applies: the one asked for, else the run's own.

    Returns ``(k, percentile, source)`` with source ``"asked"`` or ``"run"``.
    """
    if k is not None or percentile is not None:
        validate_selection_rule(k, percentile)
        return k, percentile, "asked"
    sel = meta.get("selection")
    if isinstance(sel, Mapping):
        rk, rp = sel.get("k"), sel.get("percentile")
        try:
            validate_selection_rule(rk, rp)
        except DashselError:
            rk = rp = None  # a header we cannot read a rule from: the single best
        return rk, rp, "run"
    return None, None, "run"


def describe_rule(k: int | None, percentile: float | None) -> str:
    """``"top-3"``, ``"percentile 90"`` or ``"the single best"``."""
    if k is not None:
        return f"top-{k}"
    if percentile is not None:
        return f"percentile {percentile:g}"
    return "the single best"


def replayed_policy(meta: Mapping[str, Any], frame: pd.DataFrame) -> Policy | None:
    """The run's policy, made again and told the complete trials in number order (what the
    run's policy had been told once they were all in); None when impossible (a policy that is
    not registered, or a journal without the hierarchy)."""
    from dashsel.policies import make_policy

    ids, groups = meta_field(meta, "pool.dataset_ids"), meta_field(meta, "pool.groups")
    name, params = meta_field(meta, "policy.name"), meta_field(meta, "policy.params") or {}
    if not ids or not groups or not name or not isinstance(params, Mapping):
        return None
    try:
        policy = make_policy(name, **params)
    except (DashselError, TypeError, ValueError):
        return None
    reset_policy(policy, Hierarchy(ids, groups), meta)
    done = frame[frame["state"] == "complete"].sort_values("number")
    try:
        policy.replay(
            zip(done["dataset_id"], done["reward"].astype(float), strict=True), n_asked=len(frame)
        )
    except DashselError as exc:
        raise JournalError(f"journal trials cannot be replayed ({one_line(exc)})") from None
    return policy


def final_choice(
    meta: Mapping[str, Any], policy: Policy, k: int | None, percentile: float | None
) -> tuple[Recommendation, dict[str, str]]:
    """The policy's recommendation under the rule, made set-aware with the near-copies the
    journal header keeps (:func:`dashsel.sets.set_aware`), as the run's own final choice was.
    Returns it and, for each candidate skipped as a near-copy of a chosen one, why."""
    from dashsel.sets import Redundancy, set_aware

    rec = policy.recommend(k=k, percentile=percentile)
    record = meta.get("near_copies")
    hierarchy = getattr(policy, "hierarchy_", None)
    if record is None or hierarchy is None:  # None: a policy that keeps no pool of its own
        return rec, {}
    red = Redundancy.from_record(record, "journal header")
    return set_aware(policy, rec, red, hierarchy)


def replay_posterior(
    meta: Mapping[str, Any],
    frame: pd.DataFrame,
    *,
    k: int | None = None,
    percentile: float | None = None,
) -> tuple[Posterior | None, Recommendation | None]:
    """The posterior and recommendation of a journaled run, rebuilt from its trials.

    The run's policy is made again from the metadata (``make_policy(name, **params)``), bound
    to the journaled hierarchy with the run's seed, and told the complete trials in number
    order. Without ``k`` and ``percentile`` the run's own selection rule applies; near-copies
    the run found are skipped as the run skipped them (:func:`final_choice`). Returns
    ``(None, None)`` when that is impossible (see :func:`replayed_policy`).
    """
    k, percentile, _ = selection_rule(meta, k, percentile)
    policy = replayed_policy(meta, frame)
    if policy is None:
        return None, None
    return policy.posterior(), final_choice(meta, policy, k, percentile)[0]


def report_dict(
    path: str | Path,
    meta: Mapping[str, Any],
    frame: pd.DataFrame,
    *,
    k: int | None = None,
    percentile: float | None = None,
) -> dict[str, Any]:
    """What ``dashsel report --json`` / ``dashsel study show --json`` write.

    ``selected`` and ``selected_groups`` are those of the run's result JSON when the rule is
    the run's; ``rule`` says which rule made them; ``set_skipped`` maps each candidate passed
    over as a near-copy of a chosen one to why (as the result JSON's).
    """
    k, percentile, source = selection_rule(meta, k, percentile)
    policy = replayed_policy(meta, frame)
    rec, skipped = (None, {}) if policy is None else final_choice(meta, policy, k, percentile)
    states = frame["state"].value_counts().to_dict() if len(frame) else {}
    return {
        "journal": str(path),
        "pool": meta_field(meta, "pool.name"),
        "policy": meta_field(meta, "policy.name"),
        "policy_params": meta_field(meta, "policy.params"),
        "seed": meta.get("seed"),
        "budget": meta.get("budget"),
        "rule": {
            "k": k,
            "percentile": percentile,
            "source": source,
            "text": describe_rule(k, percentile),
        },
        "selected": None if rec is None else list(rec.datasets),
        "selected_groups": None if rec is None else list(rec.groups),
        "set_skipped": skipped,
        "n_trials": len(frame),
        "n_complete": int(states.get("complete", 0)),
        "n_running": int(states.get("running", 0)),
        "n_failed": int(states.get("failed", 0)),
    }


def reset_policy(policy: Policy, hierarchy: Hierarchy, meta: Mapping[str, Any]) -> Policy:
    """Reset ``policy`` as the run in ``meta`` did: its seed and, for a policy that takes
    covariates, the prior scores the journal header keeps."""
    from dashsel.run import covariates_from_meta, takes_covariates

    seed = meta.get("seed", 0)
    seed = int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else 0
    x = covariates_from_meta(meta) if takes_covariates(policy) else None
    if x is not None and x.shape[0] == hierarchy.n_datasets:
        return policy.reset(hierarchy, random_state=seed, covariates=x)  # type: ignore[call-arg]
    return policy.reset(hierarchy, random_state=seed)
