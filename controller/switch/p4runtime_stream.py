"""One P4Runtime StreamChannel: arbitration, then digests and idle-timeout notifications.

The channel is a bidirectional gRPC stream. Requests (the arbitration update, digest acks) go
through a queue that gRPC's own thread drains; responses are read on one thread of ours, which
records the arbitration state (the worker thread waits on it) and hands every message to the
reactor with `callFromThread`, where the client acts on it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from typing import Protocol

import grpc
from finsy.proto import p4r
from finsy.proto.p4.v1.p4runtime_pb2_grpc import P4RuntimeStub

from controller.switch.api import ThreadReactor
from controller.switch.p4runtime_status import OK
from controller.switch.p4runtime_writes import uint128

log = logging.getLogger(__name__)


class StreamListener(Protocol):
    """What the client does with stream messages (called in the reactor thread)."""

    def stream_arbitration(self, primary: bool, promoted: bool, message: str) -> None:
        """The switch said who is primary (this client or another); `promoted` when this client
        was a backup on this stream until now."""
        ...

    def stream_digests(self, session: StreamSession, digests: p4r.DigestList) -> None:
        """A list of digest samples arrived on `session`; acknowledge it there."""
        ...

    def stream_idle(self, notification: p4r.IdleTimeoutNotification) -> None:
        """Entries have been idle longer than their timeouts."""
        ...

    def stream_ended(self, session: StreamSession, error: str) -> None:
        """The stream broke (switch gone or restarted)."""
        ...


class _StreamCall(Protocol):
    def __iter__(self) -> Iterator[p4r.StreamMessageResponse]: ...
    def __next__(self) -> p4r.StreamMessageResponse: ...
    def cancel(self) -> bool: ...


class StreamSession:
    """The stream of one connection; `primary` is None until the switch answered."""

    def __init__(
        self,
        stub: P4RuntimeStub,
        device_id: int,
        election_id: int,
        reactor: ThreadReactor,
        listener: StreamListener,
    ) -> None:
        self.device_id = device_id
        self.election_id = election_id
        self.primary: bool | None = None
        self.error = ""
        """Why the stream ended, once it has."""
        self.arbitrated = threading.Event()
        self._reactor = reactor
        self._listener = listener
        self._requests: queue.Queue[p4r.StreamMessageRequest | None] = queue.Queue()
        self._closing = False
        self._call: _StreamCall = stub.StreamChannel(self._outgoing())
        self._reader = threading.Thread(target=self._read, name="p4lb-p4rt-stream", daemon=True)
        self._reader.start()
        arbitration = p4r.MasterArbitrationUpdate(
            device_id=device_id, election_id=uint128(election_id)
        )
        self.send(p4r.StreamMessageRequest(arbitration=arbitration))

    def _outgoing(self) -> Iterator[p4r.StreamMessageRequest]:
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def send(self, request: p4r.StreamMessageRequest) -> None:
        """Queue a request (any thread)."""
        if not self._closing:
            self._requests.put(request)

    def acknowledge(self, digests: p4r.DigestList) -> None:
        """Acknowledge a digest list, so the switch may send its samples again later."""
        ack = p4r.DigestListAck(digest_id=digests.digest_id, list_id=digests.list_id)
        self.send(p4r.StreamMessageRequest(digest_ack=ack))

    def wait_arbitration(self, timeout: float) -> bool | None:
        """Block (worker thread) until the switch answered the arbitration; its answer."""
        self.arbitrated.wait(timeout)
        return self.primary

    @property
    def alive(self) -> bool:
        """Whether the stream is still open."""
        return self._reader.is_alive() and not self._closing

    def _read(self) -> None:
        error = "stream closed by the switch"
        try:
            for response in self._call:
                self._dispatch(response)
        except grpc.RpcError as exc:
            error = f"{exc.code().name}: {exc.details()}"
        except Exception as exc:  # a malformed message must not kill the thread silently
            error = f"{type(exc).__name__}: {exc}"
        self.error = error
        if self.primary:
            self.primary = False  # a closed stream holds no role
        self.arbitrated.set()
        if not self._closing:
            self._reactor.callFromThread(self._listener.stream_ended, self, error)

    def _dispatch(self, response: p4r.StreamMessageResponse) -> None:
        which = response.WhichOneof("update")
        if which == "arbitration":
            update = response.arbitration
            # The answer names the primary's election ID; OK status means it is ours.
            primary = update.status.code == OK
            promoted = primary and self.primary is False
            self.primary = primary
            self.arbitrated.set()
            message = update.status.message
            listener = self._listener.stream_arbitration
            self._reactor.callFromThread(listener, primary, promoted, message)
        elif which == "digest":
            self._reactor.callFromThread(self._listener.stream_digests, self, response.digest)
        elif which == "idle_timeout_notification":
            idle = response.idle_timeout_notification
            self._reactor.callFromThread(self._listener.stream_idle, idle)
        elif which == "error":
            log.warning("P4Runtime stream error: %s", response.error)

    def close(self, timeout: float = 5.0) -> None:
        """End the stream and wait for the reading thread (worker thread)."""
        self._closing = True
        self._requests.put(None)
        self._call.cancel()
        self._reader.join(timeout)
