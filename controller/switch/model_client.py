"""`SwitchClient` over the in-process reference model `p4model.Switch`.

Calls run synchronously (the coroutine completes before its Deferred is returned). Digests raised
while the model processes a packet are handed to the reactor with `callLater(0, ...)`, so the
controller never runs inside `Switch.process()`. Idle conn_table entries are found by calling
`sweep_aged()` once per `sweep_interval` (BMv2 checks every second too).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from twisted.internet import task

import p4model
from controller.core.ops import Outcome, SwitchOp
from controller.switch.api import (
    AgedCallback,
    DefaultEntry,
    Digest,
    DigestCallback,
    ErrorKind,
    SwitchError,
    TimeReactor,
    describe_call,
    guarded,
)
from controller.switch.execute import perform_all
from p4model.errors import ErrorCode

UNAVAILABLE = ErrorKind.UNAVAILABLE
log = logging.getLogger(__name__)

MODEL_ERROR_KINDS = {
    ErrorCode.TABLE_FULL: ErrorKind.TABLE_FULL,
    ErrorCode.DUPLICATE_ENTRY: ErrorKind.DUPLICATE,
    ErrorCode.INVALID_HANDLE: ErrorKind.NOT_FOUND,
    ErrorCode.BAD_REQUEST: ErrorKind.INVALID,
}


def model_error_kind(exc: Exception) -> ErrorKind:
    """The kind of an exception from the in-process model: from its error code."""
    if isinstance(exc, p4model.SwitchError):
        return MODEL_ERROR_KINDS[exc.code]
    return ErrorKind.UNKNOWN


class ModelSwitchClient:
    """Async adapter for a `p4model.Switch` living in this process."""

    def __init__(
        self, switch: p4model.Switch, reactor: TimeReactor, sweep_interval: float = 1.0
    ) -> None:
        self._switch = switch
        self._reactor = reactor
        self._sweep_interval = sweep_interval
        self._on_digest: DigestCallback | None = None
        self._on_aged: AgedCallback | None = None
        self._subscribed = False
        self._ageing: task.LoopingCall | None = None
        self._closed = False

    @property
    def primary(self) -> bool:
        """Always: nothing arbitrates an in-process model."""
        return True

    @property
    def switch(self) -> p4model.Switch:
        """The wrapped model (the embedded demo feeds packets to it)."""
        return self._switch

    def replace_switch(self, switch: p4model.Switch) -> None:
        """Talk to another model from now on, as to a switch process that restarted (empty)."""
        self._switch = switch
        if self._subscribed:
            switch.subscribe(self._raised)

    def _call(self, operation: str, *args: Any) -> Any:
        if self._closed:
            raise SwitchError(f"{describe_call(operation, *args)}: client is closed", UNAVAILABLE)
        method = getattr(self._switch, operation)
        return guarded(
            lambda: describe_call(operation, *args), lambda: method(*args), model_error_kind
        )

    async def apply(self, ops: Sequence[SwitchOp]) -> list[Outcome]:
        """Carry out the operations on the model, in order, at once."""
        if self._closed:
            return [Outcome.failed(op, UNAVAILABLE, "client is closed") for op in ops]
        return perform_all(self._switch, ops, model_error_kind)

    async def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        """Add an entry and return its handle."""
        return int(self._call("table_add", table, action, list(keys), list(params), prio))

    async def table_modify(
        self, table: str, action: str, handle: int, params: Sequence[str]
    ) -> None:
        """Change the action and parameters of the entry `handle`."""
        self._call("table_modify", table, action, handle, list(params))

    async def table_delete(self, table: str, handle: int) -> None:
        """Delete the entry `handle`."""
        self._call("table_delete", table, handle)

    async def table_clear(self, table: str) -> None:
        """Delete every entry of `table`."""
        self._call("table_clear", table)

    async def table_set_default(self, table: str, action: str, params: Sequence[str]) -> None:
        """Set the default action of `table`."""
        self._call("table_set_default", table, action, list(params))

    async def table_set_timeout(self, table: str, handle: int, ms: int) -> None:
        """Give the entry `handle` an idle timeout."""
        self._call("table_set_timeout", table, handle, ms)

    async def table_num_entries(self, table: str) -> int:
        """Return the number of entries in `table`."""
        return int(self._call("table_num_entries", table))

    async def table_get_default(self, table: str) -> DefaultEntry:
        """Return the default action of `table` and its parameter values."""
        action, params = self._call("table_get_default", table)
        return DefaultEntry.read(action, params)

    async def subscribe(self, on_digest: DigestCallback, on_aged: AgedCallback) -> None:
        """Deliver digests (next reactor turn) and aged handles (every sweep) to the callbacks."""
        if self._closed:
            raise SwitchError("subscribe: client is closed", UNAVAILABLE)
        self._on_digest = on_digest
        self._on_aged = on_aged
        if not self._subscribed:
            self._switch.subscribe(self._raised)
            self._subscribed = True
        if self._ageing is None:
            self._ageing = task.LoopingCall(self._sweep)
            # LoopingCall.clock is typed as the zope interface; our protocol is structurally it.
            self._ageing.clock = cast(Any, self._reactor)
            self._ageing.start(self._sweep_interval, now=False)

    async def close(self) -> None:
        """Stop the ageing sweep and drop later digests (the model has no unsubscribe)."""
        self._closed = True
        if self._ageing is not None and self._ageing.running:
            self._ageing.stop()

    def _raised(self, raw: object) -> None:
        # Called from inside Switch.process(): defer so the controller never re-enters the model.
        if isinstance(raw, Digest):
            self._reactor.callLater(0, self._deliver, raw)
        else:
            log.error("the model raised %r, which is not a digest", raw)

    def _deliver(self, digest: Digest) -> None:
        if not self._closed and self._on_digest is not None:
            self._on_digest(digest)

    def _sweep(self) -> None:
        if self._closed:
            return
        try:
            handles = list(self._switch.sweep_aged())
        except Exception:  # keep the loop alive: a failed sweep is retried next second
            log.exception("sweep_aged failed")
            return
        if handles and self._on_aged is not None:
            self._on_aged(handles)
