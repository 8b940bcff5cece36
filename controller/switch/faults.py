"""Fault injection around any `SwitchClient`: write latency, write failures, late and reordered
digests. Used by scenario tests and `bench pcc`; deterministic given a seeded `random.Random`
and a `task.Clock`.

Semantics (chosen to match a pipelined RPC channel to BMv2, whose single worker thread applies
requests in arrival order):
- Every call goes through one FIFO. A write issued at time t with drawn latency L takes effect
  at max(t + L, the time the previous call took effect): writes overlap in flight but are applied
  in the order they were issued, never reordered.
- A failing write (probability `write_failure_rate`) raises `SwitchError` at that same moment
  and is NOT applied; later writes are unaffected.
- Reads (`table_num_entries`, `table_get_default`) get no extra latency and never fail, but still
  wait for earlier writes, so they see everything written before them.
- Each digest is delivered after its own delay drawn from `digest_delay`; with `reorder=True`
  the delays are independent (digests may overtake each other), otherwise a digest is never
  delivered before an earlier one. Ageing notices pass through unchanged.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

from controller.core.ops import (
    DefaultActionRead,
    EntryCount,
    Outcome,
    SwitchOp,
    TableRead,
    describe,
)
from controller.switch.api import (
    AgedCallback,
    DefaultEntry,
    Digest,
    DigestCallback,
    ErrorKind,
    SwitchClient,
    SwitchError,
    TimeReactor,
    describe_call,
)

UNKNOWN = ErrorKind.UNKNOWN
_T = TypeVar("_T")


@dataclass
class _Pending:
    """A call waiting in the FIFO until `due`."""

    due: float
    what: str
    write: bool
    failing: bool
    call: Callable[[], Coroutine[Any, Any, Any]]
    result: defer.Deferred[Any]


class FaultySwitch:
    """A `SwitchClient` that delays, fails and reorders around an inner client."""

    def __init__(  # noqa: PLR0917 - signature fixed by the contracts
        self,
        inner: SwitchClient,
        reactor: TimeReactor,
        rng: random.Random,
        write_latency: tuple[float, float] = (0.0, 0.0),
        write_failure_rate: float = 0.0,
        digest_delay: tuple[float, float] = (0.0, 0.0),
        reorder: bool = True,
    ) -> None:
        for name, (lo, hi) in (("write_latency", write_latency), ("digest_delay", digest_delay)):
            if not 0.0 <= lo <= hi:
                raise ValueError(f"{name} must satisfy 0 <= lo <= hi, got {(lo, hi)!r}")
        if not 0.0 <= write_failure_rate <= 1.0:
            raise ValueError(f"write_failure_rate must be in [0, 1], got {write_failure_rate!r}")
        self._inner = inner
        self._reactor = reactor
        self._rng = rng
        self._write_latency = write_latency
        self._failure_rate = write_failure_rate
        self._digest_delay = digest_delay
        self._reorder = reorder
        self._applied_at = float("-inf")
        self._queue: deque[_Pending] = deque()
        self._pumping = False
        self._busy = False
        self._timer: object | None = None
        self._last_delivery = float("-inf")
        self.injected_failures = 0
        self.writes = 0
        self.demoted = False
        """A fault: another controller took the switch over. Writes then fail as NOT_PRIMARY
        without reaching the switch, as a P4Runtime backup's do (counted in `refused`)."""
        self.refused = 0

    @property
    def primary(self) -> bool:
        """Whether this controller may write (see `demoted`)."""
        return not self.demoted and self._inner.primary

    @property
    def inner(self) -> SwitchClient:
        """The wrapped client."""
        return self._inner

    async def _in_order(
        self, what: str, write: bool, call: Callable[[], Coroutine[Any, Any, _T]]
    ) -> _T:
        now = self._reactor.seconds()
        latency = self._rng.uniform(*self._write_latency) if write else 0.0
        failing = write and self._failure_rate > 0.0 and self._rng.random() < self._failure_rate
        due = max(now + latency, self._applied_at)
        self._applied_at = due
        pending = _Pending(due, what, write, failing, call, defer.Deferred())
        self._queue.append(pending)
        self._pump()
        result: _T = await pending.result
        return result

    def _pump(self) -> None:
        """Start every queued call that is due, one at a time, iteratively (no deep recursion)."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._queue and not self._busy:
                head = self._queue[0]
                wait = head.due - self._reactor.seconds()
                if wait > 0:
                    if self._timer is None:
                        self._timer = self._reactor.callLater(wait, self._timer_fired)
                    return
                self._queue.popleft()
                if head.write:
                    self.writes += 1
                if head.failing:
                    self.injected_failures += 1
                    head.result.errback(
                        SwitchError(f"{head.what}: injected write failure", UNKNOWN)
                    )
                    continue
                applied: defer.Deferred[Any] = defer.ensureDeferred(head.call())
                if applied.called:
                    applied.chainDeferred(head.result)
                else:
                    self._busy = True
                    applied.addBoth(self._finished, head)
        finally:
            self._pumping = False

    def _finished(self, outcome: object, head: _Pending) -> None:
        self._busy = False
        if isinstance(outcome, Failure):
            head.result.errback(outcome)
        else:
            head.result.callback(outcome)
        self._pump()

    def _timer_fired(self) -> None:
        self._timer = None
        self._pump()

    async def apply(self, ops: Sequence[SwitchOp]) -> list[Outcome]:
        """Each operation through the FIFO on its own (writes may fail or be delayed); the
        outcomes come back together, in order."""
        return list(await defer.gatherResults([defer.ensureDeferred(self._one(op)) for op in ops]))

    async def _one(self, op: SwitchOp) -> Outcome:
        write = not isinstance(op, DefaultActionRead | EntryCount | TableRead)
        if write and self.demoted:
            self.refused += 1
            return Outcome.failed(op, ErrorKind.NOT_PRIMARY, f"{describe(op)}: not primary")
        try:
            (outcome,) = await self._in_order(describe(op), write, lambda: self._inner.apply([op]))
        except SwitchError as exc:
            return Outcome.failed(op, exc.kind, str(exc))
        return outcome

    async def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        """Add an entry and return its handle."""
        what = describe_call("table_add", table, action, keys, params)
        return await self._in_order(
            what, True, lambda: self._inner.table_add(table, action, keys, params, prio)
        )

    async def table_modify(
        self, table: str, action: str, handle: int, params: Sequence[str]
    ) -> None:
        """Change the action and parameters of the entry `handle`."""
        what = describe_call("table_modify", table, action, handle, params)
        await self._in_order(
            what, True, lambda: self._inner.table_modify(table, action, handle, params)
        )

    async def table_delete(self, table: str, handle: int) -> None:
        """Delete the entry `handle`."""
        what = describe_call("table_delete", table, handle)
        await self._in_order(what, True, lambda: self._inner.table_delete(table, handle))

    async def table_clear(self, table: str) -> None:
        """Delete every entry of `table`."""
        what = describe_call("table_clear", table)
        await self._in_order(what, True, lambda: self._inner.table_clear(table))

    async def table_set_default(self, table: str, action: str, params: Sequence[str]) -> None:
        """Set the default action of `table`."""
        what = describe_call("table_set_default", table, action, params)
        await self._in_order(
            what, True, lambda: self._inner.table_set_default(table, action, params)
        )

    async def table_set_timeout(self, table: str, handle: int, ms: int) -> None:
        """Give the entry `handle` an idle timeout."""
        what = describe_call("table_set_timeout", table, handle, ms)
        await self._in_order(what, True, lambda: self._inner.table_set_timeout(table, handle, ms))

    async def table_num_entries(self, table: str) -> int:
        """Return the number of entries in `table`."""
        what = describe_call("table_num_entries", table)
        return await self._in_order(what, False, lambda: self._inner.table_num_entries(table))

    async def table_get_default(self, table: str) -> DefaultEntry:
        """Return the default action of `table` and its parameter values."""
        what = describe_call("table_get_default", table)
        return await self._in_order(what, False, lambda: self._inner.table_get_default(table))

    async def subscribe(self, on_digest: DigestCallback, on_aged: AgedCallback) -> None:
        """Subscribe to the inner client, delaying (and maybe reordering) each digest."""

        def delayed(digest: Digest) -> None:
            if self.demoted:
                return  # a backup receives no digests
            now = self._reactor.seconds()
            due = now + self._rng.uniform(*self._digest_delay)
            if not self._reorder:
                due = max(due, self._last_delivery)
                self._last_delivery = due
            self._reactor.callLater(due - now, on_digest, digest)

        def aged(handles: Sequence[int]) -> None:
            if not self.demoted:  # nor idle notices
                on_aged(handles)

        await self._inner.subscribe(delayed, aged)

    async def close(self) -> None:
        """Wait for queued calls, then close the inner client."""
        await self._in_order("close()", False, self._inner.close)
