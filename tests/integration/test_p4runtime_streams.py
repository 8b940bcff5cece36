"""p4lb-switch's P4Runtime stream over real gRPC on loopback: primary/backup arbitration and
idle-timeout notifications driven by the model's clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from finsy.proto import p4r, p4r_grpc
from p4rt_harness import Names, StreamClient, read, set_pipeline, update, write

from p4model import Switch, p4runtime_service
from p4model.server import SwitchServer

INSERT = p4r.Update.INSERT
OK, NOT_FOUND, ALREADY_EXISTS = 0, 5, 6


class FakeClock:
    """The switch's ageing clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    """A running switch with its P4Runtime address, a stub and the ageing clock."""

    server: SwitchServer
    stub: p4r_grpc.P4RuntimeStub
    names: Names
    clock: FakeClock


@pytest.fixture
def served() -> Iterator[Served]:
    """A running switch with an ageing clock the test moves."""
    clock = FakeClock()
    server = SwitchServer(
        Switch(clock=clock),
        [],
        "127.0.0.1:0",
        ageing_interval=0.05,  # idle scans: notifications come soon after the clock moves
    )
    with server.running(), grpc.insecure_channel(server.p4runtime_address) as channel:
        yield Served(
            server,
            p4r_grpc.P4RuntimeStub(channel),
            Names(server.p4runtime.device.own_p4info),
            clock,
        )


def vip_entry(names: Names, port: int) -> p4r.TableEntry:
    """A vip_table entry for VIP:port/TCP."""
    return names.entry(
        "vip_table",
        [b"\x0a\x00\x00\x64", port.to_bytes(2, "big"), b"\x06"],
        "set_pool",
        [b"\x01", b"\x00"],
    )


def test_the_highest_election_id_is_primary_and_a_lower_one_cannot_write(served: Served) -> None:
    high, low = StreamClient(served.stub), StreamClient(served.stub)
    try:
        assert high.arbitrate(20).status.code == OK
        advisory = low.arbitrate(5)
        assert advisory.status.code == ALREADY_EXISTS and advisory.election_id.low == 20
        set_pipeline(served.stub, served.names.info, 20)
        with pytest.raises(grpc.RpcError) as caught:
            write(served.stub, 5, update(INSERT, vip_entry(served.names, 80)))
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as caught:
            write(served.stub, None, update(INSERT, vip_entry(served.names, 80)))
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
        write(served.stub, 20, update(INSERT, vip_entry(served.names, 80)))
        # a backup may read
        assert len(read(served.stub, p4r.Entity(table_entry=p4r.TableEntry()))) > 1
    finally:
        high.close()
        low.close()


def test_when_the_primary_leaves_the_next_highest_is_told_it_is_primary(served: Served) -> None:
    high, low = StreamClient(served.stub), StreamClient(served.stub)
    try:
        high.arbitrate(20)
        low.arbitrate(5)
        high.close()
        promoted = low.next("arbitration").arbitration
        assert promoted.status.code == OK and promoted.election_id.low == 5
        assert low.arbitrate(5).status.code == OK  # re-sending arbitration confirms it
        set_pipeline(served.stub, served.names.info, 5)
        write(served.stub, 5, update(INSERT, vip_entry(served.names, 81)))
    finally:
        low.close()


def test_a_higher_newcomer_takes_over_and_everyone_is_told(served: Served) -> None:
    old, new = StreamClient(served.stub), StreamClient(served.stub)
    try:
        old.arbitrate(20)
        assert new.arbitrate(30).status.code == OK
        demoted = old.next("arbitration").arbitration
        assert demoted.status.code == ALREADY_EXISTS and demoted.election_id.low == 30
    finally:
        old.close()
        new.close()


def test_a_client_without_election_id_is_a_backup_told_there_is_no_primary(served: Served) -> None:
    reader = StreamClient(served.stub)
    try:
        advisory = reader.arbitrate(None)
        assert advisory.status.code == NOT_FOUND and not advisory.HasField("election_id")
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("device_id", "code"), [(1, grpc.StatusCode.INVALID_ARGUMENT), (9, grpc.StatusCode.NOT_FOUND)]
)
def test_a_duplicate_election_id_or_unknown_device_ends_the_stream(
    served: Served, device_id: int, code: grpc.StatusCode
) -> None:
    first, second = StreamClient(served.stub), StreamClient(served.stub)
    try:
        first.arbitrate(7)
        request = p4r.StreamMessageRequest()
        request.arbitration.device_id = device_id
        request.arbitration.election_id.low = 7
        second.send(request)
        error = second.wait_end()
        assert error is not None and error.code() is code
        assert first.arbitrate(7).status.code == OK  # the first client is unaffected
    finally:
        first.close()


def test_idle_entries_are_notified_to_the_primary_once_per_ttl(served: Served) -> None:
    client = StreamClient(served.stub)
    try:
        client.arbitrate(1)
        set_pipeline(served.stub, served.names.info, 1)
        key = [b"\x0a\x00\x01\x02", b"\x0a\x00\x00\x64", b"\x9c\x40", b"\x50", b"\x06"]
        entry = served.names.entry(
            "conn_table", key, "rewrite_dst", [b"\x0a\x00\x02\x02", b"\x1f\x90"]
        )
        entry.idle_timeout_ns = 2 * 10**9
        entry.controller_metadata = 42
        write(served.stub, 1, update(INSERT, entry))
        served.clock.now += 3.0
        note = client.next("idle_timeout_notification").idle_timeout_notification
        (idle,) = note.table_entry
        assert [m.exact.value for m in idle.match] == [
            b"\x0a\x00\x01\x02",
            b"\x0a\x00\x00\x64",
            b"\x9c\x40",
            b"\x50",
            b"\x06",
        ]
        assert (idle.idle_timeout_ns, idle.controller_metadata) == (2 * 10**9, 42)
        # notifying restarted the entry's timer: it has been idle 0 s since
        query = p4r.TableEntry(table_id=entry.table_id)
        query.time_since_last_hit.SetInParent()
        (entity,) = read(served.stub, p4r.Entity(table_entry=query))
        assert entity.table_entry.time_since_last_hit.elapsed_ns == 0
        assert entity.table_entry.idle_timeout_ns == 2 * 10**9
        served.clock.now += 3.0
        again = client.next("idle_timeout_notification").idle_timeout_notification
        assert len(again.table_entry) == 1
    finally:
        client.close()


def test_streams_beyond_the_limit_are_refused_and_unary_calls_still_work(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(p4runtime_service, "MAX_STREAMS", 2)
    clients = [StreamClient(served.stub) for _ in range(2)]
    try:
        for n, client in enumerate(clients, start=1):
            client.arbitrate(n)  # answered: the stream is open
        extra = StreamClient(served.stub)
        error = extra.wait_end()
        assert error is not None and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        set_pipeline(served.stub, served.names.info, 2)
        write(served.stub, 2, update(INSERT, vip_entry(served.names, 82)))
    finally:
        for client in clients:
            client.close()


def test_a_large_table_is_read_in_several_responses(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(p4runtime_service, "READ_CHUNK", 5)
    client = StreamClient(served.stub)
    try:
        client.arbitrate(1)
        set_pipeline(served.stub, served.names.info, 1)
        with served.server.lock:
            for port in range(7):
                keys = ["10.0.1.2", "10.0.0.100", str(port), "80", "6"]
                served.server.switch.table_add("conn_table", "NoAction", keys, [])
        request = p4r.ReadRequest(device_id=1)
        request.entities.add().table_entry.table_id = served.names.tables["conn_table"].preamble.id
        responses = list(served.stub.Read(request))
        assert [len(r.entities) for r in responses] == [5, 2]
        with served.server.lock:
            served.server.switch.table_delete("conn_table", 0)
            served.server.switch.table_delete("conn_table", 1)
        responses = list(served.stub.Read(request))
        assert [len(r.entities) for r in responses] == [5]  # no empty tail
    finally:
        client.close()
