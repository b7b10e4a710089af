"""Hypothesis profiles for the whole suite, and a count of the property-test cases run.

``default``: Hypothesis's defaults (tests that set ``max_examples`` keep it); the fuzz suites
run a few dozen cases each under it, so ``make test`` stays fast. ``fuzz`` (selected by the
environment variable ``DASHSEL_FUZZ=full``, as ``make fuzz`` does): a fixed seed, no deadline,
and the fuzz suites (``tests/test_*fuzz*.py``) read the profile name
(``settings.get_current_profile_name()``) to size themselves up, so that together they run
more than 10,000 cases.
"""

from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, settings

settings.register_profile("default", settings.get_profile("default"))
settings.register_profile(
    "fuzz",
    derandomize=True,  # a fixed seed: CI fails the same way every time, or never
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("fuzz" if os.environ.get("DASHSEL_FUZZ") == "full" else "default")

# Hypothesis attaches a statistics text to each test's report (it travels back from xdist
# workers); the numbers of passing/failing/invalid cases are summed from it.
_CASES = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid")


def pytest_terminal_summary(terminalreporter) -> None:
    tests = valid = total = 0
    for reports in terminalreporter.stats.values():
        for report in reports:
            stats = getattr(report, "__dict__", {}).get("_hypothesis_stats")
            if not stats:
                continue
            tests += 1
            for passing, failing, invalid in _CASES.findall(stats):
                valid += int(passing) + int(failing)
                total += int(passing) + int(failing) + int(invalid)
    if tests:
        profile = settings.get_current_profile_name()
        terminalreporter.write_line(
            f"hypothesis ({profile} profile): {valid} test cases run ({total} generated, "
            f"invalid ones included) in {tests} property tests"
        )
