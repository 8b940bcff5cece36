"""`SwitchClient` over standard P4Runtime (gRPC): BMv2 `simple_switch_grpc`, `p4lb-switch`, any
P4Runtime target.

Blocking gRPC stubs run on ONE worker thread, in order, like the Thrift client; the stream
(arbitration, digests, idle timeouts) is read on its own thread (`p4runtime_stream`). Names from
the contract are mapped to IDs through the target's P4Info (`p4info_index`); entries get handles
from the client (`p4runtime_handles`), since P4Runtime knows them by match only. Consecutive
writes travel in one WriteRequest (`p4runtime_writes`); reads split a batch.

A backup (another controller holds a higher election ID) stays connected and may read; its
writes fail with `ErrorKind.NOT_PRIMARY` without being sent. It notices when the switch makes it
primary (`primary`), and then configures the digest it was asked to subscribe to.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from finsy.proto import p4i, p4r
from twisted.python.failure import Failure

from controller.core.ops import (
    DefaultActionRead,
    DefaultActionSet,
    EntryCount,
    EntryTimeoutSet,
    Outcome,
    Owner,
    SwitchOp,
    TableClear,
    TableDelete,
    TableInsert,
    TableModify,
    describe,
)
from controller.switch.api import (
    AgedCallback,
    DefaultEntry,
    DigestCallback,
    ErrorKind,
    SwitchError,
    ThreadReactor,
    WorkerThread,
)
from controller.switch.p4runtime_codec import decode_digest, key_of_entry
from controller.switch.p4runtime_connection import (
    Connection,
    DigestConfig,
    Target,
    open_connection,
)
from controller.switch.p4runtime_handles import HandleBook
from controller.switch.p4runtime_pipeline import PipelineFiles
from controller.switch.p4runtime_reads import MAX_UPDATES, perform_read
from controller.switch.p4runtime_stream import StreamSession
from controller.switch.p4runtime_writes import (
    WRITE_OPS,
    FullTables,
    WriteBatch,
    WritePlanner,
    mark_full,
    unexplained_inserts,
)

__all__ = ["DigestConfig", "P4RuntimeSwitchClient", "PipelineFiles"]

log = logging.getLogger(__name__)

RECONNECT_INTERVAL = 1.0
"""Seconds between attempts to reach a lost target again (at least)."""
MAX_RECONNECT_INTERVAL = 30.0


class P4RuntimeSwitchClient:
    """Async client of one P4Runtime device at `host:port`."""

    def __init__(
        self,
        reactor: ThreadReactor,
        host: str,
        port: int,
        *,
        device_id: int = 1,
        election_id: int = 1,
        pipeline: PipelineFiles | None = None,
        digest_config: DigestConfig | None = None,
        connect_timeout: float = 5.0,
        worker: WorkerThread | None = None,
    ) -> None:
        self._reactor = reactor
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._target = Target(self._address, device_id, election_id, pipeline, connect_timeout)
        self._digest_config = digest_config or DigestConfig()
        self._worker = worker or WorkerThread(reactor, "p4lb-p4rt")
        self._conn: Connection | None = None
        self._info: p4i.P4Info | None = None
        self._connect_error = "not connected yet"
        self._connect_kind = ErrorKind.UNAVAILABLE
        self._reconnect_at = 0.0
        self._retry_delay = RECONNECT_INTERVAL
        self._book = HandleBook()
        self._full = FullTables()
        self._on_digest: DigestCallback | None = None
        self._on_aged: AgedCallback | None = None
        self._closed = False
        self._sent_before = 0
        self.malformed_digests = 0
        connecting = self._worker.run(self._connection, "connect")
        connecting.addErrback(
            lambda f: log.warning("P4Runtime %s: %s", self._address, f.getErrorMessage())
        )

    @property
    def device_id(self) -> int:
        """The P4Runtime device ID this client talks to."""
        return self._target.device_id

    @property
    def election_id(self) -> int:
        """This client's election ID (the highest connected one is primary)."""
        return self._target.election_id

    @property
    def primary(self) -> bool:
        """Whether the switch currently takes this client's writes (arbitration)."""
        conn = self._conn
        return conn is not None and conn.primary

    @property
    def write_requests(self) -> int:
        """WriteRequests sent so far (a batch of consecutive writes takes one)."""
        conn = self._conn
        return self._sent_before + (conn.write_requests if conn is not None else 0)

    # -- connection (worker thread) -----------------------------------------------------------

    def _connection(self, what: str) -> Connection:
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        if conn is not None:
            self._drop(conn, conn.lost or conn.stream.error or "stream ended")
        # The reactor's clock (safe to read from this thread) paces attempts, so tests decide.
        now = self._reactor.seconds()
        if not self._closed and now >= self._reconnect_at:
            self._reconnect_at = now + RECONNECT_INTERVAL
            try:
                conn = open_connection(self._target, self._reactor, self)
            except SwitchError as exc:
                self._connect_error, self._connect_kind = str(exc), exc.kind
            except Exception as exc:  # e.g. grpc refusing the address: no use retrying
                self._connect_error = f"{type(exc).__name__}: {exc}"
                self._connect_kind = ErrorKind.INVALID
            else:
                previous, self._conn = self._info, conn
                self._info = conn.index.info
                # A program just loaded holds no entries; another program's IDs name other things.
                if conn.loaded_pipeline or previous not in (None, self._info):
                    self._book.forget_all()
                    self._full.forget()
                if self._on_digest is not None and conn.primary:
                    conn.configure_digest(self._digest_config)
                return conn
        # Until the next attempt, calls fail as the last one did: UNAVAILABLE (unreachable, no
        # pipeline yet) is worth waiting for; a refused pipeline or a bad address is not.
        raise SwitchError(f"{self._address} {what}: {self._connect_error}", self._connect_kind)

    def _drop(self, conn: Connection, why: str) -> None:
        if self._conn is conn:
            self._conn = None
            self._sent_before += conn.write_requests
            self._connect_error = f"connection lost ({why})"
            self._connect_kind = ErrorKind.UNAVAILABLE
            log.warning("P4Runtime %s: %s", self._address, self._connect_error)
        conn.close()

    # -- operations (worker thread) -----------------------------------------------------------

    def _apply(self, ops: Sequence[SwitchOp]) -> list[Outcome]:
        try:
            conn = self._connection("apply")
        except SwitchError as exc:
            return [Outcome.failed(op, exc.kind, f"{describe(op)}: {exc}") for op in ops]
        planner = WritePlanner(conn.index, self._book)
        outcomes: list[Outcome | None] = [None] * len(ops)
        batch = WriteBatch()
        for position, op in enumerate(ops):
            if not isinstance(op, WRITE_OPS):
                self._flush(conn, planner, batch, outcomes)
                batch = WriteBatch()
                outcome = outcomes[position] = perform_read(conn, self._book, op)
                if isinstance(op, TableClear) and outcome.ok:
                    self._full.forget(conn.index.table(op.table).id)
                continue
            if not conn.primary:
                detail = f"{describe(op)}: not the primary controller of {self._address}"
                outcomes[position] = Outcome.failed(op, ErrorKind.NOT_PRIMARY, detail)
                continue
            try:
                planned = planner.plan(op)
                if batch.conflicts(planned) or len(batch) >= MAX_UPDATES:
                    self._flush(conn, planner, batch, outcomes)
                    batch = WriteBatch()
                    planned = planner.plan(op)  # against the book as the last Write left it
            except SwitchError as exc:
                outcomes[position] = Outcome.failed(op, exc.kind, f"{describe(op)}: {exc}")
                continue
            batch.add(position, planned)
        self._flush(conn, planner, batch, outcomes)
        return [o for o in outcomes if o is not None]

    def _flush(
        self,
        conn: Connection,
        planner: WritePlanner,
        batch: WriteBatch,
        outcomes: list[Outcome | None],
    ) -> None:
        if not batch:
            return
        updates = [planned for _, planned in batch.updates]
        errors = conn.write([planned.update for planned in updates])
        for table_id in unexplained_inserts(updates, errors):
            if table_id in self._full.known:
                continue
            table = conn.index.table_by_id(table_id)
            try:
                held = len(conn.read(p4r.TableEntry(table_id=table_id), "count"))
            except SwitchError:
                continue  # the errors stay as the switch gave them
            if held >= table.size > 0:
                self._full.note(table_id, held)
        errors = mark_full(updates, errors, self._full.known)
        self._full.after_write(updates, errors)
        for (position, planned), error in zip(batch.updates, errors, strict=True):
            outcomes[position] = planner.settle(planned, error)

    # -- stream (digests and idle timeouts) -----------------------------------------------------

    def stream_arbitration(self, primary: bool, promoted: bool, message: str) -> None:
        """The switch's arbitration answer (reactor thread): log it; once promoted, enable the
        digest this client subscribed to as a backup."""
        log.info(
            "P4Runtime %s: %s (%s)", self._address, "primary" if primary else "backup", message
        )
        if promoted and self._on_digest is not None and not self._closed:
            self._worker.run(self._configure_current).addErrback(
                lambda f: log.error("P4Runtime %s: %s", self._address, f.getErrorMessage())
            )

    def _configure_current(self) -> None:
        self._connection("configure digest").configure_digest(self._digest_config)

    def stream_digests(self, session: StreamSession, digests: p4r.DigestList) -> None:
        """Deliver a DigestList's samples (reactor thread), then acknowledge it."""
        conn = self._conn
        if conn is None or self._closed:
            return
        try:
            decoded = []
            for data in digests.data:
                try:
                    decoded.append(decode_digest(conn.index.digest_by_id(digests.digest_id), data))
                except SwitchError as exc:
                    self.malformed_digests += 1
                    log.warning("P4Runtime %s: dropped digest: %s", self._address, exc)
            for digest in decoded:
                if self._on_digest is not None:
                    self._on_digest(digest)
        finally:
            session.acknowledge(digests)  # on the stream it came by, even an old one

    def stream_idle(self, notification: p4r.IdleTimeoutNotification) -> None:
        """Hand idle entries' handles to the aged callback (the book lives on the worker)."""
        if self._on_aged is None or self._closed:
            return
        aged = self._worker.run(self._idle_handles, list(notification.table_entry))
        aged.addCallback(self._deliver_aged)
        aged.addErrback(lambda f: log.warning("P4Runtime idle notification: %s", f.value))

    def _idle_handles(self, entries: list[p4r.TableEntry]) -> list[int]:
        conn = self._conn
        if conn is None:
            return []
        handles = []
        for entry in entries:
            key = key_of_entry(conn.index.table_by_id(entry.table_id), entry)
            handle = self._book.handle_of(key)
            if handle is not None:  # an entry no handle names is no one's to expire
                handles.append(handle)
        return handles

    def _deliver_aged(self, handles: list[int]) -> None:
        if handles and self._on_aged is not None and not self._closed:
            self._on_aged(handles)

    def stream_ended(self, session: StreamSession, error: str) -> None:
        """The stream broke: reconnect (and re-arbitrate) while deliveries are wanted."""
        log.warning("P4Runtime %s: stream ended: %s", self._address, error)
        if self._on_digest is not None and not self._closed:
            self._retry_delay = RECONNECT_INTERVAL
            self._reactor.callLater(RECONNECT_INTERVAL, self._reconnect)

    def _reconnect(self) -> None:
        if self._closed:
            return
        attempt = self._worker.run(self._connection, "reconnect")
        attempt.addErrback(self._reconnect_failed)

    def _reconnect_failed(self, failure: Failure) -> None:
        # Doubling, so a switch that stays away (or refuses our pipeline) is not hammered.
        self._retry_delay = min(self._retry_delay * 2, MAX_RECONNECT_INTERVAL)
        log.warning(
            "P4Runtime %s: %s; next attempt in %.0f s",
            self._address,
            failure.getErrorMessage(),
            self._retry_delay,
        )
        if not self._closed:
            self._reactor.callLater(self._retry_delay, self._reconnect)

    # -- SwitchClient -------------------------------------------------------------------------

    async def apply(self, ops: Sequence[SwitchOp]) -> list[Outcome]:
        """Carry out the operations in order, as few Writes as ordering allows; one outcome each."""
        if self._closed:
            detail = f"{self._address}: client is closed"
            return [Outcome.failed(op, ErrorKind.UNAVAILABLE, detail) for op in ops]
        return await self._worker.run(self._apply, list(ops))

    async def _one(self, op: SwitchOp) -> Outcome:
        (outcome,) = await self.apply([op])
        if not outcome.ok:
            raise SwitchError(outcome.detail, outcome.error or ErrorKind.UNKNOWN)
        return outcome

    async def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        """Add an entry and return its handle (our tables have no priorities)."""
        op = TableInsert(_OWNER, table, tuple(keys), action, tuple(params))
        handle = (await self._one(op)).handle
        assert handle is not None
        return handle

    async def table_modify(
        self, table: str, action: str, handle: int, params: Sequence[str]
    ) -> None:
        """Change the action and parameters of the entry `handle`."""
        await self._one(TableModify(_OWNER, table, handle, action, tuple(params)))

    async def table_delete(self, table: str, handle: int) -> None:
        """Delete the entry `handle`."""
        await self._one(TableDelete(_OWNER, table, handle))

    async def table_clear(self, table: str) -> None:
        """Delete every entry of `table` (the default action stays)."""
        await self._one(TableClear(_OWNER, table))

    async def table_set_default(self, table: str, action: str, params: Sequence[str]) -> None:
        """Set the default action of `table`."""
        await self._one(DefaultActionSet(_OWNER, table, action, tuple(params)))

    async def table_set_timeout(self, table: str, handle: int, ms: int) -> None:
        """Give the entry `handle` an idle timeout (MODIFY with idle_timeout_ns)."""
        await self._one(EntryTimeoutSet(_OWNER, table, handle, ms))

    async def table_num_entries(self, table: str) -> int:
        """Return the number of entries in `table` (a wildcard read)."""
        value = (await self._one(EntryCount(_OWNER, table))).value
        assert value is not None
        return value

    async def table_get_default(self, table: str) -> DefaultEntry:
        """Return the default action of `table` and its parameter values."""
        entry = (await self._one(DefaultActionRead(_OWNER, table))).entry
        assert entry is not None
        return entry

    async def subscribe(self, on_digest: DigestCallback, on_aged: AgedCallback) -> None:
        """Enable the digest (as primary; a backup does it when promoted) and deliver digests
        and idle conn_table handles to the callbacks."""
        if self._closed:
            raise SwitchError(f"{self._address} subscribe: client is closed", ErrorKind.UNAVAILABLE)
        self._on_digest, self._on_aged = on_digest, on_aged
        await self._worker.run(self._subscribe)

    def _subscribe(self) -> None:
        conn = self._connection("subscribe")
        if conn.primary:
            conn.configure_digest(self._digest_config)
        else:
            log.warning("P4Runtime %s: backup: digests start when primary", self._address)

    async def close(self) -> None:
        """End the stream, close the channel and release the worker thread."""
        if self._closed:
            return
        self._closed = True
        await self._worker.run(self._disconnect)
        self._worker.stop()

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


_OWNER = Owner.STARTUP  # the single-call methods are not the core's: any owner serves
