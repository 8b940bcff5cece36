"""`SwitchClient` for a `p4lb-switch` process, through `p4model.client.RemoteSwitch`.

`RemoteSwitch` is blocking. Runtime calls run on one dedicated worker thread, in order; digests
are read on a second thread (they come on their own ZeroMQ socket) and handed to the reactor
thread with `callFromThread`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from controller.core.ops import Outcome, SwitchOp
from controller.switch.api import (
    AgedCallback,
    DefaultEntry,
    Digest,
    DigestCallback,
    ErrorKind,
    PollingThread,
    SwitchError,
    ThreadReactor,
    WorkerThread,
    describe_call,
    guarded,
)
from controller.switch.execute import RuntimeApi, perform_all
from controller.switch.model_client import model_error_kind
from p4src.contract import DIGEST_KINDS

log = logging.getLogger(__name__)

DIGEST_POLL_SECONDS = 0.25


class RemoteSwitchLike(RuntimeApi, Protocol):
    """The blocking interface of `p4model.client.RemoteSwitch` this client uses."""

    def recv_notifications(self, timeout: float) -> tuple[list[Any], list[int]]:
        """Wait up to `timeout` seconds; return the digests and aged handles received."""
        ...

    def close(self) -> None:
        """Close the sockets."""
        ...


def _open_remote(control: str) -> RemoteSwitchLike:
    from p4model.client import RemoteSwitch  # noqa: PLC0415 - only this client needs it

    remote: RemoteSwitchLike = RemoteSwitch(control)
    return remote


class RemoteSwitchClient:
    """Async adapter for a switch process reached at `control` (e.g. "tcp://127.0.0.1:9559")."""

    def __init__(
        self,
        reactor: ThreadReactor,
        control: str,
        *,
        remote_factory: Callable[[str], RemoteSwitchLike] = _open_remote,
        worker: WorkerThread | None = None,
        digest_poll: float = DIGEST_POLL_SECONDS,
    ) -> None:
        self._reactor = reactor
        self._control = control
        self._remote = guarded(
            lambda: f"connect {control!r}", lambda: remote_factory(control), model_error_kind
        )
        self._worker = worker or WorkerThread(reactor, "p4lb-remote-switch")
        self._digest_poll = digest_poll
        self._on_digest: DigestCallback | None = None
        self._on_aged: AgedCallback | None = None
        self._poller: PollingThread | None = None
        self._closed = False
        self.malformed_digests = 0

    @property
    def primary(self) -> bool:
        """Always: the control protocol has no arbitration between controllers."""
        return True

    async def _call(self, operation: str, *args: Any) -> Any:
        if self._closed:
            what = describe_call(operation, *args)
            raise SwitchError(f"{what}: client is closed", ErrorKind.UNAVAILABLE)
        method = getattr(self._remote, operation)
        return await self._worker.run(
            guarded,
            lambda: f"{self._control} {describe_call(operation, *args)}",
            lambda: method(*args),
            model_error_kind,
        )

    async def apply(self, ops: Sequence[SwitchOp]) -> list[Outcome]:
        """Carry out the operations in order on the worker thread (one hop for the batch)."""
        if self._closed:
            return [Outcome.failed(op, ErrorKind.UNAVAILABLE, "client is closed") for op in ops]
        return await self._worker.run(perform_all, self._remote, ops, model_error_kind)

    async def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        """Add an entry and return its handle."""
        return int(await self._call("table_add", table, action, list(keys), list(params), prio))

    async def table_modify(
        self, table: str, action: str, handle: int, params: Sequence[str]
    ) -> None:
        """Change the action and parameters of the entry `handle`."""
        await self._call("table_modify", table, action, handle, list(params))

    async def table_delete(self, table: str, handle: int) -> None:
        """Delete the entry `handle`."""
        await self._call("table_delete", table, handle)

    async def table_clear(self, table: str) -> None:
        """Delete every entry of `table`."""
        await self._call("table_clear", table)

    async def table_set_default(self, table: str, action: str, params: Sequence[str]) -> None:
        """Set the default action of `table`."""
        await self._call("table_set_default", table, action, list(params))

    async def table_set_timeout(self, table: str, handle: int, ms: int) -> None:
        """Give the entry `handle` an idle timeout."""
        await self._call("table_set_timeout", table, handle, ms)

    async def table_num_entries(self, table: str) -> int:
        """Return the number of entries in `table`."""
        return int(await self._call("table_num_entries", table))

    async def table_get_default(self, table: str) -> DefaultEntry:
        """Return the default action of `table` and its parameter values."""
        action, params = await self._call("table_get_default", table)
        return DefaultEntry.read(action, params)

    async def subscribe(self, on_digest: DigestCallback, on_aged: AgedCallback) -> None:
        """Start the digest-reading thread; deliveries happen in the reactor thread."""
        if self._closed:
            raise SwitchError("subscribe: client is closed")
        self._on_digest = on_digest
        self._on_aged = on_aged
        if self._poller is None:
            self._poller = PollingThread(
                self._reactor,
                "p4lb-remote-digests",
                self._receive,
                self._deliver,
                self._stream_failed,
            )
            self._poller.start()

    async def close(self) -> None:
        """Stop the digest thread, then close the sockets on the worker thread."""
        if self._closed:
            return
        self._closed = True
        poller = self._poller
        if poller is not None:
            poller.stop()
            await self._worker.run(poller.join, 5.0)
        await self._worker.run(
            guarded, lambda: f"{self._control} close()", self._remote.close, model_error_kind
        )
        self._worker.stop()

    def _receive(self) -> tuple[list[Digest], list[int]] | None:
        raw_digests, raw_aged = self._remote.recv_notifications(self._digest_poll)
        batch: list[Digest] = []
        for raw in raw_digests:
            # One bad digest must not end the stream (an exception here stops the poller).
            if isinstance(raw, Digest) and raw.kind in DIGEST_KINDS:
                batch.append(raw)
            else:
                self.malformed_digests += 1
                log.warning("skipping a bad digest from %s: %r", self._control, raw)
        aged = [h for h in raw_aged if isinstance(h, int)]
        return (batch, aged) if batch or aged else None

    def _deliver(self, batch: tuple[list[Digest], list[int]]) -> None:
        digests, aged = batch
        if self._closed:
            return
        if self._on_digest is not None:
            for digest in digests:
                self._on_digest(digest)
        if aged and self._on_aged is not None:
            self._on_aged(aged)

    def _stream_failed(self, exc: BaseException) -> None:
        log.error("digest stream from %s failed: %s", self._control, exc)
