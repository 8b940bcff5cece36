"""The controller's load feed: a ZeroMQ PULL socket read from the Twisted reactor into a LoadBook.

pyzmq's `FD` is edge-triggered: it becomes readable when ZeroMQ has *something* to say, not while
messages are queued. So every read drains the socket until `EVENTS` shows no POLLIN, and after
registering (and after a capped batch) the feed reads once more rather than wait for an edge that
may already have passed.

Hostile peers are bounded here: frames over the schema's 4 KiB limit drop their connection
(ZMQ_MAXMSGSIZE), each connection queues at most `FeedLimits.receive_hwm` reports, heartbeats drop
dead peers, handshakes must finish quickly, and a ZAP handler run from the reactor refuses
connections over `FeedLimits.max_connections` and, with CURVE, keys not on the allow-list. Every
message is handled on its own: whatever one message raises (MemoryError included) is counted and
logged (throttled) and the feed keeps reading.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import zmq
import zmq.auth
from twisted.internet.interfaces import IReadDescriptor
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message
from zope.interface import implementer

from agent.wire import MAX_REPORT_BYTES, ProtocolError, decode_report
from controller.allowlist import AllowList, load_allow_list
from controller.config import ConfigError
from controller.core.loadbook import IngestResult, LoadBook
from controller.shell.metrics import Metrics

log = logging.getLogger(__name__)

# Messages handled per reactor callback before yielding to other events (the rest follow at once).
BATCH_LIMIT = 4096
ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
ZAP_DOMAIN: Final = b"p4lb-load"
"""Set on the PULL socket so ZeroMQ asks the ZAP handler about plain (NULL) connections too."""
_MONITOR_EVENTS: Final = (
    zmq.EVENT_ACCEPTED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
COUNTERS: Final = (
    "messages",
    "multipart",
    "forbidden_dip",
    "errors",
    "handshakes_refused_key",
    "handshakes_refused_capacity",
    "handshakes_failed",
)
"""The feed's own counters (the load book counts what it ingests)."""


@dataclass(frozen=True)
class FeedLimits:
    """Bounds on what agents (or anyone who can connect) may cost the controller."""

    max_connections: int = 1024
    """Agent connections served at once; handshakes beyond it are refused."""
    peer_timeout: float = 15.0
    """Seconds without any traffic (heartbeats every third of it) before a peer is dropped."""
    handshake_timeout: float = 5.0
    """Seconds a new connection has to complete its ZeroMQ (and CURVE) handshake."""
    receive_hwm: int = 32
    """Reports ZeroMQ queues per connection before it stops reading that connection."""
    max_message: int = MAX_REPORT_BYTES
    """Largest frame in bytes; a peer sending more is disconnected (ZMQ_MAXMSGSIZE)."""


@dataclass(frozen=True)
class CurveServerKeys:
    """CURVE keys of the controller side; with `allowed` only listed agent keys may talk, each
    only about its own DIPs."""

    public: bytes
    """Server public key (Z85, 40 bytes); agents need it."""
    secret: bytes = field(repr=False)
    """Server secret key (Z85, 40 bytes)."""
    allowed: AllowList | None = None
    """Agent keys and their DIPs; None accepts any agent that knows `public`, for any DIP."""

    @classmethod
    def from_files(cls, secret_file: Path, allow_file: Path | None = None) -> CurveServerKeys:
        """Load a zmq.auth secret certificate (e.g. server.key_secret), refusing one that group
        or others may read, and the allow-list; raises ValueError."""
        try:
            mode = secret_file.stat().st_mode
        except OSError as exc:
            raise ValueError(f"cannot read CURVE secret {str(secret_file)!r}: {exc}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(
                f"CURVE secret {str(secret_file)!r} is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):o}); chmod 600 it"
            )
        try:
            public, secret = zmq.auth.load_certificate(str(secret_file))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load CURVE certificate {str(secret_file)!r}: {exc}") from None
        if secret is None:
            raise ValueError(
                f"{str(secret_file)!r} holds no secret key (need the .key_secret file)"
            )
        allowed = None
        if allow_file is not None:
            try:
                allowed = load_allow_list(allow_file)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return cls(public, secret, allowed)


class _Throttle:
    """Logs the 1st, 2nd, 4th, 8th... occurrence of each kind, so a flood costs a few lines."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def due(self, kind: str) -> int:
        """The occurrence count of `kind`, or 0 when this one is not logged."""
        count = self._seen.get(kind, 0) + 1
        self._seen[kind] = count
        return count if count & (count - 1) == 0 else 0


@implementer(IReadDescriptor)
class _SocketReader:
    """Reads one side socket (ZAP requests, monitor events) from the reactor, message by message."""

    def __init__(
        self,
        reactor: Any,
        sock: zmq.Socket[Any],
        handle: Callable[[list[bytes]], None],
        on_error: Callable[[BaseException], None],
        name: str,
    ) -> None:
        self._reactor = reactor
        self.socket: zmq.Socket[Any] | None = sock
        self._handle = handle
        self._on_error = on_error
        self._name = name
        self._scheduled = False

    def fileno(self) -> int:
        """The socket's (edge-triggered) notification descriptor, -1 once closed."""
        return -1 if self.socket is None else int(self.socket.getsockopt(zmq.FD))

    def logPrefix(self) -> str:
        """Name used by Twisted's logging."""
        return self._name

    def connectionLost(self, reason: object) -> None:
        """The reactor dropped the descriptor; nothing more to read."""
        self.close()

    def doRead(self) -> None:
        """Hand every queued message (bounded per call) to the handler; never raises."""
        self._scheduled = False
        sock = self.socket
        if sock is None:
            return
        pending = drain(
            sock, lambda: self._handle(sock.recv_multipart(zmq.NOBLOCK)), self._on_error
        )
        if pending and not self._scheduled:
            self._scheduled = True
            self._reactor.callLater(0, self.doRead)

    def close(self) -> None:
        """Unregister and close the socket (idempotent)."""
        sock, self.socket = self.socket, None
        if sock is not None:
            self._reactor.removeReader(self)
            sock.close(linger=0)


def drain(
    sock: zmq.Socket[Any], handle_one: Callable[[], None], on_error: Callable[[BaseException], None]
) -> bool:
    """Call `handle_one` (which receives one message) until the socket is empty or BATCH_LIMIT
    messages were handled; returns whether messages remain. Never raises: an exception from one
    message (MemoryError included) goes to `on_error` and costs that message only."""
    for _ in range(BATCH_LIMIT):
        try:
            handle_one()
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno in (errno.ENOTSOCK, zmq.ETERM):  # closed under us: nothing left to read
                return False
            on_error(exc)
        except Exception as exc:  # whatever one message does, the reader keeps reading
            on_error(exc)
    try:
        return bool(int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)
    except zmq.ZMQError:
        return False


@implementer(IReadDescriptor)
class LoadFeed:
    """A PULL socket bound at `endpoint` feeding every message into `book` (IReadDescriptor)."""

    def __init__(
        self,
        reactor: Any,
        endpoint: str,
        book: LoadBook,
        clock: Callable[[], float],
        curve: CurveServerKeys | None = None,
        *,
        on_report: Callable[[float, IngestResult], None] | None = None,
        context: zmq.Context[Any] | None = None,
        limits: FeedLimits = FeedLimits(),
        metrics: Metrics | None = None,
    ) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self.book = book
        self._clock = clock
        self._curve = curve
        self._allowed = None if curve is None else curve.allowed
        self._on_report = on_report
        self.limits = limits
        self._metrics = metrics
        self._own_context = context is None
        self._context: zmq.Context[Any] = zmq.Context() if context is None else context
        self._socket: zmq.Socket[Any] | None = None
        self._side: list[_SocketReader] = []
        self._bound = ""
        self._drain_scheduled = False
        self._connections: set[int] = set()
        self._throttle = _Throttle()
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        """The feed's own counts: see COUNTERS."""
        self.received = 0
        """Messages taken off the socket (accepted or not)."""

    @property
    def bound_endpoint(self) -> str:
        """The address actually bound, e.g. "tcp://127.0.0.1:41234" for "tcp://127.0.0.1:*"."""
        if not self._bound:
            raise RuntimeError("LoadFeed not started")
        return self._bound

    @property
    def connections(self) -> int:
        """Agent connections open now (accepted and not yet disconnected)."""
        return len(self._connections)

    def start(self) -> None:
        """Bind the socket and register it with the reactor; raises zmq.ZMQError on bind failure."""
        if self._socket is not None:
            return
        limits = self.limits
        sock: zmq.Socket[Any] = self._context.socket(zmq.PULL)
        for option, value in (
            (zmq.LINGER, 0),
            (zmq.RCVHWM, limits.receive_hwm),
            (zmq.MAXMSGSIZE, limits.max_message),
            (zmq.HANDSHAKE_IVL, int(limits.handshake_timeout * 1000)),
            (zmq.HEARTBEAT_IVL, max(1, int(limits.peer_timeout * 1000 / 3))),
            (zmq.HEARTBEAT_TIMEOUT, int(limits.peer_timeout * 1000)),
            (zmq.HEARTBEAT_TTL, int(limits.peer_timeout * 1000)),
        ):
            sock.setsockopt(option, value)
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        if self._curve is not None:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self._curve.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self._curve.secret)
        try:
            # The ZAP handler and the monitor exist before the first peer can connect.
            zap = self._context.socket(zmq.REP)
            zap.setsockopt(zmq.LINGER, 0)
            self._side.append(
                _SocketReader(self._reactor, zap, self._answer_zap, self._error, "LoadFeedZAP")
            )
            zap.bind(ZAP_ENDPOINT)
            monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
            self._side.append(
                _SocketReader(
                    self._reactor, monitor, self._note_event, self._error, "LoadFeedMonitor"
                )
            )
            _bind_private(sock, self._endpoint)
        except zmq.ZMQError:
            sock.close(linger=0)
            self._close_side()
            raise
        self._socket = sock
        self._bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._reactor.addReader(self)
        for reader in self._side:
            self._reactor.addReader(reader)
        if self._metrics is not None:  # every counter exists from the start
            for name in COUNTERS:
                self._metrics.inc(f"load_feed_{name}_total", 0.0)
            self._metrics.set("load_feed_connections", 0.0)
        log.info("load feed listening on %s%s", self._bound, " (CURVE)" if self._curve else "")
        # Messages may have queued before the reader existed; no new edge would announce them.
        for reader in self._side:
            reader.doRead()
        self.doRead()

    def stop(self) -> None:
        """Unregister from the reactor and close the sockets (idempotent)."""
        sock, self._socket = self._socket, None
        if sock is not None:
            self._reactor.removeReader(self)
            sock.disable_monitor()
            sock.close(linger=0)
        self._close_side()
        if self._own_context and not self._context.closed:
            self._context.term()

    def _close_side(self) -> None:
        readers, self._side = self._side, []
        for reader in readers:
            reader.close()

    def _error(self, exc: BaseException) -> None:
        self._count("errors")
        count = self._throttle.due(type(exc).__name__)
        if count:
            log.error("event=load_feed_error error=%r occurrences=%d", exc, count)

    def _count(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount
        if self._metrics is not None:
            self._metrics.inc(f"load_feed_{name}_total", float(amount))

    # ZAP and connection events ---------------------------------------------------------------

    def _answer_zap(self, request: list[bytes]) -> None:
        """Answer one ZAP request: over capacity or an unlisted CURVE key is refused."""
        if len(request) < 6:  # not from libzmq; answer so the REP socket stays usable
            self._reply_zap(request[1] if len(request) > 1 else b"", b"400", b"bad request")
            return
        request_id, address, mechanism = request[1], request[3], request[5]
        status, text, user = b"200", b"OK", b""
        if len(self._connections) > self.limits.max_connections:
            status, text = b"400", b"too many connections"
            self._count("handshakes_refused_capacity")
        elif mechanism == b"CURVE" and len(request) == 7 and len(request[6]) == 32:
            user = z85.encode(request[6])
            if self._allowed is not None and user.decode() not in self._allowed.agents:
                status, text, user = b"400", b"unknown key", b""
                self._count("handshakes_refused_key")
        elif mechanism != b"NULL" or self._curve is not None:
            status, text = b"400", b"mechanism not allowed"
            self._count("handshakes_refused_key")
        if status != b"200":
            count = self._throttle.due(f"zap:{text.decode()}")
            if count:
                log.warning(
                    "event=load_handshake_refused peer=%s reason=%s occurrences=%d",
                    address.decode("ascii", "replace"),
                    text.decode(),
                    count,
                )
        self._reply_zap(request_id, status, text, user)

    def _reply_zap(self, request_id: bytes, status: bytes, text: bytes, user: bytes = b"") -> None:
        zap = self._side[0].socket if self._side else None
        if zap is not None:
            zap.send_multipart([b"1.0", request_id, status, text, user, b""])

    def _note_event(self, message: list[bytes]) -> None:
        event = parse_monitor_message(message)
        kind, value = event["event"], int(event["value"])
        if kind == zmq.EVENT_ACCEPTED:
            self._connections.add(value)
        elif kind == zmq.EVENT_DISCONNECTED:
            self._connections.discard(value)
        elif kind != zmq.EVENT_HANDSHAKE_FAILED_AUTH:  # ZAP refusals are counted when made
            self._count("handshakes_failed")
        if self._metrics is not None:
            self._metrics.set("load_feed_connections", float(len(self._connections)))

    # IReadDescriptor -------------------------------------------------------------------------

    def fileno(self) -> int:
        """The socket's (edge-triggered) notification descriptor, -1 once stopped."""
        return -1 if self._socket is None else int(self._socket.getsockopt(zmq.FD))

    def logPrefix(self) -> str:
        """Name used by Twisted's logging."""
        return "LoadFeed"

    def connectionLost(self, reason: object) -> None:
        """Called by the reactor when it drops the descriptor; the feed then stops."""
        if self._socket is not None:
            log.warning("load feed descriptor lost: %s", reason)
            self.stop()

    def doRead(self) -> None:
        """Drain every queued message into the book (bounded per call, the rest rescheduled)."""
        self._drain_scheduled = False
        sock = self._socket
        if sock is None:
            return
        now = self._clock()
        before = self.received
        pending = drain(sock, lambda: self._receive(sock, now), self._error)
        self._count("messages", self.received - before)
        if pending and not self._drain_scheduled:
            self._drain_scheduled = True
            self._reactor.callLater(0, self.doRead)

    def _receive(self, sock: zmq.Socket[Any], now: float) -> None:
        """Take one message off the socket and ingest it (raises zmq.Again when empty)."""
        allowed = self._allowed
        if allowed is None:
            data: bytes = sock.recv(zmq.NOBLOCK)
            key = ""
        else:
            frame = sock.recv(zmq.NOBLOCK, copy=False)
            data, key = frame.bytes, str(frame.get("User-Id"))
        self.received += 1
        if sock.getsockopt(zmq.RCVMORE):  # a report is one frame: drop the whole message
            while sock.getsockopt(zmq.RCVMORE):
                sock.recv(zmq.NOBLOCK)
            self._count("multipart")
            return
        if allowed is not None:
            try:
                dip = decode_report(data).dip
            except ProtocolError:
                dip = ""  # malformed: the book counts it
            if dip and not allowed.permits(key, dip):
                self._count("forbidden_dip")
                count = self._throttle.due(f"forbidden:{key}")
                if count:
                    log.warning(
                        "event=load_report_forbidden key=%s dip=%s occurrences=%d", key, dip, count
                    )
                return
        result = self.book.ingest(now, data)
        if self._on_report is not None:
            try:
                self._on_report(now, result)
            except Exception:  # a faulty observer must not stop the feed
                log.exception("load feed observer failed")


def _bind_private(sock: zmq.Socket[Any], endpoint: str) -> None:
    """Bind; an ipc socket file is made owner-only (0600) in a directory others cannot enter
    when the feed creates it (0700)."""
    if not endpoint.startswith("ipc://"):
        sock.bind(endpoint)
        return
    path = Path(endpoint[len("ipc://") :])
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    previous = os.umask(0o077)  # no window in which the socket file is open to others
    try:
        sock.bind(endpoint)
    finally:
        os.umask(previous)
    path.chmod(0o600)
