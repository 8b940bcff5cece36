"""The controller's ThriftSwitchClient (p4-utils) against a real simple_switch (skipped unless
p4c, simple_switch, BMv2's Python modules and p4-utils are present).

Notifications go through the client's default socket (ctypes on BMv2's libnanomsg); the harness
leaves digests alone here, so only the client reads and acknowledges them.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from bmv2_harness import (
    Bmv2Switch,
    Compiled,
    add_bmv2_python_path,
    compile_once,
)
from twisted.internet import defer
from twisted.python.failure import Failure

from controller.switch.api import DefaultEntry, Digest, SwitchError
from controller.switch.testing import ThreadedClock

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "p4src" / "loadbalancer.p4"
MISSING = [tool for tool in ("p4c", "simple_switch") if shutil.which(tool) is None]
add_bmv2_python_path()
NEEDED = ("runtime_CLI", "bm_runtime", "sswitch_runtime", "thrift", "p4utils")
NO_PYTHON = [m for m in NEEDED if importlib.util.find_spec(m) is None]

pytestmark = [
    pytest.mark.bmv2,
    pytest.mark.skipif(bool(MISSING), reason=f"not on PATH: {', '.join(MISSING)}"),
    pytest.mark.skipif(bool(NO_PYTHON), reason=f"Python modules missing: {NO_PYTHON}"),
]

# 10.0.1.2:40000 -> VIP 10.0.0.100:80 TCP SYN (flow hash 0x82c6, see tests/conformance/vip_tcp.vec)
SYN = bytes.fromhex(
    "00010a00010100000a000102080045000028000100004006656a0a0001020a000064"
    "9c400050000003e80000000050022000da040000"
)
# 10.0.1.2:40000 -> 10.0.2.100:80 UDP, not a VIP: routed only
TO_SERVER = bytes.fromhex(
    "00010a00010100000a00010208004500001c000100004011656e0a0001020a0002649c40005000080000"
)
ROUTE = ["2", "00:01:0a:00:02:01", "00:00:0a:00:02:02"]


@pytest.fixture(scope="module")
def compiled() -> Compiled:
    """The program compiled once per session."""
    result = compile_once(PROGRAM)
    assert result.returncode == 0, result.output
    return result


@pytest.fixture
def switch(compiled: Compiled, tmp_path: Path) -> Iterator[Bmv2Switch]:
    """A fresh simple_switch whose digests only the client under test reads."""
    with Bmv2Switch(compiled.json_path, tmp_path, collect_digests=False) as sw:
        yield sw


@pytest.fixture
def client(switch: Bmv2Switch) -> Iterator[tuple[Any, ThreadedClock]]:
    """A connected ThriftSwitchClient (default notification socket, address from the switch)."""
    from controller.switch.thrift_client import ThriftSwitchClient

    clock = ThreadedClock()
    thrift = ThriftSwitchClient(clock, "127.0.0.1", switch.thrift_port)
    clock.run_from_threads(1)
    ok(run(clock, thrift.connected()))
    yield thrift, clock
    ok(run(clock, thrift.close()))


def run(clock: ThreadedClock, call: Any) -> defer.Deferred[Any]:
    """Start a client coroutine and run thread calls until it has finished."""
    d = defer.ensureDeferred(call)
    while not d.called:
        clock.run_from_threads(1)  # raises TimeoutError after 10 s without a thread call
    return d


def _outcome(d: defer.Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the call has not finished"
    return box[0]


def ok(d: defer.Deferred[Any]) -> Any:
    """The result of a finished Deferred (its exception re-raised if it failed)."""
    result = _outcome(d)
    if isinstance(result, Failure):
        result.raiseException()
    return result


def failed(d: defer.Deferred[Any]) -> BaseException:
    """The exception of a finished, failed Deferred."""
    result = _outcome(d)
    assert isinstance(result, Failure), f"succeeded with {result!r}"
    assert result.value is not None
    return result.value


def test_tables_and_default_actions(client: tuple[Any, ThreadedClock], switch: Bmv2Switch) -> None:
    """Entries and default actions written through p4-utils read back from BMv2 and act on
    packets."""
    thrift, clock = client
    handle = ok(run(clock, thrift.table_add("ipv4_lpm", "forward", ["10.0.2.0/24"], ROUTE)))
    assert isinstance(handle, int)
    assert ok(run(clock, thrift.table_num_entries("ipv4_lpm"))) == 1
    other = ["3", "00:01:0a:00:00:01", "00:00:0a:00:00:02"]
    ok(run(clock, thrift.table_modify("ipv4_lpm", "forward", handle, other)))
    assert [port for port, _ in switch.process(1, TO_SERVER)] == [3]  # the modified route
    ok(run(clock, thrift.table_clear("ipv4_lpm")))
    assert ok(run(clock, thrift.table_num_entries("ipv4_lpm"))) == 0
    initial = ok(run(clock, thrift.table_get_default("version_config")))
    assert initial == DefaultEntry("set_versions", (0, 0, 0, 0, 0))
    params = ["3", "1", "4294967295", "0", "77"]
    ok(run(clock, thrift.table_set_default("version_config", "set_versions", params)))
    read = ok(run(clock, thrift.table_get_default("version_config")))
    assert read == DefaultEntry("set_versions", (3, 1, 4294967295, 0, 77))


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda t: t.table_add("ipv4_lpm", "forward", ["10.0.2.0/24"], ROUTE), "DUPLICATE"),
        (lambda t: t.table_delete("ipv4_lpm", 12345), "INVALID_HANDLE"),
        (lambda t: t.table_add("conn_table", "rewrite_dst", ["1"], ["1", "1"]), "key"),
    ],
)
def test_errors_become_switch_errors(
    client: tuple[Any, ThreadedClock], call: Any, needle: str
) -> None:
    """What p4-utils only prints reaches the controller as SwitchError."""
    thrift, clock = client
    ok(run(clock, thrift.table_add("ipv4_lpm", "forward", ["10.0.2.0/24"], ROUTE)))
    error = failed(run(clock, call(thrift)))
    assert isinstance(error, SwitchError)
    assert needle.lower() in str(error).lower()


NEW_CONN = Digest("new_conn", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 0, "10.0.2.3", 8080)


def wait_for(clock: ThreadedClock, received: Sequence[object], count: int) -> None:
    """Run thread calls until `received` holds `count` items (each wait bounded by 10 s)."""
    while len(received) < count:
        clock.run_from_threads(1)  # raises TimeoutError after 10 s without a thread call


def test_digests_arrive_through_the_ctypes_socket_and_are_acknowledged(
    client: tuple[Any, ThreadedClock], switch: Bmv2Switch
) -> None:
    """A VIP SYN's new_conn digest arrives decoded; a repeat arrives only because it was acked."""
    thrift, clock = client
    digests: list[Digest] = []
    setup = [
        thrift.table_add("ipv4_lpm", "forward", ["10.0.2.0/24"], ROUTE),
        thrift.table_add("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["0", "0"]),
        thrift.table_add("dip_table", "rewrite_dst", ["0", "0", "0/0"], ["10.0.2.3", "8080"]),
    ]
    for call in setup:
        ok(run(clock, call))
    ok(run(clock, thrift.subscribe(digests.append, lambda handles: None)))
    [(port, _)] = switch.process(1, SYN)
    assert port == 2
    wait_for(clock, digests, 1)
    assert digests == [NEW_CONN]
    # The worker runs calls in order: once this returns, the client's ack has reached BMv2.
    ok(run(clock, thrift.table_num_entries("conn_table")))
    # No conn_table entry was added, so the same SYN raises the same sample; BMv2 withholds a
    # sample identical to an unacknowledged one, so it arrives only if the ack went through.
    switch.process(1, SYN)
    wait_for(clock, digests, 2)
    assert digests == [NEW_CONN, NEW_CONN]
    assert thrift.malformed_notifications == 0


def test_ageing_notices_reach_the_controller(
    client: tuple[Any, ThreadedClock], switch: Bmv2Switch
) -> None:
    """An idle conn_table entry with a timeout is reported by BMv2's AGE notification."""
    thrift, clock = client
    aged: list[Sequence[int]] = []
    ok(run(clock, thrift.subscribe(lambda digest: None, aged.append)))
    keys = ["10.0.1.2", "10.0.0.100", "40000", "80", "6"]
    entry = ok(
        run(clock, thrift.table_add("conn_table", "rewrite_dst", keys, ["10.0.2.3", "8080"]))
    )
    ok(run(clock, thrift.table_set_timeout("conn_table", entry, 100)))
    wait_for(clock, aged, 1)  # BMv2 sweeps every second: an event, bounded by the wait
    assert entry in aged[0]


def test_subscribing_where_nobody_publishes_fails_with_the_address(
    switch: Bmv2Switch, tmp_path: Path
) -> None:
    """A wrong notifications address is a SwitchError naming it, not a silent lack of digests."""
    from controller.switch.thrift_client import ThriftSwitchClient

    nowhere = f"ipc://{tmp_path}/nobody.ipc"
    clock = ThreadedClock()
    thrift = ThriftSwitchClient(
        clock, "127.0.0.1", switch.thrift_port, notifications=nowhere, connect_timeout=0.5
    )
    clock.run_from_threads(1)
    ok(run(clock, thrift.connected()))
    error = failed(run(clock, thrift.subscribe(lambda digest: None, lambda handles: None)))
    assert isinstance(error, SwitchError)
    assert nowhere in str(error) and "no connection" in str(error)
    ok(run(clock, thrift.close()))
