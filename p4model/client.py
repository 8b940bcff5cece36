"""Blocking client of a running `p4lb-switch`: the runtime API over ZeroMQ, plus its notifications.

Threads: a ``RemoteSwitch`` is meant for two threads, one making runtime API calls (REQ socket)
and one reading notifications (``recv_*``, a separate SUB socket in ``NotificationSubscriber``).
Each socket is used only under its own lock, so calls from several threads are serialised and the
sockets may be created in one thread and used in another (the lock is the memory barrier ZeroMQ
asks for when a socket changes threads). ``close()`` waits for a call or read in progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import zmq

from p4model import Digest, SwitchError
from p4model.control_protocol import (
    ControlProtocolError,
    decode_notification,
    decode_reply,
    default_digest_address,
    encode_request,
)
from p4model.errors import ErrorCode

UNAVAILABLE = ErrorCode.UNAVAILABLE
log = logging.getLogger(__name__)

MAX_KEPT_DIGESTS = 100_000


class NotificationSubscriber:
    """A SUB socket on the switch's notification stream (digests and aged conn_table handles).

    Messages of the kind a ``recv_*`` call does not return are kept for the other call: digests up
    to MAX_KEPT_DIGESTS (the oldest go first, counted in ``dropped``), aged handles as a set (the
    switch repeats them while entries stay idle). Malformed messages are logged, counted in
    ``malformed`` and skipped.
    """

    def __init__(self, address: str, context: zmq.Context[Any] | None = None) -> None:
        self.address = address
        self._lock = threading.Lock()
        self._sock = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.IPV6, "[" in address)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(address)
        self._digests: list[Digest] = []
        self._aged: dict[int, None] = {}  # ordered set
        self._closed = False
        self.dropped = 0
        self.malformed = 0

    def recv_notifications(self, timeout: float) -> tuple[list[Digest], list[int]]:
        """Wait up to ``timeout`` s; return the digests and aged handles that have arrived."""
        with self._lock:
            if not (self._digests or self._aged):
                self._receive(timeout)
            digests, aged = self._digests, list(self._aged)
            self._digests, self._aged = [], {}
            return digests, aged

    def recv_digests(self, timeout: float) -> list[Digest]:
        """Wait up to ``timeout`` s for digests; aged handles seen meanwhile are kept for later."""
        with self._lock:
            if not self._digests:
                self._receive(timeout, want_digests=True)
            digests, self._digests = self._digests, []
            return digests

    def recv_aged(self, timeout: float) -> list[int]:
        """Wait up to ``timeout`` s for aged handles; digests seen meanwhile are kept for later."""
        with self._lock:
            if not self._aged:
                self._receive(timeout, want_aged=True)
            aged, self._aged = list(self._aged), {}
            return aged

    def _receive(self, timeout: float, want_digests: bool = False, want_aged: bool = False) -> None:
        """Read messages until the wanted kind (any kind by default) arrived or time ran out."""
        if self._closed:
            raise SwitchError(f"notification stream {self.address!r} is closed")
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000.0))
            if not self._sock.poll(wait_ms, zmq.POLLIN):
                return
            while True:  # drain: whatever is queued belongs to this call's answer
                try:
                    data = self._sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    note = decode_notification(data)
                except ControlProtocolError as exc:
                    self.malformed += 1
                    log.warning("skipping a bad notification from %s: %s", self.address, exc)
                    continue
                self._digests.extend(note.digests)
                self._aged.update(dict.fromkeys(note.aged))
            excess = len(self._digests) - MAX_KEPT_DIGESTS
            if excess > 0:
                self.dropped += excess
                del self._digests[:excess]
            if (want_digests and self._digests) or (want_aged and self._aged):
                return
            if not (want_digests or want_aged):
                return

    def close(self) -> None:
        """Close the SUB socket."""
        with self._lock:
            self._closed = True
            self._sock.close(0)


class RemoteSwitch:
    """The runtime API of a p4lb-switch process, with the method names of p4model.Switch."""

    def __init__(
        self,
        control: str,
        digests: str | None = None,
        timeout: float = 5.0,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.control = control
        self.timeout = timeout
        self._context = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._closed = False
        self._req = self._new_req()
        self.digest_address = digests or self._discover_digest_address()
        # Subscribe now, so digests raised by the first packets after our first writes are not lost.
        self.subscriber = NotificationSubscriber(self.digest_address, self._context)

    def _discover_digest_address(self) -> str:
        # The switch knows where it publishes (its digest port may have been picked at random);
        # a switch not up yet gets the conventional address its control address implies.
        try:
            return str(self.info()["digests"])
        except (SwitchError, KeyError, TypeError) as exc:
            try:
                address = default_digest_address(self.control)
            except ControlProtocolError as bad:
                raise SwitchError(str(bad)) from bad
            log.info("digest address not learnt from %s (%s); using %s", self.control, exc, address)
            return address

    def _new_req(self) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self._context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IPV6, "[" in self.control)
        sock.setsockopt(zmq.SNDTIMEO, int(self.timeout * 1000))
        sock.connect(self.control)
        return sock

    def _reset_req(self) -> None:
        # A REQ socket that sent without a reply refuses to send again; a fresh one also drops
        # requests still queued for a switch that is down, so they are not applied later.
        self._req.close(0)
        self._req = self._new_req()

    def call(self, method: str, *args: Any) -> Any:
        """Send one request and return its result; SwitchError on error reply or timeout."""
        try:
            request = encode_request(method, args)
        except ControlProtocolError as exc:
            raise SwitchError(str(exc)) from exc
        with self._lock:
            if self._closed:
                raise SwitchError(f"RemoteSwitch({self.control!r}) is closed", UNAVAILABLE)
            try:
                self._req.send(request)
                if not self._req.poll(int(self.timeout * 1000), zmq.POLLIN):
                    self._reset_req()
                    raise SwitchError(
                        f"no reply from {self.control!r} to {method} within {self.timeout} s "
                        "(it may or may not have been applied)",
                        UNAVAILABLE,
                    )
                data = self._req.recv()
            except zmq.ZMQError as exc:
                self._reset_req()
                raise SwitchError(
                    f"{method} on {self.control!r} failed: {exc}", UNAVAILABLE
                ) from exc
        try:
            reply = decode_reply(data)
        except ControlProtocolError as exc:
            raise SwitchError(f"bad reply from {self.control!r}: {exc}", UNAVAILABLE) from exc
        if reply.error is not None:
            raise SwitchError(reply.error, ErrorCode(reply.code))
        return reply.result

    def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        """Add an entry; return its handle."""
        return _as_int(self.call("table_add", table, action, list(keys), list(params), prio))

    def table_modify(self, table: str, action: str, handle: int, params: Sequence[str]) -> None:
        """Change the action and parameters of an entry."""
        self.call("table_modify", table, action, handle, list(params))

    def table_delete(self, table: str, handle: int) -> None:
        """Delete an entry."""
        self.call("table_delete", table, handle)

    def table_clear(self, table: str) -> None:
        """Delete every entry of a table (the default action stays)."""
        self.call("table_clear", table)

    def table_set_default(self, table: str, action: str, params: Sequence[str]) -> None:
        """Set a table's default action."""
        self.call("table_set_default", table, action, list(params))

    def table_num_entries(self, table: str) -> int:
        """Number of entries in a table."""
        return _as_int(self.call("table_num_entries", table))

    def table_get_default(self, table: str) -> tuple[str, list[int]]:
        """A table's default action: its full name and parameter values."""
        result = self.call("table_get_default", table)
        if (
            not isinstance(result, list)
            or len(result) != 2
            or not isinstance(result[0], str)
            or not isinstance(result[1], list)
        ):
            raise SwitchError(f"bad table_get_default reply {result!r}")
        return result[0], [_as_int(v) for v in result[1]]

    def table_set_timeout(self, table: str, handle: int, ms: int) -> None:
        """Set an entry's idle timeout (conn_table); idle entries are reported by recv_aged."""
        self.call("table_set_timeout", table, handle, ms)

    def table_entries(self, table: str) -> list[tuple[int, list[int | list[int]], str, list[int]]]:
        """Every entry of a table as (handle, match, action, params)."""
        rows = self.call("table_entries", table)
        if not isinstance(rows, list):
            raise SwitchError(f"bad table_entries reply {rows!r}")
        return [(int(h), list(m), str(a), [int(v) for v in p]) for h, m, a, p in rows]

    def register_read(self, name: str, index: int | None = None) -> int | list[int]:
        """One register cell, or the whole array when index is None."""
        result = self.call("register_read", name, index)
        if isinstance(result, list):
            return [_as_int(v) for v in result]
        return _as_int(result)

    def register_write(self, name: str, index: int | Sequence[int], value: int) -> None:
        """Write one cell, or the cells of a [start, end) range."""
        self.call("register_write", name, index if isinstance(index, int) else list(index), value)

    def register_reset(self, name: str) -> None:
        """Zero every cell of a register."""
        self.call("register_reset", name)

    def info(self) -> dict[str, Any]:
        """The server's addresses, ports and packet counters."""
        result = self.call("info")
        if not isinstance(result, dict):
            raise SwitchError(f"bad info reply {result!r}")
        return result

    def recv_notifications(self, timeout: float) -> tuple[list[Digest], list[int]]:
        """Digests and aged handles received within ``timeout`` s (see NotificationSubscriber)."""
        return self.subscriber.recv_notifications(timeout)

    def recv_digests(self, timeout: float) -> list[Digest]:
        """Digests received within ``timeout`` s; empty if none came."""
        return self.subscriber.recv_digests(timeout)

    def recv_aged(self, timeout: float) -> list[int]:
        """Aged conn_table handles received within ``timeout`` s; empty if none came."""
        return self.subscriber.recv_aged(timeout)

    def close(self) -> None:
        """Close both sockets; further calls raise SwitchError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._req.close(0)
        self.subscriber.close()

    def __enter__(self) -> RemoteSwitch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _as_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SwitchError(f"expected an integer result, got {value!r}")
    return value
