"""`SwitchClient` for BMv2 `simple_switch` through p4-utils' `SimpleSwitchThriftAPI`.

p4-utils wraps every runtime method in a decorator that prints the error and returns None, so a
failed `table_delete` or `table_set_default` looks like success. Where the decorator kept the
original function (`functools.wraps` sets `__wrapped__`) this client calls that function and sees
the real exception; a value-returning call that still yields None is an error too. Either way the
controller gets a `SwitchError` naming the call.

All Thrift calls run on ONE worker thread, in order (one Thrift socket, like BMv2's own CLI).
Digests (`LEA|`) and ageing notices (`AGE|`) come from BMv2's nanomsg notifications socket on a
second thread, read through ctypes on BMv2's own libnanomsg (`controller.switch.nanomsg`, no
Python binding needed); learning buffers are acknowledged and the learning timeout is lowered on
subscribe.
"""

from __future__ import annotations

import functools
import inspect
import logging
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.python.failure import Failure

from controller.core.ops import Outcome, SwitchOp
from controller.switch.api import (
    AgedCallback,
    DefaultEntry,
    DigestCallback,
    ErrorKind,
    PollingThread,
    SwitchError,
    ThreadReactor,
    WorkerThread,
    describe_call,
)
from controller.switch.bmv2_path import ensure_bmv2_modules
from controller.switch.execute import perform_all
from controller.switch.nanomsg import subscribe as nanomsg_subscribe
from controller.switch.notifications import (
    AgeingMessage,
    LearnMessage,
    check_layout,
    decode_notification,
    learn_list_widths,
)
from p4src.contract import DIGEST_FIELDS

RECONNECT_INTERVAL = 1.0
"""Seconds between attempts to open a lost Thrift connection again."""
log = logging.getLogger(__name__)

INSTALL_HINT = (
    "BMv2 support needs p4-utils and BMv2's Python modules (bm_runtime, sswitch_runtime) "
    "plus thrift: `.venv/bin/pip install -e '.[bmv2]'`, then p4-utils from a checkout of "
    "https://github.com/nsg-ethz/p4-utils with `pip install --no-deps .`"
)
LEARNING_TIMEOUT_MS = 10
RECEIVE_TIMEOUT = 0.25  # s; bounds how long close() waits for the notifications thread
MAX_SKIPPED_ACKS = 4096  # bound on the learn buffers acknowledged after a gap


class NotificationSocket(Protocol):
    """A subscription to BMv2's notifications socket."""

    def receive(self) -> bytes | None:
        """Next message, or None after the receive timeout."""
        ...

    def close(self) -> None:
        """Close the socket."""
        ...


ApiFactory = Callable[[str, int], Any]
NotificationFactory = Callable[[str], NotificationSocket]
Probe = Callable[[str, int, float], None]


def _probe_tcp(host: str, port: int, timeout: float) -> None:
    socket.create_connection((host, port), timeout=timeout).close()


def thrift_api_class() -> Any:
    """p4-utils' `SimpleSwitchThriftAPI`, with BMv2's Python directory put on `sys.path` when
    its modules are not importable already; `SwitchError` with what is missing otherwise."""
    try:
        ensure_bmv2_modules()
    except SwitchError as exc:
        raise SwitchError(f"{exc}; {INSTALL_HINT}") from exc
    try:
        from p4utils.utils.sswitch_thrift_API import (  # noqa: PLC0415 - optional dependency
            SimpleSwitchThriftAPI,
        )
    except ImportError as exc:
        raise SwitchError(f"cannot import p4-utils ({exc}); {INSTALL_HINT}") from exc
    return SimpleSwitchThriftAPI


def _p4utils_api(host: str, port: int) -> Any:
    return thrift_api_class()(port, thrift_ip=host)


def _code_label(exc: BaseException) -> str | None:
    """The name of a BMv2 `Invalid*Operation` exception's error code (e.g. "TABLE_FULL")."""
    name = type(exc).__name__
    code = getattr(exc, "code", None)
    if isinstance(code, int) and name.startswith("Invalid"):
        module = sys.modules.get(type(exc).__module__)
        codes = getattr(module, name.removeprefix("Invalid") + "ErrorCode", None)
        label = getattr(codes, "_VALUES_TO_NAMES", {}).get(code)
        return label if isinstance(label, str) else None
    return None


# BMv2's TableOperationErrorCode names (runtime_CLI) read as error kinds; every other
# Invalid*Operation is a refused request.
_TABLE_CODE_KINDS = {
    "TABLE_FULL": ErrorKind.TABLE_FULL,
    "DUPLICATE_ENTRY": ErrorKind.DUPLICATE,
    "INVALID_HANDLE": ErrorKind.NOT_FOUND,
    "EXPIRED_HANDLE": ErrorKind.NOT_FOUND,
}


def error_kind(exc: BaseException) -> ErrorKind:
    """The kind of a p4-utils / Thrift exception: from BMv2's error code, or the transport."""
    label = _code_label(exc)
    if label is not None:
        return _TABLE_CODE_KINDS.get(label, ErrorKind.INVALID)
    if any(cls.__name__.startswith("UIn_") for cls in type(exc).__mro__):
        return ErrorKind.INVALID  # p4-utils refused the input itself (UIn_Error and kin)
    if isinstance(exc, OSError) or type(exc).__name__ in ("TTransportException", "EOFError"):
        return ErrorKind.UNAVAILABLE
    return ErrorKind.UNKNOWN


def explain(exc: BaseException) -> str:
    """Readable text for p4-utils / Thrift exceptions (error codes shown by name)."""
    name = type(exc).__name__
    label = _code_label(exc)
    if label is not None:
        return f"{name} ({label})"
    return f"{name}: {exc}" if str(exc) else name


def undecorated(api: Any, operation: str) -> Callable[..., Any]:
    """`api.operation` without p4-utils' print-and-return-None decorator, when it can be peeled."""
    function = getattr(type(api), operation, None)
    if function is not None and hasattr(function, "__wrapped__"):
        return functools.partial(inspect.unwrap(function), api)
    method: Callable[..., Any] = getattr(api, operation)
    return method


def _entry_row(entry: Any) -> tuple[int, list[object], str, list[int]]:
    """A BMv2 `BmMtEntry` (exact and lpm match fields, action data as big-endian bytes) as a
    `table_entries` row."""
    match: list[object] = []
    for param in entry.match_key:
        if getattr(param, "lpm", None) is not None:
            match.append([int.from_bytes(param.lpm.key, "big"), int(param.lpm.prefix_length)])
        elif getattr(param, "exact", None) is not None:
            match.append(int.from_bytes(param.exact.key, "big"))
        else:
            raise SwitchError(f"unsupported match field {param!r} read back", ErrorKind.INVALID)
    action = entry.action_entry
    data = [int.from_bytes(value, "big") for value in (action.action_data or [])]
    return int(entry.entry_handle), match, str(action.action_name), data


class _CheckedApi:
    """p4-utils' runtime API as `perform` calls it, every result checked (worker thread only)."""

    def __init__(self, client: ThriftSwitchClient) -> None:
        # The client's own checked calls (the client owns the API object and its thread).
        self._invoke = client._invoke
        self._read_entries = client._read_entries
        self._read_default = client._read_default

    def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> object:
        return int(self._invoke(True, "table_add", table, action, list(keys), list(params), prio))

    def table_modify(self, table: str, action: str, handle: int, params: Sequence[str]) -> object:
        return self._invoke(True, "table_modify", table, action, handle, list(params))

    def table_delete(self, table: str, handle: int) -> object:
        return self._invoke(False, "table_delete", table, handle)

    def table_clear(self, table: str) -> object:
        return self._invoke(False, "table_clear", table)

    def table_set_default(self, table: str, action: str, params: Sequence[str]) -> object:
        return self._invoke(False, "table_set_default", table, action, list(params))

    def table_set_timeout(self, table: str, handle: int, ms: int) -> object:
        return self._invoke(False, "table_set_timeout", table, handle, ms)

    def register_read(self, name: str, index: int | None = None) -> object:
        return int(self._invoke(True, "register_read", name, index))

    def register_write(self, name: str, index: int, value: int) -> object:
        return self._invoke(False, "register_write", name, index, value)

    def register_reset(self, name: str) -> object:
        return self._invoke(False, "register_reset", name)

    def table_num_entries(self, table: str) -> object:
        return int(self._invoke(True, "table_num_entries", table))

    def table_get_default(self, table: str) -> tuple[str, list[int]]:
        entry = self._read_default(table)
        return entry.action, list(entry.params)

    def table_entries(self, table: str) -> list[tuple[int, list[object], str, list[int]]]:
        rows = self._read_entries(table)
        return [_entry_row(entry) for entry in rows]


class ThriftSwitchClient:
    """Async client of one BMv2 switch at `host:port` (Thrift; nothing arbitrates it: `primary`).

    Notifications are read from `notifications` (default: the address the switch reports) with
    `notification_factory` (default: a ctypes nanomsg SUB socket, `controller.switch.nanomsg`).
    """

    def __init__(
        self,
        reactor: ThreadReactor,
        host: str,
        port: int,
        *,
        notifications: str | None = None,
        learning_timeout_ms: int = LEARNING_TIMEOUT_MS,
        digest_widths: Sequence[tuple[str, int]] = DIGEST_FIELDS,
        api_factory: ApiFactory | None = None,
        notification_factory: NotificationFactory | None = None,
        probe: Probe = _probe_tcp,
        connect_timeout: float = 2.0,
        worker: WorkerThread | None = None,
    ) -> None:
        if api_factory is None:
            _p4utils_importable()
            api_factory = _p4utils_api
        self._reactor = reactor
        self._address = f"{host}:{port}"
        self._notifications = notifications
        self._learning_timeout_ms = learning_timeout_ms
        self._widths = tuple(digest_widths)
        self._notification_factory = notification_factory or functools.partial(
            nanomsg_subscribe, connect_timeout=connect_timeout, receive_timeout=RECEIVE_TIMEOUT
        )
        self._worker = worker or WorkerThread(reactor, "p4lb-thrift")
        self._api: Any = None
        self._connect_error = "not connected yet"
        self._reconnect = (api_factory, probe, host, port, connect_timeout)
        self._reconnect_at = 0.0
        self._subscriber: NotificationSocket | None = None
        self._poller: PollingThread | None = None
        self._on_digest: DigestCallback | None = None
        self._on_aged: AgedCallback | None = None
        self._closed = False
        self.malformed_notifications = 0
        self.skipped_learn_buffers = 0
        self._last_buffer: dict[tuple[int, int], int] = {}
        connecting = self._worker.run(
            self._connect, api_factory, probe, host, port, connect_timeout
        )
        connecting.addErrback(self._connect_failed)

    # -- connection -------------------------------------------------------------------------

    def _connect(
        self, api_factory: ApiFactory, probe: Probe, host: str, port: int, timeout: float
    ) -> None:
        # p4-utils' constructor calls sys.exit(1) when it cannot connect: check first.
        try:
            probe(host, port, timeout)
        except OSError as exc:
            self._connect_error = f"Thrift port {self._address} is not reachable ({exc})"
            raise SwitchError(self._connect_error, ErrorKind.UNAVAILABLE) from exc
        try:
            self._api = api_factory(host, port)
        except SwitchError as exc:
            self._connect_error = str(exc)
            raise
        except (Exception, SystemExit) as exc:
            self._connect_error = f"p4-utils could not open {self._address}: {explain(exc)}"
            raise SwitchError(self._connect_error, ErrorKind.UNAVAILABLE) from exc

    def _connect_failed(self, failure: Failure) -> None:
        log.error("BMv2 at %s: %s", self._address, failure.getErrorMessage())

    @property
    def primary(self) -> bool:
        """Always: Thrift has no arbitration between controllers."""
        return True

    async def connected(self) -> None:
        """Wait until the Thrift connection is up; raise `SwitchError` if it failed."""
        await self._worker.run(self._require_api, "connect")

    def _require_api(self, what: str) -> Any:
        """The API object (worker thread); a lost connection is opened again, at most once a
        second (BMv2 restarted: the controller then notices its empty tables and reprograms)."""
        if self._api is None and not self._closed and time.monotonic() >= self._reconnect_at:
            self._reconnect_at = time.monotonic() + RECONNECT_INTERVAL
            try:
                self._connect(*self._reconnect)
                log.info("BMv2 at %s: connected", self._address)
            except SwitchError:
                pass  # _connect_error says why
        if self._api is None:
            raise SwitchError(
                f"{self._address} {what}: {self._connect_error}", ErrorKind.UNAVAILABLE
            )
        return self._api

    def _lost(self, kind: ErrorKind, exc: BaseException) -> ErrorKind:
        """Forget a connection a transport error broke (the next call opens a new one)."""
        if kind is ErrorKind.UNAVAILABLE:
            self._api = None
            self._connect_error = f"connection lost ({explain(exc)})"
        return kind

    # -- runtime calls (worker thread) ----------------------------------------------------------

    def _invoke(self, expect_value: bool, operation: str, *args: Any) -> Any:
        api = self._require_api(operation)
        try:
            result = undecorated(api, operation)(*args)
        except Exception as exc:
            what = describe_call(operation, *args)
            kind = self._lost(error_kind(exc), exc)
            raise SwitchError(f"{self._address} {what}: {explain(exc)}", kind) from exc
        if expect_value and result is None:
            what = describe_call(operation, *args)
            raise SwitchError(f"{self._address} {what}: failed (p4-utils returned None)")
        return result

    def _read_entries(self, table: str) -> list[Any]:
        """BMv2's entries of a table (`bm_mt_get_entries`, as p4-utils' table_dump reads them)."""
        api = self._require_api("table_entries")
        try:
            from p4utils.utils.thrift_API import ResType  # noqa: PLC0415 - BMv2 only

            info = api.get_res("table", table, ResType.table)
            entries: list[Any] = api.client.bm_mt_get_entries(0, info.name)
        except Exception as exc:
            what = describe_call("table_entries", table)
            kind = self._lost(error_kind(exc), exc)
            raise SwitchError(f"{self._address} {what}: {explain(exc)}", kind) from exc
        return entries

    async def _call(self, expect_value: bool, operation: str, *args: Any) -> Any:
        if self._closed:
            what = describe_call(operation, *args)
            raise SwitchError(f"{what}: client is closed", ErrorKind.UNAVAILABLE)
        return await self._worker.run(self._invoke, expect_value, operation, *args)

    async def apply(self, ops: Sequence[SwitchOp]) -> list[Outcome]:
        """Carry out the operations in order on the worker thread (one hop for the batch)."""
        if self._closed:
            return [Outcome.failed(op, ErrorKind.UNAVAILABLE, "client is closed") for op in ops]
        return await self._worker.run(perform_all, _CheckedApi(self), ops, error_kind)

    async def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        """Add an entry and return its handle."""
        handle = await self._call(True, "table_add", table, action, list(keys), list(params), prio)
        try:
            return int(handle)
        except (TypeError, ValueError) as exc:
            what = describe_call("table_add", table, action, keys, params)
            raise SwitchError(f"{self._address} {what}: bad handle {handle!r}") from exc

    async def table_modify(
        self, table: str, action: str, handle: int, params: Sequence[str]
    ) -> None:
        """Change the action and parameters of the entry `handle`."""
        await self._call(True, "table_modify", table, action, handle, list(params))

    async def table_delete(self, table: str, handle: int) -> None:
        """Delete the entry `handle`."""
        await self._call(False, "table_delete", table, handle)

    async def table_clear(self, table: str) -> None:
        """Delete every entry of `table` (the default action stays)."""
        await self._call(False, "table_clear", table)

    async def table_set_default(self, table: str, action: str, params: Sequence[str]) -> None:
        """Set the default action of `table`."""
        await self._call(False, "table_set_default", table, action, list(params))

    async def table_set_timeout(self, table: str, handle: int, ms: int) -> None:
        """Give the entry `handle` an idle timeout."""
        await self._call(False, "table_set_timeout", table, handle, ms)

    async def table_num_entries(self, table: str) -> int:
        """Return the number of entries in `table`."""
        return int(await self._call(True, "table_num_entries", table))

    async def table_get_default(self, table: str) -> DefaultEntry:
        """Return the default action of `table` and its parameter values.

        p4-utils has no call for it: this asks BMv2 directly (`bm_mt_get_default_entry`, as
        runtime_CLI's table_dump does), through the API's own Thrift client and table names.
        """
        if self._closed:
            what = describe_call("table_get_default", table)
            raise SwitchError(f"{what}: client is closed", ErrorKind.UNAVAILABLE)
        return await self._worker.run(self._read_default, table)

    def _read_default(self, table: str) -> DefaultEntry:
        api = self._require_api("table_get_default")
        what = describe_call("table_get_default", table)
        names = list(api.switch_info.tables)
        found = [n for n in names if n == table or n.endswith("." + table)]
        if len(found) != 1:
            raise SwitchError(f"{self._address} {what}: unknown table", ErrorKind.INVALID)
        try:
            entry = api.client.bm_mt_get_default_entry(0, found[0])
        except Exception as exc:
            kind = self._lost(error_kind(exc), exc)
            raise SwitchError(f"{self._address} {what}: {explain(exc)}", kind) from exc
        if entry is None or not entry.action_name:
            raise SwitchError(f"{self._address} {what}: no default action", ErrorKind.INVALID)
        # Action data travels as big-endian byte strings, one per parameter (str on Thrift
        # builds that map binary to str, as runtime_CLI's hexstr allows for).
        params = [
            int.from_bytes(d if isinstance(d, bytes) else str(d).encode("latin-1"), "big")
            for d in entry.action_data
        ]
        return DefaultEntry.read(entry.action_name, params)

    # -- notifications ----------------------------------------------------------------------

    async def subscribe(self, on_digest: DigestCallback, on_aged: AgedCallback) -> None:
        """Lower the learning timeout, subscribe to notifications and start reading them."""
        if self._closed:
            raise SwitchError("subscribe: client is closed")
        self._on_digest = on_digest
        self._on_aged = on_aged
        if self._poller is not None:
            return
        subscriber = await self._worker.run(self._open_notifications)
        self._subscriber = subscriber
        self._poller = PollingThread(
            self._reactor,
            "p4lb-bmv2-notifications",
            subscriber.receive,
            self._received,
            self._stream_failed,
        )
        self._poller.start()

    def _open_notifications(self) -> NotificationSocket:
        api = self._require_api("subscribe")
        client = api.client
        try:
            address = self._notifications
            if address is None:
                info = client.bm_mgmt_get_info()
                address = info.notifications_socket or (
                    f"ipc:///tmp/bmv2-{info.device_id}-notifications.ipc"
                )
            # BMv2 holds a lone digest for up to 1 s unless the learning timeout is lowered.
            for list_id, widths in learn_list_widths(client.bm_get_config()).items():
                check_layout(widths, self._widths)
                client.bm_learning_set_timeout(0, list_id, self._learning_timeout_ms)
        except SwitchError:
            raise
        except Exception as exc:
            raise SwitchError(f"{self._address} subscribe: {explain(exc)}") from exc
        try:
            return self._notification_factory(address)
        except SwitchError as exc:  # e.g. libnanomsg missing, nobody publishing at `address`
            raise SwitchError(f"{self._address} subscribe: {exc}") from exc

    def _received(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            message = decode_notification(data, self._widths)
        except SwitchError as exc:
            self.malformed_notifications += 1
            log.warning("BMv2 %s: dropped notification: %s", self._address, exc)
            return
        if isinstance(message, LearnMessage):
            try:
                if self._on_digest is not None:
                    for digest in message.digests:
                        self._on_digest(digest)
            finally:
                self._acknowledge(message)
                self._acknowledge_skipped(message)
        elif isinstance(message, AgeingMessage) and self._on_aged is not None:
            self._on_aged(list(message.handles))

    def _acknowledge(self, message: LearnMessage) -> None:
        self._ack_buffers(message.cxt_id, message.list_id, [message.buffer_id])

    def _acknowledge_skipped(self, message: LearnMessage) -> None:
        # BMv2 withholds every later sample identical to an unacknowledged one, so a learn
        # message we never saw (sent before we subscribed, or lost) would silence its
        # connections' digests for good. Acknowledging an id twice or an unknown id is harmless.
        stream = (message.cxt_id, message.list_id)
        previous = self._last_buffer.get(stream, -1)
        self._last_buffer[stream] = max(previous, message.buffer_id)
        skipped = range(max(previous + 1, message.buffer_id - MAX_SKIPPED_ACKS), message.buffer_id)
        if skipped:
            self.skipped_learn_buffers += len(skipped)
            log.warning(
                "BMv2 %s: %d learn buffers before %d were never received; acknowledging them",
                self._address,
                len(skipped),
                message.buffer_id,
            )
            self._ack_buffers(message.cxt_id, message.list_id, list(skipped))

    def _ack_buffers(self, cxt_id: int, list_id: int, buffer_ids: list[int]) -> None:
        def ack() -> None:
            client = self._require_api("bm_learning_ack_buffer").client
            for buffer_id in buffer_ids:
                client.bm_learning_ack_buffer(cxt_id, list_id, buffer_id)

        acked = self._worker.run(ack)
        acked.addErrback(
            lambda f: log.warning("BMv2 %s: ack failed: %s", self._address, f.getErrorMessage())
        )

    def _stream_failed(self, exc: BaseException) -> None:
        log.error("BMv2 %s: notifications stream failed: %s", self._address, explain(exc))

    async def close(self) -> None:
        """Stop reading notifications and release the worker thread."""
        if self._closed:
            return
        self._closed = True
        poller, subscriber = self._poller, self._subscriber
        if poller is not None:
            poller.stop()
            await self._worker.run(poller.join, 5.0)
        if subscriber is not None:
            await self._worker.run(subscriber.close)
        self._worker.stop()


def _p4utils_importable() -> None:
    thrift_api_class()
