"""The study harness in one import: the paper's Table 1, Figures 4 and 5, Tables 3 and 4.

Each job has its module; this one gathers their public API:

* :mod:`dashsel_bench.config`: what to run (:class:`StudyConfig`, study names, method lists);
* :mod:`dashsel_bench.bank`: the reward bank and its replay (:func:`build_bank`);
* :mod:`dashsel_bench.runner`: planning and running the cells (:func:`run_study`);
* :mod:`dashsel_bench.results`: the raw rows and their JSON (:class:`StudyResult`);
* :mod:`dashsel_bench.report`: tables, plots and the README (:func:`write_report`).
"""

from __future__ import annotations

from dashsel_bench.bank import BankReplay, RewardBank, build_bank, replay_evaluator
from dashsel_bench.config import DEFAULT_METHODS, STUDIES, StudyConfig
from dashsel_bench.report import headline_markdown, write_report
from dashsel_bench.results import ROW_COLUMNS, StudyResult, versions
from dashsel_bench.runner import run_study

__all__ = [
    "DEFAULT_METHODS",
    "ROW_COLUMNS",
    "STUDIES",
    "BankReplay",
    "RewardBank",
    "StudyConfig",
    "StudyResult",
    "build_bank",
    "headline_markdown",
    "replay_evaluator",
    "run_study",
    "versions",
    "write_report",
]
