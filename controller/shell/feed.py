"""The controller's load feed: a ZeroMQ PULL socket read from the Twisted reactor into a LoadBook.

pyzmq's `FD` is edge-triggered: it becomes readable when ZeroMQ has *something* to say, not while
messages are queued. So every read drains the socket until `EVENTS` shows no POLLIN, and after
registering (and after a capped batch) the feed reads once more rather than wait for an edge that
may already have passed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from twisted.internet.interfaces import IReadDescriptor
from zmq.auth.thread import ThreadAuthenticator
from zope.interface import implementer

from controller.core.loadbook import IngestResult, LoadBook

log = logging.getLogger(__name__)

# Messages handled per reactor callback before yielding to other events (the rest follow at once).
BATCH_LIMIT = 4096
# Received but not yet ingested messages ZeroMQ may hold per agent connection.
RECEIVE_HWM = 10_000


@dataclass(frozen=True)
class CurveServerKeys:
    """CURVE keys of the controller side; with `allowed_clients` only listed agent keys may talk."""

    public: bytes
    """Server public key (Z85, 40 bytes); agents need it."""
    secret: bytes
    """Server secret key (Z85, 40 bytes)."""
    allowed_clients: Path | None = None
    """Directory of agents' public-key certificates; None accepts any agent that knows `public`."""

    @classmethod
    def from_files(cls, secret_file: Path, allowed_clients: Path | None = None) -> CurveServerKeys:
        """Load a zmq.auth secret certificate (e.g. server.key_secret); raises ValueError."""
        try:
            public, secret = zmq.auth.load_certificate(str(secret_file))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load CURVE certificate {str(secret_file)!r}: {exc}") from None
        if secret is None:
            raise ValueError(
                f"{str(secret_file)!r} holds no secret key (need the .key_secret file)"
            )
        if allowed_clients is not None and not allowed_clients.is_dir():
            raise ValueError(f"allowed client key directory {str(allowed_clients)!r} not found")
        return cls(public, secret, allowed_clients)


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
    ) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self.book = book
        self._clock = clock
        self._curve = curve
        self._on_report = on_report
        self._own_context = context is None
        self._context: zmq.Context[Any] = zmq.Context() if context is None else context
        self._socket: zmq.Socket[Any] | None = None
        self._authenticator: ThreadAuthenticator | None = None
        self._bound = ""
        self._drain_scheduled = False
        self.received = 0
        """Messages taken off the socket (accepted or not)."""

    @property
    def bound_endpoint(self) -> str:
        """The address actually bound, e.g. "tcp://127.0.0.1:41234" for "tcp://127.0.0.1:*"."""
        if not self._bound:
            raise RuntimeError("LoadFeed not started")
        return self._bound

    def start(self) -> None:
        """Bind the socket and register it with the reactor; raises zmq.ZMQError on bind failure."""
        if self._socket is not None:
            return
        sock: zmq.Socket[Any] = self._context.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        try:
            if self._curve is not None:
                self._start_curve(sock, self._curve)
            sock.bind(self._endpoint)
        except zmq.ZMQError:
            sock.close()
            self._stop_authenticator()
            raise
        self._socket = sock
        self._bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._reactor.addReader(self)
        log.info("load feed listening on %s%s", self._bound, " (CURVE)" if self._curve else "")
        # Messages may have queued before the reader existed; no new edge would announce them.
        self.doRead()

    def _start_curve(self, sock: zmq.Socket[Any], keys: CurveServerKeys) -> None:
        if keys.allowed_clients is not None:
            auth = ThreadAuthenticator(self._context)
            auth.start()
            auth.configure_curve(domain="*", location=str(keys.allowed_clients))
            self._authenticator = auth
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)

    def stop(self) -> None:
        """Unregister from the reactor and close the socket (idempotent)."""
        sock, self._socket = self._socket, None
        if sock is not None:
            self._reactor.removeReader(self)
            sock.close(linger=0)
        self._stop_authenticator()
        if self._own_context and not self._context.closed:
            self._context.term()

    def _stop_authenticator(self) -> None:
        auth, self._authenticator = self._authenticator, None
        if auth is not None:
            auth.stop()

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
        ingest = self.book.ingest
        notify = self._on_report
        handled = 0
        try:
            while handled < BATCH_LIMIT:
                try:
                    data = sock.recv(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    break
                handled += 1
                result = ingest(now, data)
                if notify is not None:
                    try:
                        notify(now, result)
                    except Exception:  # a faulty observer must not stop the feed
                        log.exception("load feed observer failed")
            pending = bool(int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)
        except zmq.ZMQError as exc:  # the socket died under us; never kill the reactor
            log.error("load feed socket error: %s", exc)
            self.stop()
            return
        finally:
            self.received += handled
        if pending and not self._drain_scheduled:
            self._drain_scheduled = True
            self._reactor.callLater(0, self.doRead)
