"""A small synchronous P4Runtime client for the tests of p4lb-switch's P4Runtime server, and the
messages they build (plain grpcio and finsy's bindings; not the controller's client)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc
from finsy.proto import p4i, p4r, p4r_grpc, rpc_status

DEVICE_ID = 1
WAIT = 10.0
"""Seconds a test waits for a stream message before it fails (a bound, not a pace)."""


class StreamClient:
    """One StreamChannel: requests fed from a queue, responses collected by a thread."""

    def __init__(self, stub: p4r_grpc.P4RuntimeStub) -> None:
        self._requests: queue.SimpleQueue[p4r.StreamMessageRequest | None] = queue.SimpleQueue()
        self._calls = stub.StreamChannel(iter(self._requests.get, None))
        self.received: queue.SimpleQueue[p4r.StreamMessageResponse | None] = queue.SimpleQueue()
        self.error: grpc.RpcError | None = None
        self.skipped: list[p4r.StreamMessageResponse] = []
        """Messages `next` passed over while waiting for another kind."""
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        try:
            for response in self._calls:
                self.received.put(response)
        except grpc.RpcError as exc:
            self.error = exc
        self.received.put(None)

    def send(self, request: p4r.StreamMessageRequest) -> None:
        """Send one message on the stream."""
        self._requests.put(request)

    def arbitrate(self, election_id: int | None, role: str = "") -> p4r.MasterArbitrationUpdate:
        """Send a MasterArbitrationUpdate and return the server's next advisory."""
        update = p4r.MasterArbitrationUpdate(device_id=DEVICE_ID)
        if role:
            update.role.name = role
        if election_id is not None:
            update.election_id.low = election_id
        self.send(p4r.StreamMessageRequest(arbitration=update))
        return self.next("arbitration").arbitration

    def next(self, kind: str) -> p4r.StreamMessageResponse:
        """The next message of `kind` (others are skipped); fails after WAIT or at stream end."""
        while True:
            try:
                message = self.received.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no {kind} message within {WAIT} s") from None
            if message is None:
                raise AssertionError(f"stream ended before a {kind} message: {self.error!r}")
            if message.WhichOneof("update") == kind:
                return message
            self.skipped.append(message)

    def wait_end(self) -> grpc.RpcError | None:
        """Wait for the server to end the stream; its error, if any."""
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the stream did not end"
        return self.error

    def close(self) -> None:
        """Half-close the stream (the client is done) and wait for its end."""
        self._requests.put(None)
        self._thread.join(WAIT)


def set_pipeline(
    stub: p4r_grpc.P4RuntimeStub,
    info: p4i.P4Info,
    election_id: int,
    action: p4r.SetForwardingPipelineConfigRequest.Action.ValueType = (
        p4r.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT
    ),
    device_config: bytes = b"{}",
) -> None:
    """SetForwardingPipelineConfig (VERIFY_AND_COMMIT by default; `device_config`: the target's
    program, which the model ignores and BMv2 needs)."""
    request = p4r.SetForwardingPipelineConfigRequest(device_id=DEVICE_ID, action=action)
    request.election_id.low = election_id
    request.config.p4info.CopyFrom(info)
    request.config.p4_device_config = device_config
    request.config.cookie.cookie = 7
    stub.SetForwardingPipelineConfig(request)


def write(
    stub: p4r_grpc.P4RuntimeStub, election_id: int | None, *updates: p4r.Update
) -> p4r.WriteResponse:
    """One Write with these updates."""
    request = p4r.WriteRequest(device_id=DEVICE_ID, updates=updates)
    if election_id is not None:
        request.election_id.low = election_id
    response: p4r.WriteResponse = stub.Write(request)
    return response


def read(stub: p4r_grpc.P4RuntimeStub, *entities: p4r.Entity) -> list[p4r.Entity]:
    """Every entity the Read returns."""
    request = p4r.ReadRequest(device_id=DEVICE_ID, entities=entities)
    return [e for response in stub.Read(request) for e in response.entities]


def update(kind: p4r.Update.Type.ValueType, entry: p4r.TableEntry) -> p4r.Update:
    """An Update of a table entry."""
    return p4r.Update(type=kind, entity=p4r.Entity(table_entry=entry))


def batch_errors(exc: grpc.RpcError) -> list[p4r.Error]:
    """The per-update errors of a failed Write, from grpc-status-details-bin."""
    details = dict(exc.trailing_metadata() or ())["grpc-status-details-bin"]
    status = rpc_status.Status.FromString(details)
    errors = []
    for detail in status.details:
        error = p4r.Error()
        assert detail.Unpack(error)
        errors.append(error)
    return errors


class Names:
    """IDs of the active P4Info by name."""

    def __init__(self, info: p4i.P4Info) -> None:
        self.info = info
        self.tables = {t.preamble.alias: t for t in info.tables}
        self.actions = {a.preamble.alias: a for a in info.actions}
        self.digest_id = info.digests[0].preamble.id

    def entry(
        self,
        table: str,
        exact: list[bytes],
        action: str | None = None,
        params: tuple[bytes, ...] | list[bytes] = (),
    ) -> p4r.TableEntry:
        """A TableEntry of `table` with exact values for its first fields, in order."""
        t = self.tables[table]
        entry = p4r.TableEntry(table_id=t.preamble.id)
        for field, value in zip(t.match_fields, exact, strict=False):
            entry.match.add(field_id=field.id).exact.value = value
        if action is not None:
            a = self.actions[action]
            entry.action.action.action_id = a.preamble.id
            for param, value in zip(a.params, params, strict=True):
                entry.action.action.params.add(param_id=param.id, value=value)
        return entry


def entries(stream: Iterator[p4r.Entity]) -> list[p4r.TableEntry]:
    """The table entries among entities."""
    return [e.table_entry for e in stream if e.WhichOneof("entity") == "table_entry"]
