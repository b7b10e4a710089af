"""Errors: one line, pickled with their message and attributes (they cross processes)."""

from __future__ import annotations

import pickle

import pytest

from dashsel.errors import (
    DashselError,
    DataError,
    JournalError,
    MissingExtraError,
    RewardError,
    UnknownDatasetError,
    one_line,
)


class TwoArgs(DashselError):
    """A subclass whose __init__ does not take the message alone."""

    def __init__(self, dataset: str, count: int) -> None:
        super().__init__(f"dataset {dataset!r}: {count} bad rows")
        self.dataset = dataset


@pytest.mark.parametrize(
    "exc",
    [
        DashselError("plain"),
        DataError("a.npz: unreadable"),
        RewardError("reward for dataset 'd' is not finite: nan"),
        JournalError("journal x.db is closed"),
        UnknownDatasetError("unknown dataset 'zz'"),
        MissingExtraError("pip install 'dashsel[ray]'"),
        TwoArgs("d0", 3),
    ],
)
def test_errors_pickle_with_class_message_and_attributes(exc: DashselError) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc)
    assert back.__dict__ == exc.__dict__


def test_with_message_keeps_class_and_attributes() -> None:
    exc = TwoArgs("d0", 3).with_message("evaluating dataset 'd0' (trial 2): 3 bad rows")
    assert type(exc) is TwoArgs and exc.dataset == "d0"
    assert str(exc) == "evaluating dataset 'd0' (trial 2): 3 bad rows"
    assert str(UnknownDatasetError("x").with_message("y")) == "y"  # KeyError would quote it


def test_one_line() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * 600) == "x" * 497 + "..."
    assert one_line("abcdef", 5) == "ab..."
    assert one_line(ValueError()) == "ValueError"  # never empty
