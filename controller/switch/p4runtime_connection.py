"""One P4Runtime connection: channel, stub, stream and the P4Info it works with; blocking calls.

Used from the client's worker thread only. `open_connection` dials, arbitrates (waiting for the
switch's answer) and settles the pipeline; `Connection.write` and `Connection.read` are the two
RPCs the operations need. A transport failure (UNAVAILABLE and kin) marks the connection lost,
so the client opens a new one on its next call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from finsy.proto import p4r
from finsy.proto.p4.v1.p4runtime_pb2_grpc import P4RuntimeStub

from controller.switch.api import ErrorKind, SwitchError, ThreadReactor
from controller.switch.notifications import check_layout
from controller.switch.p4info_index import P4InfoIndex
from controller.switch.p4runtime_pipeline import (
    PipelineFiles,
    ensure_pipeline,
    rpc_code,
    rpc_error,
)
from controller.switch.p4runtime_status import (
    ALREADY_EXISTS,
    STATUS_DETAILS_KEY,
    UNKNOWN,
    UpdateError,
    trailer,
    update_errors,
)
from controller.switch.p4runtime_stream import StreamListener, StreamSession
from controller.switch.p4runtime_writes import uint128

log = logging.getLogger(__name__)

RPC_TIMEOUT = 30.0
MAX_MESSAGE = 256 * 1024 * 1024  # a full conn_table read exceeds gRPC's 4 MB default
# A failed Write's per-update errors come in one trailer, ~35 bytes per update: far past gRPC's
# default 16 KiB metadata limit for a few thousand updates.
MAX_METADATA = 8 * 1024 * 1024


@dataclass(frozen=True)
class Target:
    """Where and as whom to connect."""

    address: str
    device_id: int
    election_id: int
    pipeline: PipelineFiles | None = None
    timeout: float = 5.0
    """Seconds to wait for the channel and for the arbitration answer."""


@dataclass(frozen=True)
class DigestConfig:
    """How the switch batches digest samples (P4Runtime DigestEntry.Config)."""

    max_list_size: int = 64
    """Samples per DigestList at most."""
    max_timeout_ns: int = 10_000_000
    """How long a sample may wait for others (BMv2 would otherwise hold a lone one ~1 s)."""
    ack_timeout_ns: int = 1_000_000_000
    """After this, samples of an unacknowledged list may be sent again."""


class Connection:
    """A live connection to one device."""

    def __init__(
        self, target: Target, channel: grpc.Channel, stream: StreamSession, index: P4InfoIndex
    ) -> None:
        self.target = target
        self.channel = channel
        self.stub = P4RuntimeStub(channel)
        self.stream = stream
        self.index = index
        self.lost = ""
        """Why the connection is unusable ("" while it is fine)."""
        self.write_requests = 0
        self.loaded_pipeline = False
        """Whether this connection loaded the program (so every table started empty)."""

    @property
    def alive(self) -> bool:
        """Whether calls may still go over this connection."""
        return not self.lost and self.stream.alive

    @property
    def primary(self) -> bool:
        """Whether the switch last said this client is primary."""
        return self.stream.primary is True

    def _failed(self, what: str, exc: grpc.RpcError) -> SwitchError:
        error = rpc_error(f"{self.target.address} {what}", exc)
        if error.kind is ErrorKind.UNAVAILABLE:
            self.lost = str(error)
        return error

    def write(self, updates: list[p4r.Update]) -> list[UpdateError | None]:
        """One WriteRequest (CONTINUE_ON_ERROR); each update's error, None where it succeeded."""
        request = p4r.WriteRequest(
            device_id=self.target.device_id,
            election_id=uint128(self.target.election_id),
            updates=updates,
            atomicity=p4r.WriteRequest.CONTINUE_ON_ERROR,
        )
        self.write_requests += 1
        try:
            self.stub.Write(request, timeout=RPC_TIMEOUT)
        except grpc.RpcError as exc:
            error = self._failed("Write", exc)
            if rpc_code(exc) == UNKNOWN:
                details = trailer(exc.trailing_metadata(), STATUS_DETAILS_KEY)
                each = update_errors(details, len(updates))
                if each is not None:
                    return each
            return [UpdateError(rpc_code(exc), str(error), error.kind)] * len(updates)
        return [None] * len(updates)

    def read(self, entry: p4r.TableEntry, what: str) -> list[p4r.TableEntry]:
        """The table entries matching `entry` (a wildcard when it names only a table)."""
        entities = [p4r.Entity(table_entry=entry)]
        request = p4r.ReadRequest(device_id=self.target.device_id, entities=entities)
        try:
            return [
                entity.table_entry
                for reply in self.stub.Read(request, timeout=RPC_TIMEOUT)
                for entity in reply.entities
                if entity.HasField("table_entry")
            ]
        except grpc.RpcError as exc:
            raise self._failed(what, exc) from exc

    def configure_digest(self, config: DigestConfig) -> None:
        """Enable the program's digest with `config` (primary only), after checking its fields
        have the sizes the decoder expects."""
        digest = self.index.digest()
        check_layout(digest.widths)
        settings = p4r.DigestEntry.Config(
            max_list_size=config.max_list_size,
            max_timeout_ns=config.max_timeout_ns,
            ack_timeout_ns=config.ack_timeout_ns,
        )
        entity = p4r.Entity(digest_entry=p4r.DigestEntry(digest_id=digest.id, config=settings))
        for kind in (p4r.Update.INSERT, p4r.Update.MODIFY):  # MODIFY if configured before
            (error,) = self.write([p4r.Update(type=kind, entity=entity)])
            if error is None:
                return
            if error.code != ALREADY_EXISTS:
                raise SwitchError(f"digest {digest.alias!r} config: {error.message}", error.kind)

    def close(self) -> None:
        """End the stream and close the channel."""
        self.stream.close()
        self.channel.close()


def open_connection(target: Target, reactor: ThreadReactor, listener: StreamListener) -> Connection:
    """Dial, arbitrate and settle the pipeline (SwitchError UNAVAILABLE if unreachable)."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_metadata_size", MAX_METADATA),
    ]
    channel = grpc.insecure_channel(target.address, options=options)
    try:
        grpc.channel_ready_future(channel).result(timeout=target.timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        raise SwitchError("not reachable", ErrorKind.UNAVAILABLE) from None
    stream = StreamSession(
        P4RuntimeStub(channel), target.device_id, target.election_id, reactor, listener
    )
    try:
        primary = stream.wait_arbitration(target.timeout)
        if primary is None:
            # e.g. another controller holds the same election ID: try again later
            why = stream.error or "timed out"
            raise SwitchError(f"no arbitration answer ({why})", ErrorKind.UNAVAILABLE)
        pipeline = ensure_pipeline(
            P4RuntimeStub(channel),
            target.device_id,
            target.election_id,
            primary=primary,
            files=target.pipeline,
            timeout=target.timeout,
        )
    except BaseException:
        stream.close()
        channel.close()
        raise
    role = "primary" if primary else "backup"
    log.info("P4Runtime %s: connected as %s", target.address, role)
    conn = Connection(target, channel, stream, P4InfoIndex(pipeline.info))
    conn.loaded_pipeline = pipeline.loaded
    return conn
