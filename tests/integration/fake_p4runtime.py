"""A scripted in-process P4Runtime server for the client's tests of what a correct server never
sends (p4lb-switch's real server is in p4model; the switch-level suite uses that one).

It keeps table entries by (table, match bytes), answers INSERT/MODIFY/DELETE like a switch
(ALREADY_EXISTS, NOT_FOUND, per-update errors in the status details of an UNKNOWN), refuses
writes from anyone but the primary (highest election ID), promotes the next controller when the
primary's stream ends, and lets the test push DigestLists and idle-timeout notifications down the
primary's stream and see the acks that come back. It listens on an ephemeral loopback port.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from finsy.proto import p4i, p4r, rpc_status
from finsy.proto.p4.v1.p4runtime_pb2_grpc import P4RuntimeServicer, add_P4RuntimeServicer_to_server

OK, UNKNOWN, NOT_FOUND, ALREADY_EXISTS = 0, 2, 5, 6


class _Stream:
    def __init__(self, election_id: int) -> None:
        self.election_id = election_id
        self.out: queue.Queue[p4r.StreamMessageResponse | None] = queue.Queue()


class FakeP4Runtime(P4RuntimeServicer):
    """The servicer; `start()` serves it and returns the port."""

    def __init__(self, info: p4i.P4Info, device_id: int = 1) -> None:
        self.info = info
        self.device_id = device_id
        self.entries: dict[tuple[int, bytes], p4r.TableEntry] = {}
        self.writes: list[p4r.WriteRequest] = []
        self.acks: list[p4r.DigestListAck] = []
        self.loads = 0
        """SetForwardingPipelineConfig calls."""
        self.fail_next: list[int] | None = None
        """Canonical codes to answer the next Write's updates with (instead of applying them)."""
        self._streams: list[_Stream] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server: Any = None

    def start(self) -> int:
        """Serve on 127.0.0.1 at a port the OS picks; the port."""
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8))
        add_P4RuntimeServicer_to_server(self, self._server)
        port: int = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return port

    def stop(self) -> None:
        """End every stream and stop serving."""
        with self._lock:
            for stream in self._streams:
                stream.out.put(None)
        self._server.stop(grace=None)

    # -- arbitration and the stream

    def _primary(self) -> _Stream | None:
        return max(self._streams, key=lambda s: s.election_id, default=None)

    def _announce(self, stream: _Stream) -> None:
        primary = self._primary()
        assert primary is not None
        update = p4r.MasterArbitrationUpdate(
            device_id=self.device_id, election_id=p4r.Uint128(low=primary.election_id)
        )
        if stream is not primary:
            update.status.code = ALREADY_EXISTS
        stream.out.put(p4r.StreamMessageResponse(arbitration=update))

    def StreamChannel(
        self, request_iterator: Iterator[p4r.StreamMessageRequest], context: Any
    ) -> Iterator[p4r.StreamMessageResponse]:
        """Arbitration first, then acks in and notifications out."""
        first = next(request_iterator)
        stream = _Stream(first.arbitration.election_id.low)
        with self._lock:
            self._streams.append(stream)
            self._changed.notify_all()
            self._announce(stream)
        threading.Thread(
            target=self._incoming, args=(request_iterator, stream), daemon=True
        ).start()
        context.add_callback(lambda: self._gone(stream))
        while True:
            message = stream.out.get()
            if message is None:
                return
            yield message

    def _incoming(self, requests: Iterator[p4r.StreamMessageRequest], stream: _Stream) -> None:
        try:
            for request in requests:
                if request.HasField("digest_ack"):
                    self.acks.append(request.digest_ack)
        except grpc.RpcError:
            pass
        self._gone(stream)

    def _gone(self, stream: _Stream) -> None:
        with self._lock:
            if stream not in self._streams:
                return
            was_primary = stream is self._primary()
            self._streams.remove(stream)
            self._changed.notify_all()
            stream.out.put(None)
            if was_primary and self._streams:
                new = self._primary()
                assert new is not None
                self._announce(new)

    def wait_streams(self, count: int, timeout: float = 10.0) -> None:
        """Block until exactly `count` controllers are connected (one that closed is gone)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._streams) == count, timeout):
                raise TimeoutError(f"{len(self._streams)} streams, not {count}")

    def notify(self, message: p4r.StreamMessageResponse) -> None:
        """Send a message (DigestList, IdleTimeoutNotification) to the primary."""
        with self._lock:
            primary = self._primary()
            assert primary is not None, "no controller connected"
            primary.out.put(message)

    # -- RPCs

    def GetForwardingPipelineConfig(
        self, request: p4r.GetForwardingPipelineConfigRequest, context: Any
    ) -> p4r.GetForwardingPipelineConfigResponse:
        """The P4Info given at construction."""
        config = p4r.ForwardingPipelineConfig(p4info=self.info)
        return p4r.GetForwardingPipelineConfigResponse(config=config)

    def SetForwardingPipelineConfig(
        self, request: p4r.SetForwardingPipelineConfigRequest, context: Any
    ) -> p4r.SetForwardingPipelineConfigResponse:
        """Take the P4Info (the device config is not looked at)."""
        self.info = request.config.p4info
        self.loads += 1
        self.entries.clear()
        return p4r.SetForwardingPipelineConfigResponse()

    def Capabilities(
        self, request: p4r.CapabilitiesRequest, context: Any
    ) -> p4r.CapabilitiesResponse:
        """The API version simple_switch_grpc reports."""
        return p4r.CapabilitiesResponse(p4runtime_api_version="1.3.0")

    def Write(self, request: p4r.WriteRequest, context: Any) -> p4r.WriteResponse:
        """Apply updates in order; per-update errors as a real server reports them."""
        with self._lock:
            primary = self._primary()
            if primary is None or request.election_id.low != primary.election_id:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, "Not primary")
        self.writes.append(request)
        codes = self.fail_next or [self._apply(u) for u in request.updates]
        self.fail_next = None
        if any(codes):
            status = rpc_status.Status(code=UNKNOWN)
            for code in codes:
                status.details.add().Pack(p4r.Error(canonical_code=code, message=f"code {code}"))
            details = status.SerializeToString()
            context.set_trailing_metadata((("grpc-status-details-bin", details),))
            context.set_code(grpc.StatusCode.UNKNOWN)
        return p4r.WriteResponse()

    def _apply(self, update: p4r.Update) -> int:
        entry = update.entity.table_entry
        if not update.entity.HasField("table_entry") or entry.is_default_action:
            return OK
        key = (entry.table_id, b"".join(m.SerializeToString() for m in entry.match))
        if update.type == p4r.Update.INSERT:
            if key in self.entries:
                return ALREADY_EXISTS
            self.entries[key] = entry
        elif key not in self.entries:
            return NOT_FOUND
        elif update.type == p4r.Update.MODIFY:
            self.entries[key] = entry
        else:
            del self.entries[key]
        return OK

    def Read(self, request: p4r.ReadRequest, context: Any) -> Iterator[p4r.ReadResponse]:
        """Wildcard reads of one table."""
        wanted = request.entities[0].table_entry.table_id
        found = [e for (table, _), e in self.entries.items() if table == wanted]
        yield p4r.ReadResponse(entities=[p4r.Entity(table_entry=e) for e in found])
