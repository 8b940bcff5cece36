"""Test support shipped with the switch clients: a `task.Clock` that also takes calls from threads.

Threaded clients (P4Runtime, Thrift) hand results to the reactor with `callFromThread`. In tests the
reactor is a `ThreadedClock`: calls from other threads wait in a queue until the test runs them
with `run_from_threads`, which blocks (with a deadline) for as many as the test expects.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from twisted.internet import task


class ThreadedClock(task.Clock):
    """`task.Clock` plus `callFromThread`; the test decides when thread calls run."""

    def __init__(self) -> None:
        super().__init__()
        self._from_threads: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()

    def callFromThread(self, callable: Callable[..., Any], /, *args: Any) -> None:
        """Queue `callable(*args)` for `run_from_threads` (safe from any thread)."""
        self._from_threads.put((callable, args))

    def run_from_threads(self, at_least: int = 1, timeout: float = 10.0) -> int:
        """Run queued thread calls: wait for `at_least`, then run any others already queued."""
        ran = 0
        while True:
            try:
                if ran < at_least:
                    callable_, args = self._from_threads.get(timeout=timeout)
                else:
                    callable_, args = self._from_threads.get_nowait()
            except queue.Empty:
                if ran < at_least:
                    raise TimeoutError(f"only {ran} of {at_least} thread calls arrived") from None
                return ran
            callable_(*args)
            ran += 1
