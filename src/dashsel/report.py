"""Reading a finished (or interrupted) run back from its journal, for ``dashsel report``.

The journal is storage only; rebuilding what the run's policy believed needs the policy
registry, so it lives here, beside its one user, and not in :mod:`dashsel.journal`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dashsel.errors import DashselError, JournalError
from dashsel.hierarchy import Hierarchy
from dashsel.journal import SQLiteJournal, meta_field

if TYPE_CHECKING:
    import pandas as pd

    from dashsel.policies.base import Posterior, Recommendation


def read_journal(path: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """Read a journal file without changing it: its run metadata and its trials.

    Returns
    -------
    meta : dict
        The run header (pool, policy, evaluator, seed, ...).
    trials : pandas.DataFrame
        Every started trial, columns :data:`~dashsel.trial.TRIAL_COLUMNS`.

    Raises
    ------
    JournalError
        If ``path`` does not exist, is empty, holds no run, or is not a dashsel journal.
    """
    path = Path(path)
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
    order. Returns ``(None, None)`` when that is impossible (a policy that is not registered,
    or a journal without the hierarchy).
    """
    from dashsel.policies import make_policy

    ids, groups = meta_field(meta, "pool.dataset_ids"), meta_field(meta, "pool.groups")
    name, params = meta_field(meta, "policy.name"), meta_field(meta, "policy.params") or {}
    if not ids or not groups or not name:
        return None, None
    try:
        policy = make_policy(name, **params)
    except (DashselError, TypeError, ValueError):
        return None, None
    policy.reset(Hierarchy(ids, groups), random_state=int(meta.get("seed", 0)))
    done = frame[frame["state"] == "complete"].sort_values("number")
    policy.replay(
        zip(done["dataset_id"], done["reward"].astype(float), strict=True), n_asked=len(frame)
    )
    return policy.posterior(), policy.recommend(k=k, percentile=percentile)
