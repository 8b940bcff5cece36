"""FaultySwitch: latency keeps write order, failures are not applied, digests are delayed."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypedDict, Unpack

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from controller.core.ops import Outcome, SwitchOp
from controller.switch.api import AgedCallback, DefaultEntry, Digest, DigestCallback, SwitchError
from controller.switch.faults import FaultySwitch


class MemorySwitch:
    """A tiny in-memory `SwitchClient`: tables of entries and registers, applied at once."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[int, tuple[str, tuple[str, ...], tuple[str, ...]]]] = {}
        self.defaults: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.next_handle = 0
        self.on_digest: DigestCallback | None = None
        self.on_aged: AgedCallback | None = None
        self.closed = False
        self.primary = True

    async def apply(self, ops: Sequence[SwitchOp]) -> list[Outcome]:
        raise NotImplementedError("these tests drive FaultySwitch through the per-call API")

    async def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        entries = self.tables.setdefault(table, {})
        if any(k == tuple(keys) for _, k, _ in entries.values()):
            raise SwitchError("DUPLICATE_ENTRY")
        self.next_handle += 1
        entries[self.next_handle] = (action, tuple(keys), tuple(params))
        return self.next_handle

    async def table_modify(
        self, table: str, action: str, handle: int, params: Sequence[str]
    ) -> None:
        _, keys, _ = self.tables[table][handle]
        self.tables[table][handle] = (action, keys, tuple(params))

    async def table_delete(self, table: str, handle: int) -> None:
        if handle not in self.tables.get(table, {}):
            raise SwitchError("INVALID_HANDLE")
        del self.tables[table][handle]

    async def table_clear(self, table: str) -> None:
        self.tables[table] = {}

    async def table_set_default(self, table: str, action: str, params: Sequence[str]) -> None:
        self.defaults[table] = (action, tuple(params))

    async def table_set_timeout(self, table: str, handle: int, ms: int) -> None:
        pass

    async def table_num_entries(self, table: str) -> int:
        return len(self.tables.get(table, {}))

    async def table_get_default(self, table: str) -> DefaultEntry:
        action, params = self.defaults.get(table, ("NoAction", ()))
        return DefaultEntry.read(action, [int(p) for p in params])

    async def subscribe(self, on_digest: DigestCallback, on_aged: AgedCallback) -> None:
        self.on_digest, self.on_aged = on_digest, on_aged

    async def close(self) -> None:
        self.closed = True


sync = SynchronousTestCase()


def digest(port: int) -> Digest:
    return Digest("new_conn", "10.0.1.2", "10.0.0.100", port, 80, 6, 0, "10.1.3.2", 8080)


class FaultOptions(TypedDict, total=False):
    """FaultySwitch's fault parameters."""

    write_latency: tuple[float, float]
    write_failure_rate: float
    digest_delay: tuple[float, float]
    reorder: bool


def faulty(
    inner: MemorySwitch, clock: task.Clock, seed: int = 1, **options: Unpack[FaultOptions]
) -> FaultySwitch:
    return FaultySwitch(inner, clock, random.Random(seed), **options)


def test_a_delayed_write_is_applied_only_after_its_latency() -> None:
    clock, inner = task.Clock(), MemorySwitch()
    switch = faulty(inner, clock, write_latency=(0.1, 0.2))
    added = defer.ensureDeferred(switch.table_add("conn_table", "rewrite_dst", ["1"], ["2"]))
    assert not added.called
    assert inner.tables == {}
    clock.advance(0.2)
    assert sync.successResultOf(added) == 1
    assert len(inner.tables["conn_table"]) == 1


def test_writes_take_effect_in_issue_order_despite_random_latency() -> None:
    clock, inner = task.Clock(), MemorySwitch()
    switch = faulty(inner, clock, seed=7, write_latency=(0.01, 0.2))
    seen: list[int] = []
    original = inner.table_set_default

    async def spy(table: str, action: str, params: Sequence[str]) -> None:
        seen.append(int(params[0]))
        await original(table, action, params)

    inner.table_set_default = spy  # type: ignore[method-assign]
    writes = [
        defer.ensureDeferred(switch.table_set_default("version_config", "set_versions", [str(v)]))
        for v in range(50)
    ]
    read = defer.ensureDeferred(switch.table_get_default("version_config"))
    clock.pump([0.01] * 100)
    assert all(w.called for w in writes)
    assert seen == list(range(50))
    assert sync.successResultOf(read) == DefaultEntry("set_versions", (49,))


def test_a_failed_write_raises_and_is_not_applied() -> None:
    clock, inner = task.Clock(), MemorySwitch()
    switch = faulty(inner, clock, write_latency=(0.05, 0.05), write_failure_rate=1.0)
    added = defer.ensureDeferred(switch.table_add("dip_table", "rewrite_dst", ["0"], ["1"]))
    clock.advance(0.05)
    failure = sync.failureResultOf(added, SwitchError)
    assert "injected write failure" in str(failure.value)
    assert "dip_table" in str(failure.value)
    assert inner.tables == {}
    assert switch.injected_failures == 1


def test_with_some_failures_exactly_the_successful_writes_are_applied() -> None:
    clock, inner = task.Clock(), MemorySwitch()
    switch = faulty(inner, clock, seed=3, write_latency=(0.0, 0.01), write_failure_rate=0.3)
    calls = [
        defer.ensureDeferred(switch.table_add("conn_table", "rewrite_dst", [str(i)], ["1"]))
        for i in range(200)
    ]
    clock.advance(1.0)
    outcomes: list[bool] = []
    for call in calls:
        call.addCallbacks(lambda _: outcomes.append(True), lambda _: outcomes.append(False))
    assert len(outcomes) == 200
    assert 0 < outcomes.count(False) == switch.injected_failures < 200
    assert len(inner.tables["conn_table"]) == outcomes.count(True)


def test_a_read_waits_for_earlier_writes_and_sees_them() -> None:
    clock, inner = task.Clock(), MemorySwitch()
    switch = faulty(inner, clock, write_latency=(0.3, 0.3))
    defer.ensureDeferred(switch.table_add("conn_table", "rewrite_dst", ["1"], ["2"]))
    count = defer.ensureDeferred(switch.table_num_entries("conn_table"))
    assert not count.called
    clock.advance(0.3)
    assert sync.successResultOf(count) == 1


def test_digests_are_delayed_and_stay_in_order_without_reordering() -> None:
    clock, inner = task.Clock(), MemorySwitch()
    switch = faulty(inner, clock, seed=5, digest_delay=(0.0, 1.0), reorder=False)
    received: list[Digest] = []
    defer.ensureDeferred(switch.subscribe(received.append, lambda handles: None))
    assert inner.on_digest is not None
    for port in range(100):
        inner.on_digest(digest(port))
    assert received == []
    clock.advance(1.0)
    assert [d.src_port for d in received] == list(range(100))


def test_digests_may_overtake_each_other_with_reordering() -> None:
    clock, inner = task.Clock(), MemorySwitch()
    switch = faulty(inner, clock, seed=5, digest_delay=(0.0, 1.0), reorder=True)
    received: list[Digest] = []
    defer.ensureDeferred(switch.subscribe(received.append, lambda handles: None))
    assert inner.on_digest is not None
    for port in range(100):
        inner.on_digest(digest(port))
    clock.advance(1.0)
    ports = [d.src_port for d in received]
    assert sorted(ports) == list(range(100))
    assert ports != list(range(100))


def test_aged_handles_pass_through() -> None:
    clock, inner = task.Clock(), MemorySwitch()
    switch = faulty(inner, clock, digest_delay=(1.0, 1.0))
    aged: list[list[int]] = []
    defer.ensureDeferred(switch.subscribe(lambda d: None, lambda h: aged.append(list(h))))
    assert inner.on_aged is not None
    inner.on_aged([3, 4])
    assert aged == [[3, 4]]


def test_close_waits_for_queued_writes_then_closes_the_inner_client() -> None:
    clock, inner = task.Clock(), MemorySwitch()
    switch = faulty(inner, clock, write_latency=(0.5, 0.5))
    defer.ensureDeferred(switch.table_set_default("t", "a", ["1"]))
    closed = defer.ensureDeferred(switch.close())
    assert not inner.closed
    clock.advance(0.5)
    assert closed.called and inner.closed
    assert inner.defaults["t"] == ("a", ("1",))


@pytest.mark.parametrize(
    "options",
    [
        {"write_latency": (0.2, 0.1)},
        {"write_latency": (-0.1, 0.1)},
        {"digest_delay": (1.0, 0.0)},
        {"write_failure_rate": 1.5},
    ],
)
def test_bad_fault_parameters_are_refused(options: FaultOptions) -> None:
    with pytest.raises(ValueError, match="must"):
        faulty(MemorySwitch(), task.Clock(), **options)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    latency=st.tuples(st.floats(0.0, 0.1), st.floats(0.0, 0.3)).map(sorted),
    failure_rate=st.sampled_from([0.0, 0.2, 0.9]),
    count=st.integers(1, 40),
    spacing=st.floats(0.0, 0.05),
)
def test_successful_writes_are_applied_exactly_once_in_issue_order(
    seed: int, latency: list[float], failure_rate: float, count: int, spacing: float
) -> None:
    clock, inner = task.Clock(), MemorySwitch()
    lo, hi = latency
    switch = faulty(
        inner, clock, seed=seed, write_latency=(lo, hi), write_failure_rate=failure_rate
    )
    applied: list[int] = []
    original = inner.table_set_default

    async def spy(table: str, action: str, params: Sequence[str]) -> None:
        applied.append(int(params[0]))
        await original(table, action, params)

    inner.table_set_default = spy  # type: ignore[method-assign]
    outcomes: dict[int, bool] = {}
    for value in range(count):
        call = defer.ensureDeferred(switch.table_set_default("t", "a", [str(value)]))
        call.addCallbacks(
            lambda _, v=value: outcomes.__setitem__(v, True),
            lambda _, v=value: outcomes.__setitem__(v, False),
        )
        clock.advance(spacing)
    clock.advance(1.0)
    assert len(outcomes) == count
    assert applied == [v for v in range(count) if outcomes[v]]


def test_wrapping_the_model_delays_its_digests() -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from controller.switch.model_client import ModelSwitchClient
    from p4model import Switch

    clock = task.Clock()
    model = ModelSwitchClient(Switch(clock=clock.seconds), clock)
    switch = FaultySwitch(model, clock, random.Random(2), digest_delay=(0.5, 0.5))
    received: list[Digest] = []
    defer.ensureDeferred(switch.subscribe(received.append, lambda h: None))
    for table, action, keys, params in (
        ("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["0", "0"]),
        ("dip_table", "rewrite_dst", ["0", "0", "0/0"], ["10.1.3.2", "8080"]),
        ("ipv4_lpm", "forward", ["10.1.3.2/32"], ["3", "00:01:0a:01:03:02", "00:00:0a:01:03:02"]),
    ):
        defer.ensureDeferred(switch.table_add(table, action, keys, params))
    packet = Ether() / IP(src="10.0.1.2", dst="10.0.0.100") / TCP(sport=1234, dport=80, flags="S")
    model.switch.process(1, bytes(packet))
    clock.advance(0)  # the model hands the digest over on the next reactor turn
    clock.advance(0.4)
    assert received == []
    clock.advance(0.1)
    assert [(d.kind, d.src_port, d.dip_ip) for d in received] == [("new_conn", 1234, "10.1.3.2")]
