"""What a study returns: :class:`StudyResult` (raw per-run rows) and its JSON form.

Tables, plots and the report README are made from it by :mod:`dashsel_bench.report`.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dashsel_bench.config import StudyConfig, study_name

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
        return self.frames.get(study_name(study), pd.DataFrame(columns=list(ROW_COLUMNS)))

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
