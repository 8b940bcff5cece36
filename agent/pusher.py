"""The agent's ZeroMQ PUSH side: never blocks, sends only fresh reports, reconnects by itself.

Queueing policy ("fresh or nothing"): a report is handed only to a connection whose handshake
has completed (ZMQ_IMMEDIATE), and at most one report waits in ZeroMQ's queue (SNDHWM 1). While
no connection is up, or while the one queued report has not left yet, a report is refused
(EAGAIN), counted in `dropped` and forgotten: a controller that comes back gets the next report,
never one made while it was away. Reports that were handed over leave before the socket closes
(within the linger the caller grants). ZMQ_CONFLATE ("keep the newest") is not used: libzmq's
conflating queue lets the end-of-stream marker written on close replace a report its I/O thread
has not picked up yet, so an agent's last report could vanish on exit (87 of 300 closes on a
busy machine). ZeroMQ reconnects on its own; a socket monitor turns its connection events into
one log line per state change ("reachable" after a completed handshake, "unreachable" on
disconnect)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger(__name__)

_MONITOR_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
RECONNECT_MAX_MS = 2000
HEARTBEAT_MS = 2000


@dataclass(frozen=True)
class CurveClientKeys:
    """CURVE keys of an agent: the controller's public key and the agent's own key pair."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def from_files(cls, server_key: Path, client_key: Path) -> CurveClientKeys:
        """Load zmq.auth certificates (server .key, client .key_secret); raises ValueError."""
        for path in (server_key, client_key):
            if not path.is_file():
                raise ValueError(f"cannot load CURVE certificates: no such file {str(path)!r}")
        try:
            server_public, _ = zmq.auth.load_certificate(str(server_key))
            public, secret = zmq.auth.load_certificate(str(client_key))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load CURVE certificates: {exc}") from None
        if secret is None:
            raise ValueError(f"{str(client_key)!r} holds no secret key (need the .key_secret file)")
        return cls(server_public, public, secret)


class ReportPusher:
    """A connected PUSH socket that sends without blocking and logs connection state changes."""

    def __init__(
        self,
        endpoint: str,
        curve: CurveClientKeys | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._own_context = context is None
        self._context: zmq.Context[Any] = zmq.Context() if context is None else context
        sock: zmq.Socket[Any] = self._context.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.SNDHWM, 1)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MAX_MS)
        # Heartbeats notice a controller that vanished without closing the connection, so the
        # socket reconnects instead of queueing into a dead one.
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * HEARTBEAT_MS)
        if curve is not None:
            sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_public)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, curve.secret)
        self._monitor: zmq.Socket[Any] = sock.get_monitor_socket(_MONITOR_EVENTS)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._monitor.close(linger=0)
            sock.close(linger=0)
            raise ValueError(f"cannot connect to {endpoint!r}: {exc}") from None
        self._socket = sock
        self.reachable: bool | None = None
        """None until the first connection event, then whether a handshake is up."""
        self._failure: str | None = None
        """The handshake failure last logged while unreachable, if any."""
        self.sent = 0
        """Reports handed to a live connection."""
        self.dropped = 0
        """Reports refused: no connection up, or the previous report still queued."""

    @property
    def monitor_socket(self) -> zmq.Socket[Any]:
        """The monitor socket, for polling alongside other sources."""
        return self._monitor

    def send(self, data: bytes) -> bool:
        """Hand one report to a live connection without blocking; False if there is none or its
        queue is full (the report is counted as dropped)."""
        self.poll_events()
        try:
            self._socket.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def poll_events(self) -> bool | None:
        """Consume pending monitor events, logging each reachability change; returns `reachable`."""
        while self._monitor.poll(0):
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._set_reachable(True, "controller reachable")
            elif kind == zmq.EVENT_DISCONNECTED:
                self._set_reachable(False, "controller unreachable (disconnected)")
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._set_reachable(False, "controller rejected our CURVE key", failure=True)
            elif kind in (
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
            ):
                self._set_reachable(
                    False, "handshake with controller failed (keys or protocol)", failure=True
                )
        return self.reachable

    def _set_reachable(self, reachable: bool, message: str, failure: bool = False) -> None:
        # A handshake failure is news even while unreachable (e.g. the controller came back
        # with CURVE); a disconnect after it, or the same failure on every retry, is not.
        if self.reachable is reachable and not (failure and message != self._failure):
            return
        self.reachable = reachable
        self._failure = message if failure else None
        (log.info if reachable else log.warning)("%s: %s", message, self.endpoint)

    def close(self, flush: float = 0.0) -> None:
        """Close the sockets, giving a queued report up to `flush` seconds to leave (the last
        reports of an agent stopped after `--count` are the point of the run)."""
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        self._socket.close(linger=int(flush * 1000))
        if self._own_context:
            self._context.term()
