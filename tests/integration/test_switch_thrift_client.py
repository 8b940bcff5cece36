"""ThriftSwitchClient against a fake with p4-utils' interface (prints errors, returns None)."""

from __future__ import annotations

import functools
import json
import queue
import sys
import tempfile
import types
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from controller.switch import nanomsg
from controller.switch.api import DefaultEntry, Digest, ErrorKind, SwitchError
from controller.switch.notifications import AgeingMessage, LearnMessage, encode_ageing, encode_learn
from controller.switch.testing import ThreadedClock
from controller.switch.thrift_client import ThriftSwitchClient

sync = SynchronousTestCase()

# A stand-in for bm_runtime.standard.ttypes: Thrift exceptions carry a numeric code.
ttypes = types.ModuleType("fake_bm_ttypes")


class TableOperationErrorCode:
    _VALUES_TO_NAMES: ClassVar[dict[int, str]] = {
        1: "TABLE_FULL",
        2: "INVALID_HANDLE",
        7: "DUPLICATE_ENTRY",
    }


class InvalidTableOperation(Exception):  # noqa: N818 - Thrift's name
    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code


class UIn_Error(Exception):  # noqa: N801 - p4-utils' name
    pass


ttypes.TableOperationErrorCode = TableOperationErrorCode  # type: ignore[attr-defined]
InvalidTableOperation.__module__ = ttypes.__name__
sys.modules[ttypes.__name__] = ttypes


def handle_bad_input(f: Callable[..., Any]) -> Callable[..., Any]:
    """Like p4-utils: print the error and return None."""

    @functools.wraps(f)
    def handle(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except UIn_Error as e:
            print("Error:", e)
        except InvalidTableOperation as e:
            print(f"Invalid table operation ({TableOperationErrorCode._VALUES_TO_NAMES[e.code]})")
        return None

    return handle


class FakeBmClient:
    """The raw Thrift client (`api.client`) parts the controller uses."""

    def __init__(self) -> None:
        self.learning_timeouts: dict[int, int] = {}
        self.acked: list[tuple[int, int, int]] = []
        self.defaults: dict[str, tuple[str, list[bytes]]] = {}

    def bm_mt_get_default_entry(self, cxt_id: int, table: str) -> Any:
        action, data = self.defaults.get(table, ("NoAction", []))
        return types.SimpleNamespace(action_type=1, action_name=action, action_data=data)

    def bm_mgmt_get_info(self) -> Any:
        return types.SimpleNamespace(device_id=0, notifications_socket="ipc:///tmp/fake.ipc")

    def bm_get_config(self) -> str:
        return json.dumps({"learn_lists": [{"id": 1, "name": "digest_t", "elements": []}]})

    def bm_learning_set_timeout(self, cxt_id: int, list_id: int, ms: int) -> None:
        self.learning_timeouts[list_id] = ms

    def bm_learning_ack_buffer(self, cxt_id: int, list_id: int, buffer_id: int) -> None:
        self.acked.append((cxt_id, list_id, buffer_id))


class FakeThriftAPI:
    """The SimpleSwitchThriftAPI methods the controller uses, with p4-utils' error style."""

    TABLES: ClassVar[dict[str, int]] = {"conn_table": 2, "ipv4_lpm": 1}

    def __init__(self, port: int, thrift_ip: str = "localhost") -> None:
        self.client = FakeBmClient()
        self.entries: dict[str, dict[int, tuple[tuple[str, ...], str, tuple[str, ...]]]] = {
            t: {} for t in self.TABLES
        }
        names = [*self.TABLES, "version_config"]
        self.switch_info = types.SimpleNamespace(tables={f"LbIngress.{t}": t for t in names})
        self.next_handle = 0

    def _table(self, name: str) -> dict[int, tuple[tuple[str, ...], str, tuple[str, ...]]]:
        if name not in self.entries:
            raise UIn_Error(f"Unknown table {name}")
        return self.entries[name]

    @handle_bad_input
    def table_add(
        self,
        table_name: str,
        action_name: str,
        match_keys: list[str],
        action_params: Sequence[str] = (),
        prio: int = 0,
    ) -> int:
        entries = self._table(table_name)
        if len(match_keys) != self.TABLES[table_name]:
            raise UIn_Error(f"Table {table_name} needs {self.TABLES[table_name]} key fields")
        if any(keys == tuple(match_keys) for keys, _, _ in entries.values()):
            raise InvalidTableOperation(7)
        handle = self.next_handle
        self.next_handle += 1
        entries[handle] = (tuple(match_keys), action_name, tuple(action_params))
        print("Entry has been added with handle", handle)
        return handle

    @handle_bad_input
    def table_modify(
        self,
        table_name: str,
        action_name: str,
        entry_handle: int,
        action_params: Sequence[str] = (),
    ) -> int:
        entries = self._table(table_name)
        if entry_handle not in entries:
            raise InvalidTableOperation(2)
        entries[entry_handle] = (entries[entry_handle][0], action_name, tuple(action_params))
        return entry_handle

    @handle_bad_input
    def table_delete(self, table_name: str, entry_handle: int, quiet: bool = False) -> None:
        entries = self._table(table_name)
        if entry_handle not in entries:
            raise InvalidTableOperation(2)
        del entries[entry_handle]

    @handle_bad_input
    def table_num_entries(self, table_name: str) -> int:
        return len(self._table(table_name))

    @handle_bad_input
    def table_set_default(
        self, table_name: str, action_name: str, action_params: Sequence[str] = ()
    ) -> None:
        if f"LbIngress.{table_name}" not in self.switch_info.tables:
            raise UIn_Error(f"Unknown table {table_name}")
        data = [int(p).to_bytes(4, "big") for p in action_params]  # BMv2 sends bytes per param
        self.client.defaults[f"LbIngress.{table_name}"] = (f"LbIngress.{action_name}", data)


class FakeSubscriber:
    """A notifications socket fed by the test."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.closed = False

    def receive(self) -> bytes | None:
        try:
            return self.messages.get(timeout=0.05)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.closed = True


def no_probe(host: str, port: int, timeout: float) -> None:
    pass


def make_client(
    clock: ThreadedClock, **options: Any
) -> tuple[ThriftSwitchClient, list[FakeThriftAPI]]:
    made: list[FakeThriftAPI] = []

    def factory(host: str, port: int) -> FakeThriftAPI:
        made.append(FakeThriftAPI(port, host))
        return made[-1]

    options.setdefault("probe", no_probe)
    client = ThriftSwitchClient(clock, "127.0.0.1", 9090, api_factory=factory, **options)
    clock.run_from_threads(1)  # the connection attempt
    return client, made


def run(clock: ThreadedClock, call: Any, thread_calls: int = 1) -> defer.Deferred[Any]:
    d = defer.ensureDeferred(call)
    clock.run_from_threads(thread_calls)
    return d


NEW = Digest("new_conn", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 1, "10.1.3.2", 8080)


def test_table_add_returns_the_handle_and_the_entry_exists() -> None:
    clock = ThreadedClock()
    client, _ = make_client(clock)
    handle = sync.successResultOf(
        run(
            clock,
            client.table_add(
                "ipv4_lpm",
                "forward",
                ["10.1.3.2/32"],
                ["3", "aa:bb:cc:dd:ee:ff", "00:00:0a:01:03:02"],
            ),
        )
    )
    assert handle == 0
    assert sync.successResultOf(run(clock, client.table_num_entries("ipv4_lpm"))) == 1


@pytest.mark.parametrize(
    ("name", "call", "needle"),
    [
        (
            "duplicate entry",
            lambda c: c.table_add("ipv4_lpm", "forward", ["10.0.0.0/8"], []),
            "DUPLICATE_ENTRY",
        ),
        (
            "wrong key count",
            lambda c: c.table_add("conn_table", "rewrite_dst", ["1"], []),
            "needs 2 key fields",
        ),
        ("unknown table", lambda c: c.table_num_entries("nope"), "Unknown table nope"),
        ("delete of a missing handle", lambda c: c.table_delete("ipv4_lpm", 99), "INVALID_HANDLE"),
        (
            "modify of a missing handle",
            lambda c: c.table_modify("ipv4_lpm", "drop", 99, []),
            "INVALID_HANDLE",
        ),
        (
            "default of an unknown table",
            lambda c: c.table_set_default("bloom_9", "drop", []),
            "Unknown table bloom_9",
        ),
        (
            "read of an unknown table's default",
            lambda c: c.table_get_default("bloom_9"),
            "unknown table",
        ),
    ],
)
def test_errors_p4utils_would_only_print_become_switch_errors(
    name: str, call: Any, needle: str
) -> None:
    clock = ThreadedClock()
    client, _ = make_client(clock)
    sync.successResultOf(run(clock, client.table_add("ipv4_lpm", "forward", ["10.0.0.0/8"], [])))
    failure = sync.failureResultOf(run(clock, call(client)), SwitchError)
    assert needle in str(failure.value), name
    assert "127.0.0.1:9090" in str(failure.value)


def test_without_the_original_function_a_none_result_is_still_an_error() -> None:
    class Undecoratable(FakeThriftAPI):
        def table_add(self, *args: Any, **kwargs: Any) -> Any:
            print("Could not add entry")
            return None

    clock = ThreadedClock()
    client = ThriftSwitchClient(
        clock, "h", 1, api_factory=lambda h, p: Undecoratable(p, h), probe=no_probe
    )
    clock.run_from_threads(1)
    failure = sync.failureResultOf(
        run(clock, client.table_add("ipv4_lpm", "forward", ["10.0.0.0/8"], [])), SwitchError
    )
    assert "returned None" in str(failure.value)
    assert "['10.0.0.0/8']" in str(failure.value)


def test_default_actions_are_written_and_read_back_in_order() -> None:
    clock = ThreadedClock()
    client, _ = make_client(clock)
    writes = [
        defer.ensureDeferred(
            client.table_set_default("version_config", "set_versions", [str(v), "7", "0", "0", "9"])
        )
        for v in (1, 2, 3)
    ]
    read = defer.ensureDeferred(client.table_get_default("version_config"))
    clock.run_from_threads(4)
    assert all(sync.successResultOf(w) is None for w in writes)
    assert sync.successResultOf(read) == DefaultEntry("set_versions", (3, 7, 0, 0, 9))


def test_an_unreachable_thrift_port_fails_every_call_with_a_clear_message() -> None:
    def refuse(host: str, port: int, timeout: float) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    clock = ThreadedClock()
    client, made = make_client(clock, probe=refuse)
    failure = sync.failureResultOf(run(clock, client.table_num_entries("ipv4_lpm")), SwitchError)
    assert "127.0.0.1:9090 is not reachable" in str(failure.value)
    assert made == []  # p4-utils' constructor (which would sys.exit) was never called
    assert "not reachable" in str(
        sync.failureResultOf(run(clock, client.connected()), SwitchError).value
    )


def test_a_p4utils_sys_exit_becomes_a_switch_error() -> None:
    def exits(host: str, port: int) -> Any:
        sys.exit(1)

    clock = ThreadedClock()
    client = ThriftSwitchClient(clock, "h", 1, api_factory=exits, probe=no_probe)
    clock.run_from_threads(1)
    failure = sync.failureResultOf(run(clock, client.connected()), SwitchError)
    assert "could not open h:1" in str(failure.value)


def test_missing_p4utils_is_reported_with_install_instructions() -> None:
    pytest.importorskip("controller")  # always present; p4utils is what we probe
    try:
        import p4utils  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("p4-utils is installed here")
    with pytest.raises(SwitchError, match="p4-utils"):
        ThriftSwitchClient(ThreadedClock(), "127.0.0.1", 9090)


def test_digests_are_delivered_acknowledged_and_the_learning_timeout_lowered() -> None:
    clock = ThreadedClock()
    subscribers: list[FakeSubscriber] = []

    def subscriber(address: str) -> FakeSubscriber:
        subscribers.append(FakeSubscriber(address))
        return subscribers[-1]

    client, (api,) = make_client(clock, notification_factory=subscriber, learning_timeout_ms=5)
    digests: list[Digest] = []
    aged: list[list[int]] = []
    sync.successResultOf(
        run(clock, client.subscribe(digests.append, lambda h: aged.append(list(h))))
    )
    (sub,) = subscribers
    assert sub.address == "ipc:///tmp/fake.ipc"
    assert api.client.learning_timeouts == {1: 5}

    sub.messages.put(encode_learn(LearnMessage(0, 0, 1, 0, (NEW, NEW))))
    clock.run_from_threads(1)  # the message reaches the reactor
    assert digests == [NEW, NEW]
    clock.run_from_threads(1)  # the acknowledgement went through the worker
    assert api.client.acked == [(0, 1, 0)]

    sub.messages.put(encode_ageing(AgeingMessage(0, 0, 3, 0, (5, 6))))
    clock.run_from_threads(1)
    assert aged == [[5, 6]]

    sub.messages.put(b"LEA|" + bytes(10))
    sub.messages.put(encode_learn(LearnMessage(0, 0, 1, 1, (NEW,))))
    clock.run_from_threads(2)
    assert client.malformed_notifications == 1
    assert len(digests) == 3

    closing = defer.ensureDeferred(client.close())
    clock.run_from_threads(3)
    sync.successResultOf(closing)
    assert sub.closed
    failure = sync.failureResultOf(
        defer.ensureDeferred(client.table_num_entries("ipv4_lpm")), SwitchError
    )
    assert "closed" in str(failure.value)


def test_learn_buffers_never_received_are_acknowledged_so_bmv2_does_not_withhold_digests() -> None:
    clock = ThreadedClock()
    subscribers: list[FakeSubscriber] = []

    def subscriber(address: str) -> FakeSubscriber:
        subscribers.append(FakeSubscriber(address))
        return subscribers[-1]

    client, (api,) = make_client(clock, notification_factory=subscriber)
    digests: list[Digest] = []
    sync.successResultOf(run(clock, client.subscribe(digests.append, lambda h: None)))
    (sub,) = subscribers
    sub.messages.put(encode_learn(LearnMessage(0, 0, 1, 2, (NEW,))))  # 0 and 1 came before us
    clock.run_from_threads(3)
    sub.messages.put(encode_learn(LearnMessage(0, 0, 1, 5, (NEW,))))  # 3 and 4 were lost
    clock.run_from_threads(3)
    assert len(digests) == 2
    assert sorted(buffer for _, _, buffer in api.client.acked) == [0, 1, 2, 3, 4, 5]
    assert client.skipped_learn_buffers == 4


def test_subscribing_to_a_switch_with_another_digest_layout_fails() -> None:
    class OtherProgram(FakeBmClient):
        def bm_get_config(self) -> str:
            fields = [["f0", 8, False], ["f1", 48, False]]
            return json.dumps(
                {
                    "header_types": [{"name": "scalars_0", "fields": fields}],
                    "headers": [{"name": "scalars", "header_type": "scalars_0"}],
                    "learn_lists": [
                        {
                            "id": 1,
                            "elements": [
                                {"value": ["scalars", "f0"]},
                                {"value": ["scalars", "f1"]},
                            ],
                        }
                    ],
                }
            )

    clock = ThreadedClock()
    client, (api,) = make_client(clock, notification_factory=FakeSubscriber)
    api.client = OtherProgram()
    failure = sync.failureResultOf(
        run(clock, client.subscribe(lambda d: None, lambda h: None)), SwitchError
    )
    assert "controller expects" in str(failure.value)
    assert api.client.learning_timeouts == {}


def test_the_default_notification_socket_is_nanomsg_through_ctypes() -> None:
    try:
        nanomsg.load_library()
    except SwitchError as exc:
        pytest.skip(f"libnanomsg not loadable: {exc}")
    with tempfile.TemporaryDirectory(prefix="nn") as directory:
        address = f"ipc://{directory}/notifications.ipc"
        publisher = nanomsg.NanomsgSocket(nanomsg.PUB, address, bind=True)
        clock = ThreadedClock()
        client, (api,) = make_client(clock, notifications=address)
        digests: list[Digest] = []
        sync.successResultOf(run(clock, client.subscribe(digests.append, lambda h: None)))
        publisher.wait_for_peer(5.0)
        publisher.send(encode_learn(LearnMessage(0, 0, 1, 0, (NEW,))))
        clock.run_from_threads(2)  # the delivery, then the acknowledgement
        assert digests == [NEW]
        assert api.client.acked == [(0, 1, 0)]
        closing = defer.ensureDeferred(client.close())
        while not closing.called:  # joining the reader thread, then closing its socket
            clock.run_from_threads(1)
        sync.successResultOf(closing)
        publisher.close()


@pytest.mark.usefixtures("without_libnanomsg")
def test_without_libnanomsg_subscribing_says_bmv2s_libnanomsg_is_needed() -> None:
    clock = ThreadedClock()
    client, (api,) = make_client(clock)
    failure = sync.failureResultOf(
        run(clock, client.subscribe(lambda d: None, lambda h: None)), SwitchError
    )
    assert "BMv2's libnanomsg" in str(failure.value)
    assert "127.0.0.1:9090 subscribe" in str(failure.value)
    assert api.client.learning_timeouts == {1: 10}  # the switch side was set up first


class TTransportException(Exception):  # noqa: N818 - Thrift's name
    """What the Thrift runtime raises when the switch's socket goes away."""


def test_a_broken_connection_is_opened_again_and_a_restarted_switch_answers() -> None:
    clock = ThreadedClock()
    client, made = make_client(clock)
    added = run(clock, client.table_add("ipv4_lpm", "drop", ["10.0.0.0/8"], []))
    assert sync.successResultOf(added) == 0

    def gone(*args: Any, **kwargs: Any) -> Any:
        raise TTransportException("TSocket read 0 bytes")

    made[0]._table = gone  # type: ignore[method-assign]  # the switch process died
    failed = run(clock, client.table_add("ipv4_lpm", "drop", ["10.1.0.0/16"], []))
    assert sync.failureResultOf(failed, SwitchError).value.kind is ErrorKind.UNAVAILABLE
    # The switch is back (empty): the next call connects afresh and reaches the new process.
    again = run(clock, client.table_add("ipv4_lpm", "drop", ["10.1.0.0/16"], []))
    assert sync.successResultOf(again) == 0
    assert len(made) == 2 and made[1].entries["ipv4_lpm"]
