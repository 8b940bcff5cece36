"""Runs the pure core's operations on the in-process model, synchronously and in order, through
the same `SwitchClient.apply` path the shell uses, so tests assert where packets go."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

import p4model
from controller.core.controller_core import ControllerCore
from controller.core.journal import Journal
from controller.core.ops import ErrorKind, JournalWrite, Op, Outcome
from controller.switch.model_client import ModelSwitchClient

_sync = SynchronousTestCase()


class CoreRunner:
    """Executes the core's operations on a model switch when the test says so."""

    def __init__(self, core: ControllerCore, switch: p4model.Switch) -> None:
        self.core, self.switch = core, switch
        self.client = ModelSwitchClient(switch, task.Clock())
        self.queue: deque[Op] = deque()
        self.log: list[Op] = []
        self.journals: list[Journal] = []
        self.fail: Callable[[Op], bool] = lambda op: False
        self.check: Callable[[Op], None] = lambda op: None
        self.done: Callable[[Outcome], None] = lambda outcome: None
        self.now = 0.0

    def feed(self, ops: list[Op]) -> None:
        """Queue operations the core emitted."""
        self.queue.extend(ops)

    def outcome(self, op: Op) -> Outcome:
        """Carry out one operation (an injected failure when `fail(op)`)."""
        if self.fail(op):
            return Outcome.failed(op, ErrorKind.UNAVAILABLE, "injected failure")
        if isinstance(op, JournalWrite):
            self.journals.append(op.journal)
            return Outcome.done(op)
        (result,) = _sync.successResultOf(defer.ensureDeferred(self.client.apply([op])))
        return result

    def run(self) -> None:
        """Carry out every queued operation, and the ones their outcomes lead to."""
        while self.queue:
            op = self.queue.popleft()
            self.log.append(op)
            self.check(op)
            outcome = self.outcome(op)
            if outcome.ok:
                self.done(outcome)
            self.feed(self.core.on_outcome(self.now, outcome))
