"""The base of things that hold resources (executors' workers, journals' files)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closeable:
    """:meth:`close` releases the resources; used as a context manager, it closes on exit."""

    def close(self) -> None:
        """Release resources (nothing by default). Safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
