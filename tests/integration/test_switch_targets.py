"""The switch-level contract the core relies on, against the target `P4LB_TEST_SWITCH` names.

`model` is the in-process reference model; `p4lb-switch` starts p4lb-switch's server in this
process on a free loopback port and talks P4Runtime to it (`p4rt://`); by default the suite runs
against both. `thrift://HOST:PORT` is BMv2's simple_switch running p4src/loadbalancer.p4;
`p4rt://HOST:PORT[?device_id=N][&election_id=M]` is any P4Runtime target already running the
program (a running p4lb-switch, or simple_switch_grpc: the bmv2 tier runs this suite so); `skip`
skips the suite.
The same tests hold every client to the same outcomes and error kinds, which is all the core
sees of a target. Each test deletes what it added.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest
from twisted.internet import defer

from controller.core.ops import (
    EntryCount,
    ErrorKind,
    Outcome,
    Owner,
    SwitchOp,
    TableDelete,
    TableInsert,
    TableModify,
    TableRead,
)
from controller.switch.api import SwitchClient
from controller.switch.connect import connect_switch
from controller.switch.testing import ThreadedClock
from p4model import Switch
from p4model.server import SwitchServer
from p4src.contract import DIP_REVERSE, REWRITE_SRC, SET_POOL, VIP_TABLE, load_settings

OWNER = Owner.STARTUP


class Target:
    """A switch client and the reactor its results come back on."""

    def __init__(self, client: SwitchClient, clock: ThreadedClock) -> None:
        self.client = client
        self.clock = clock
        self.added: list[tuple[str, int]] = []

    def apply(self, *ops: SwitchOp) -> list[Outcome]:
        """Carry out operations and wait for their outcomes (worker threads included)."""
        done = defer.ensureDeferred(self.client.apply(list(ops)))
        while not done.called:
            self.clock.run_from_threads(1)
        results: list[Outcome] = []
        done.addCallback(results.extend)
        for outcome in results:
            if outcome.ok and isinstance(outcome.op, TableInsert):
                assert outcome.handle is not None
                self.added.append((outcome.op.table, outcome.handle))
        return results

    def cleanup(self) -> None:
        """Delete every entry the test added (ignoring ones it deleted itself)."""
        self.apply(*(TableDelete(OWNER, table, handle) for table, handle in self.added))
        done = defer.ensureDeferred(self.client.close())
        while not done.called:
            self.clock.run_from_threads(1)


@contextlib.contextmanager
def running_switch() -> Iterator[str]:
    """p4lb-switch's server (no ports) on a free loopback port; its P4Runtime address."""
    with SwitchServer(Switch(), [], "127.0.0.1:0").running() as server:
        yield server.p4runtime_address


@pytest.fixture(params=os.environ.get("P4LB_TEST_SWITCH", "model p4lb-switch").split())
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    spec: str = request.param
    if spec == "skip":
        pytest.skip("P4LB_TEST_SWITCH=skip")
    with contextlib.ExitStack() as stack:
        if spec == "p4lb-switch":
            spec = f"p4rt://{stack.enter_context(running_switch())}"
        clock = ThreadedClock()
        target = Target(connect_switch(spec, clock), clock)
        yield target
        target.cleanup()


def vip(n: int, pool: int = 1) -> TableInsert:
    keys = (f"10.200.{n // 250}.{n % 250 + 1}", "80", "6")
    return TableInsert(OWNER, VIP_TABLE, keys, SET_POOL, (str(pool), "0"))


def test_an_insert_gives_a_handle_and_a_duplicate_is_refused_as_one(target: Target) -> None:
    (count,) = target.apply(EntryCount(OWNER, VIP_TABLE))
    added, again = target.apply(vip(1), vip(1))
    assert added.ok and added.handle is not None
    assert (again.ok, again.error) == (False, ErrorKind.DUPLICATE)
    (after,) = target.apply(EntryCount(OWNER, VIP_TABLE))
    assert count.value is not None and after.value == count.value + 1


def test_deleting_or_modifying_a_missing_entry_is_not_found(target: Target) -> None:
    (added,) = target.apply(vip(2))
    assert added.handle is not None
    deleted, gone, modified = target.apply(
        TableDelete(OWNER, VIP_TABLE, added.handle),
        TableDelete(OWNER, VIP_TABLE, added.handle),
        TableModify(OWNER, VIP_TABLE, added.handle, SET_POOL, ("2", "0")),
    )
    assert deleted.ok
    assert (gone.ok, gone.error) == (False, ErrorKind.NOT_FOUND)
    assert (modified.ok, modified.error) == (False, ErrorKind.NOT_FOUND)


def test_a_malformed_request_is_invalid_and_later_operations_still_run(target: Target) -> None:
    bad = TableInsert(OWNER, VIP_TABLE, ("10.200.9.9", "80"), SET_POOL, ("1", "0"))  # a key short
    outcomes = target.apply(vip(3), bad, vip(4))
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[1].error is ErrorKind.INVALID


def test_a_full_table_refuses_an_insert_as_table_full(target: Target) -> None:
    size = load_settings().dip_reverse_size
    (count,) = target.apply(EntryCount(OWNER, DIP_REVERSE))
    assert count.value is not None
    room = size - count.value
    inserts = [
        TableInsert(
            OWNER,
            DIP_REVERSE,
            (f"10.201.{n // 250}.{n % 250 + 1}", "8080", "6"),
            REWRITE_SRC,
            ("10.0.0.100", "80"),
        )
        for n in range(room + 1)
    ]
    outcomes = target.apply(*inserts)
    assert all(o.ok for o in outcomes[:-1])
    assert (outcomes[-1].ok, outcomes[-1].error) == (False, ErrorKind.TABLE_FULL)


def test_a_table_read_back_gives_each_entry_as_numbers_with_its_handle(target: Target) -> None:
    (added,) = target.apply(vip(5, pool=3))
    (read,) = target.apply(TableRead(OWNER, VIP_TABLE))
    assert read.ok
    mine = [e for e in read.entries if e.handle == added.handle]
    assert len(mine) == 1
    (entry,) = mine
    assert entry.match == (int(IPv4Address("10.200.0.6")), 80, 6)
    assert (entry.action, entry.params) == (SET_POOL, (3, 0))
