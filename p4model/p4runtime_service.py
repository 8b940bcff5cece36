"""P4Runtime over gRPC for p4lb-switch: a thin servicer over `P4RuntimeDevice`.

Threads: gRPC's pool runs the unary RPCs and one handler per StreamChannel; a reader thread per
stream takes the client's messages; a ticker thread flushes timed-out digest lists and scans
for idle entries. Everything that touches the switch holds `lock`, the one the packet loop
holds while it forwards, so control and packets never interleave inside the model. A Write
takes the lock per update, so a large batch does not stall forwarding.

Errors: a refused RPC ends with the status the spec names and a message saying why; a batch
with failed updates ends with UNKNOWN and a google.rpc.Status in `grpc-status-details-bin`
holding one p4.v1.Error per update, in order (OK ones too), as BMv2's server does. An exception
in our own code becomes INTERNAL for that request; it never stops the switch.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from finsy.proto import p4r, p4r_grpc, rpc_status

from p4model.p4runtime_arbitration import Advisory, Arbitration
from p4model.p4runtime_codec import Code, P4RuntimeError
from p4model.p4runtime_device import P4RuntimeDevice
from p4src.contract import Digest

log = logging.getLogger("p4lb.switch.p4runtime")

API_VERSION = "1.3.0"
"""What Capabilities reports: the version BMv2's server reports, whose behaviour we copy."""
IDLE_SCAN_INTERVAL = 1.0
"""Seconds between scans for idle entries by default (BMv2 checks ageing every second)."""
MAX_STREAMS = 8
"""Open StreamChannels at most; each holds a worker thread, and unary calls need some left."""
READ_CHUNK = 4096
"""Entities per ReadResponse at most (about 320 kB of conn_table entries)."""
OUTBOX_LIMIT = 10_000
"""Notifications waiting for one stream at most; more are dropped (and counted)."""
_GRPC_CODES = {c.value[0]: c for c in grpc.StatusCode}
_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class _StreamEnd:
    """Ends a stream: normally (code None) or with an error status."""

    code: Code | None = None
    message: str = ""


_StreamItem = p4r.StreamMessageResponse | _StreamEnd


class P4RuntimeService(p4r_grpc.P4RuntimeServicer):
    """The P4Runtime service of one device."""

    def __init__(
        self,
        device: P4RuntimeDevice,
        lock: threading.RLock,
        *,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        idle_scan_interval: float = IDLE_SCAN_INTERVAL,
    ) -> None:
        """Serve `device`; `lock` guards the switch; `clock_ns` times digest lists."""
        self.device = device
        self.lock = lock
        self._clock_ns = clock_ns
        self._idle_scan_interval = idle_scan_interval
        self._arbitration = Arbitration()
        self._streams: dict[int, queue.SimpleQueue[_StreamItem]] = {}
        self._stream_ids = itertools.count(1)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="p4rt-ticker", daemon=True)
        self.dropped_notifications = 0

    # ---- unary RPCs -------------------------------------------------------------------------
    def Capabilities(self, request: p4r.CapabilitiesRequest, context: Any) -> Any:
        """The P4Runtime version."""
        return p4r.CapabilitiesResponse(p4runtime_api_version=API_VERSION)

    def SetForwardingPipelineConfig(
        self, request: p4r.SetForwardingPipelineConfigRequest, context: Any
    ) -> Any:
        """Accept our program's P4Info (any IDs) from the primary."""
        with _refusals(context):
            self._check_device(request.device_id)
            self._check_primary(request.role, request)
            with self.lock:
                self.device.set_pipeline(request.action, request.config)
        return p4r.SetForwardingPipelineConfigResponse()

    def GetForwardingPipelineConfig(
        self, request: p4r.GetForwardingPipelineConfigRequest, context: Any
    ) -> Any:
        """The active config (the model's own P4Info until a client pushes one)."""
        with _refusals(context):
            self._check_device(request.device_id)
            with self.lock:
                config = self.device.get_pipeline(request.response_type)
        return p4r.GetForwardingPipelineConfigResponse(config=config)

    def Write(self, request: p4r.WriteRequest, context: Any) -> Any:
        """Apply the updates in order; report every failed one (CONTINUE_ON_ERROR)."""
        with _refusals(context):
            self._check_device(request.device_id)
            self._check_primary(request.role, request)
            if request.atomicity != p4r.WriteRequest.CONTINUE_ON_ERROR:
                raise P4RuntimeError(Code.UNIMPLEMENTED, "only CONTINUE_ON_ERROR is supported")
        errors = [self._apply(update) for update in request.updates]
        if any(e.canonical_code != Code.OK for e in errors):
            failed = sum(e.canonical_code != Code.OK for e in errors)
            status = rpc_status.Status(
                code=Code.UNKNOWN, message=f"{failed} of {len(errors)} updates failed"
            )
            for error in errors:
                status.details.add().Pack(error)
            context.set_trailing_metadata(((_DETAILS_KEY, status.SerializeToString()),))
            context.set_code(grpc.StatusCode.UNKNOWN)
            context.set_details(status.message)
        return p4r.WriteResponse()

    def _apply(self, update: p4r.Update) -> p4r.Error:
        try:
            with self.lock:
                self.device.write(update)
        except P4RuntimeError as exc:
            return p4r.Error(canonical_code=exc.code, message=exc.message)
        except Exception as exc:  # our bug: this update fails, the switch goes on
            log.exception("write of %s failed", update)
            return p4r.Error(canonical_code=Code.INTERNAL, message=f"internal error: {exc!r}")
        return p4r.Error(canonical_code=Code.OK)

    def Read(self, request: p4r.ReadRequest, context: Any) -> Iterator[p4r.ReadResponse]:
        """The entities matching each requested one, in responses of READ_CHUNK at most."""
        with _refusals(context):
            self._check_device(request.device_id)
            snapshots = []
            for entity in request.entities:
                with self.lock:
                    snapshots.append(self.device.snapshot(entity))
            # Encoding is the slow part: it runs without the lock, so forwarding goes on, and
            # in chunks, so no response outgrows gRPC's default 4 MB message limit.
            chunk: list[p4r.Entity] = []
            sent = False
            for snapshot in snapshots:
                for entity in snapshot.entities():
                    chunk.append(entity)
                    if len(chunk) == READ_CHUNK:
                        yield p4r.ReadResponse(entities=chunk)
                        chunk, sent = [], True
            if chunk or not sent:  # an empty result is one empty response
                yield p4r.ReadResponse(entities=chunk)

    # ---- checks -----------------------------------------------------------------------------
    def _check_device(self, device_id: int) -> None:
        if device_id != self.device.device_id:
            raise P4RuntimeError(Code.NOT_FOUND, f"unknown device id {device_id}")

    def _check_primary(self, role: str, request: Any) -> None:
        election_id = _election_id(request)
        with self.lock:
            primary = self._arbitration.is_primary(role, election_id)
        if not primary:
            raise P4RuntimeError(
                Code.PERMISSION_DENIED,
                f"not primary: election id {election_id} is not the primary's of role {role!r}",
            )

    # ---- stream -----------------------------------------------------------------------------
    def StreamChannel(
        self, request_iterator: Iterable[p4r.StreamMessageRequest], context: Any
    ) -> Iterator[p4r.StreamMessageResponse]:
        """Arbitration, digests and idle notifications for one client."""
        stream = next(self._stream_ids)
        outbox: queue.SimpleQueue[_StreamItem] = queue.SimpleQueue()
        with self.lock:
            full = len(self._streams) >= MAX_STREAMS
            if not full:
                self._streams[stream] = outbox
        if full:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{MAX_STREAMS} streams are open")
        context.add_callback(lambda: outbox.put(_StreamEnd()))
        reader = threading.Thread(
            target=self._read_stream,
            args=(stream, outbox, request_iterator),
            name=f"p4rt-stream-{stream}",
            daemon=True,
        )
        reader.start()
        try:
            while True:
                item = outbox.get()
                if isinstance(item, _StreamEnd):
                    if item.code is not None:
                        context.abort(_GRPC_CODES[item.code], item.message)
                    return
                yield item
        finally:
            self._end_stream(stream)

    def _read_stream(
        self,
        stream: int,
        outbox: queue.SimpleQueue[_StreamItem],
        requests: Iterable[p4r.StreamMessageRequest],
    ) -> None:
        try:
            for request in requests:
                self._on_stream_message(stream, request)
        except P4RuntimeError as exc:
            outbox.put(_StreamEnd(exc.code, exc.message))
            return
        except grpc.RpcError:
            pass  # the client went away
        except Exception:  # our bug: end this stream, keep the switch
            log.exception("stream %d failed", stream)
            outbox.put(_StreamEnd(Code.INTERNAL, "internal error"))
            return
        outbox.put(_StreamEnd())

    def _on_stream_message(self, stream: int, request: p4r.StreamMessageRequest) -> None:
        which = request.WhichOneof("update")
        if which == "arbitration":
            update = request.arbitration
            with self.lock:
                live = self._arbitration.is_live(stream)
            if update.device_id != self.device.device_id:
                code = Code.FAILED_PRECONDITION if live else Code.NOT_FOUND
                raise P4RuntimeError(code, f"unknown device id {update.device_id}")
            if update.role.HasField("config"):
                raise P4RuntimeError(Code.INVALID_ARGUMENT, "role configs are not supported")
            with self.lock:
                before = self._arbitration.primaries()
                advisories = self._arbitration.update(
                    stream, update.role.name, _election_id(update)
                )
                if self._arbitration.primaries() != before:
                    self.device.clear_digest_caches()
            self._send_advisories(advisories)
        elif which == "digest_ack":
            with self.lock:
                if stream in self._arbitration.primaries():
                    ack = request.digest_ack
                    self.device.ack_digest(ack.digest_id, ack.list_id)
        else:
            error = p4r.StreamError(
                canonical_code=Code.UNIMPLEMENTED, message=f"{which} unsupported"
            )
            self._send(stream, p4r.StreamMessageResponse(error=error))

    def _end_stream(self, stream: int) -> None:
        with self.lock:
            if self._streams.pop(stream, None) is None:
                return
            before = self._arbitration.primaries()
            advisories = self._arbitration.remove(stream)
            if self._arbitration.primaries() != before:
                self.device.clear_digest_caches()
        self._send_advisories(advisories)

    def _send_advisories(self, advisories: list[Advisory]) -> None:
        for a in advisories:
            message = p4r.StreamMessageResponse()
            update = message.arbitration
            update.device_id = self.device.device_id
            if a.role:
                update.role.name = a.role
            if a.election_id is not None:
                update.election_id.high = a.election_id >> 64
                update.election_id.low = a.election_id & (1 << 64) - 1
            update.status.code = a.code
            update.status.message = "primary" if a.code == Code.OK else "backup"
            self._send(a.stream, message)

    def _send(self, stream: int, message: p4r.StreamMessageResponse) -> None:
        with self.lock:
            outbox = self._streams.get(stream)
        if outbox is not None:
            outbox.put(message)

    def _send_to_primaries(self, messages: list[p4r.StreamMessageResponse]) -> None:
        """Queue notifications for every primary; a stream whose client does not keep up loses
        them past OUTBOX_LIMIT (the spec lets a server drop digests and idle notifications)."""
        with self.lock:
            outboxes = [self._streams[s] for s in self._arbitration.primaries()]
        for outbox in outboxes:
            room = OUTBOX_LIMIT - outbox.qsize()
            for message in messages[: max(0, room)]:
                outbox.put(message)
            self.dropped_notifications += max(0, len(messages) - max(0, room))

    # ---- notifications ----------------------------------------------------------------------
    def offer_digests(self, samples: list[Digest]) -> None:
        """Digest samples from the data plane (called by the packet loop)."""
        with self.lock:
            lists = self.device.offer_digests(samples, self._clock_ns())
            waiting = self.device.next_digest_deadline() is not None
        self._deliver_digests(lists)
        if waiting:
            self._wake.set()  # a buffered list may be due before the ticker's next scan

    def _deliver_digests(self, lists: list[p4r.DigestList]) -> None:
        stamp = time.time_ns()
        messages = []
        for digest_list in lists:
            digest_list.timestamp = stamp
            messages.append(p4r.StreamMessageResponse(digest=digest_list))
        self._send_to_primaries(messages)

    def tick(self, *, scan_idle: bool = True) -> None:
        """Send due digest lists and, when `scan_idle`, idle-timeout notifications."""
        with self.lock:
            lists = self.device.due_digests(self._clock_ns())
            idle = self.device.idle_entries() if scan_idle else []
        self._deliver_digests(lists)
        if idle:
            note = p4r.IdleTimeoutNotification(table_entry=idle, timestamp=time.time_ns())
            self._send_to_primaries([p4r.StreamMessageResponse(idle_timeout_notification=note)])

    def _tick_loop(self) -> None:
        # Digest deadlines may wake the loop often; the idle scan (milliseconds under the lock
        # for a full conn_table) still runs once per interval only.
        next_scan = time.monotonic()
        while not self._stopping.is_set():
            self._wake.clear()  # before looking: a wake-up from now on cuts the wait short
            scan_idle = time.monotonic() >= next_scan
            if scan_idle:
                next_scan = time.monotonic() + self._idle_scan_interval
            try:
                self.tick(scan_idle=scan_idle)
            except Exception:  # our bug: keep ticking
                log.exception("p4runtime tick failed")
            with self.lock:
                deadline = self.device.next_digest_deadline()
            wait = max(0.0, next_scan - time.monotonic())
            if deadline is not None:
                wait = min(wait, max(0.0, (deadline - self._clock_ns()) / 1e9))
            self._wake.wait(wait)

    # ---- life -------------------------------------------------------------------------------
    def start_ticker(self) -> None:
        """Start the thread that sends timed notifications."""
        self._ticker.start()

    def stop(self) -> None:
        """End every stream and the ticker."""
        self._stopping.set()
        self._wake.set()
        with self.lock:
            outboxes = list(self._streams.values())
        for outbox in outboxes:
            outbox.put(_StreamEnd())
        if self._ticker.is_alive():
            self._ticker.join(5.0)


@contextlib.contextmanager
def _refusals(context: Any) -> Iterator[None]:
    """Turn a P4RuntimeError raised in the block into the RPC's error status."""
    try:
        yield
    except P4RuntimeError as exc:
        context.abort(_GRPC_CODES[exc.code], exc.message)
    except Exception as exc:  # our bug: this request fails, the switch goes on
        log.exception("P4Runtime request failed")
        context.abort(grpc.StatusCode.INTERNAL, f"internal error: {exc!r}")


def _election_id(message: Any) -> int | None:
    """A request's or arbitration update's election id as an int; None when unset."""
    if not message.HasField("election_id"):
        return None
    return int(message.election_id.high) << 64 | int(message.election_id.low)


def serve(
    service: P4RuntimeService, address: str, max_workers: int = 3 * MAX_STREAMS
) -> tuple[grpc.Server, int]:
    """Start a gRPC server for `service` on `address` (port 0: any free one); the bound port.

    SO_REUSEPORT is off: a second server on a taken port must fail, not share it."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="p4rt"),
        options=[("grpc.so_reuseport", 0)],
    )
    p4r_grpc.add_P4RuntimeServicer_to_server(service, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen for P4Runtime on {address}: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen for P4Runtime on {address}")
    server.start()
    service.start_ticker()
    return server, port
