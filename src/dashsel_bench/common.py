"""What every benchmark suite shares: the cache folder, the suite protocol and regrouping.

A *suite* (``digits5``, ``spam``) is a set of domains. For each *target* domain it builds a
:class:`~dashsel.pool.Pool` whose candidates are disjoint subsets of every domain's training
data, whose local, validation and test splits come from the target domain, and whose entries
carry ``meta["domain"]`` (the domain a subset was cut from) and ``meta["relevant"]`` (True when
that is the target domain; the paper's *Global* reference trains on exactly these).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal, Protocol

from dashsel.errors import DashselError
from dashsel.pool import DatasetEntry, Pool

Grouping = Literal["perfect", "mixed", "cross"]
GROUPINGS: tuple[str, ...] = ("perfect", "mixed", "cross")


def cache_dir(*parts: str) -> Path:
    """Folder for built data and cached evaluations, created on demand.

    ``$DASHSEL_CACHE`` if set, else ``~/.cache/dashsel``.
    """
    root = Path(os.environ.get("DASHSEL_CACHE") or Path.home() / ".cache" / "dashsel")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


class BenchmarkSuite(Protocol):
    """A family of target pools built from real multi-domain data."""

    name: str
    #: Target domains, in table order.
    targets: tuple[str, ...]

    def make_pool(
        self,
        target: str,
        *,
        n_subsets: int = 3,
        grouping: Grouping = "perfect",
        local_fraction: float = 1.0,
        seed: int = 0,
    ) -> Pool:
        """The pool for one target domain.

        ``n_subsets`` disjoint subsets per domain (3 is the paper's layout), grouped by
        ``grouping`` (see :func:`regroup`); ``local_fraction`` < 1 keeps that fraction of the
        local training data (the paper's weak-initial-model study); ``seed`` fixes the splits.
        """
        ...


def relevant_ids(pool: Pool) -> list[str]:
    """Ids of the candidates cut from the target domain (the *Global* oracle's choice)."""
    return [e.id for e in pool.entries if e.meta.get("relevant")]


def regroup(entries: Sequence[DatasetEntry], grouping: Grouping) -> list[DatasetEntry]:
    """Reassign groups of domain-ordered subsets for the paper's grouping settings.

    Entries must carry ``meta["domain"]`` and ``meta["subset"]`` (0-based index within the
    domain), every domain with the same number of subsets K.

    * ``perfect``: group = domain (the paper's default).
    * ``mixed``: noisy groups. Domain i's group keeps its subsets 0..K-2 and receives the last
      subset of domain i-1 (cyclically), so every group holds one foreign dataset, like the
      paper's example {mn1, mn2, mm0}. With K = 1 this equals ``perfect``.
    * ``cross``: group j holds subset j of every domain (the paper's cross-domain ablation).

    Entries with ``meta["trap"]`` are left out of the layout (domains, K); see above.
    """
    if grouping not in GROUPINGS:
        raise DashselError(f"unknown grouping {grouping!r}: use one of {', '.join(GROUPINGS)}")
    honest = [e for e in entries if not e.meta.get("trap")]
    domains = list(dict.fromkeys(e.meta["domain"] for e in honest))
    k = 1 + max(int(e.meta["subset"]) for e in honest)
    out = []
    for e in entries:
        dom, sub = e.meta["domain"], int(e.meta["subset"])
        if e.meta.get("trap"):
            # Traps (see the suites' ``traps=True``) keep a group of their own, or follow the
            # honest group they were mixed into (``meta["host"]``, a domain) under every grouping.
            host = e.meta.get("host")
            if host is None:
                group = e.group
            elif grouping == "perfect":
                group = str(host)
            elif grouping == "mixed":
                group = f"mixed-{host}"
            else:
                group = f"cross-{sub % k}"
            out.append(replace(e, group=group))
            continue
        if grouping == "perfect":
            group = dom
        elif grouping == "mixed":
            if k > 1 and sub == k - 1:
                group = domains[(domains.index(dom) + 1) % len(domains)]
            else:
                group = dom
            group = f"mixed-{group}"
        else:
            group = f"cross-{sub}"
        out.append(replace(e, group=group))
    return out
