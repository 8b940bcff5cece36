"""p4lb-switch's P4Runtime server over real gRPC on loopback (ephemeral ports): pipeline config,
Write/Read round trips, per-update batch errors, bad input, digests from real frames."""

from __future__ import annotations

import ipaddress
import select
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from finsy.proto import p4i, p4r, p4r_grpc
from p4rt_harness import (
    DEVICE_ID,
    Names,
    StreamClient,
    batch_errors,
    read,
    set_pipeline,
    update,
    write,
)
from socketpair_port import CLIENT, DIP, GW1, GW2, H1, H2, VIP, SocketPairPort

from p4model import Switch
from p4model.server import SwitchServer
from topo.frames import SYN, TCP, FlowKey, build_frame

INSERT, MODIFY, DELETE = p4r.Update.INSERT, p4r.Update.MODIFY, p4r.Update.DELETE
PRIMARY = 10


@dataclass
class Rig:
    """A running switch with two socketpair ports, a stub, and a primary stream."""

    server: SwitchServer
    ports: dict[int, SocketPairPort]
    stub: p4r_grpc.P4RuntimeStub
    names: Names
    primary: StreamClient


def ip(text: str) -> bytes:
    """An IPv4 address as a 4-byte string."""
    return ipaddress.IPv4Address(text).packed


@pytest.fixture
def rig() -> Iterator[Rig]:
    """A running switch with two socketpair ports, the pipeline set by a primary client."""
    ports = {n: SocketPairPort(n) for n in (1, 2)}
    server = SwitchServer(Switch(), list(ports.values()), "127.0.0.1:0")
    with server.running(), grpc.insecure_channel(server.p4runtime_address) as channel:
        stub = p4r_grpc.P4RuntimeStub(channel)
        primary = StreamClient(stub)
        try:
            assert primary.arbitrate(PRIMARY).status.code == 0
            info = server.p4runtime.device.own_p4info
            set_pipeline(stub, info, PRIMARY)
            yield Rig(server, ports, stub, Names(info), primary)
        finally:
            primary.close()


def test_get_before_set_gives_our_p4info_and_after_set_the_pushed_config() -> None:
    # Unlike simple_switch_grpc, p4lb-switch can run nothing but our program: it runs it from
    # the start, so a client may read its P4Info and write at once.
    server = SwitchServer(Switch(), [], "127.0.0.1:0")
    try:
        with grpc.insecure_channel(server.p4runtime_address) as channel:
            stub = p4r_grpc.P4RuntimeStub(channel)
            assert stub.Capabilities(p4r.CapabilitiesRequest()).p4runtime_api_version
            get = p4r.GetForwardingPipelineConfigRequest(device_id=DEVICE_ID)
            info = server.p4runtime.device.own_p4info
            running = stub.GetForwardingPipelineConfig(get).config
            assert running.p4info == info and running.p4_device_config == b""
            client = StreamClient(stub)
            client.arbitrate(3)
            set_pipeline(stub, info, 3)
            got = stub.GetForwardingPipelineConfig(get).config
            assert got.p4info == info and got.cookie.cookie == 7 and got.p4_device_config == b"{}"
            get.response_type = p4r.GetForwardingPipelineConfigRequest.COOKIE_ONLY
            assert not stub.GetForwardingPipelineConfig(get).config.HasField("p4info")
            client.close()
    finally:
        server.close()


def test_a_p4info_of_another_program_is_refused_with_a_reason(rig: Rig) -> None:
    other = p4i.P4Info()
    other.CopyFrom(rig.names.info)
    other.tables[1].match_fields[0].bitwidth = 31
    with pytest.raises(grpc.RpcError) as caught:
        set_pipeline(rig.stub, other, PRIMARY)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "LbIngress.vip_table" in (caught.value.details() or "")


def test_p4c_style_ids_are_taken_from_the_pushed_p4info(rig: Rig) -> None:
    shifted = p4i.P4Info()
    shifted.CopyFrom(rig.names.info)
    for t in shifted.tables:
        t.preamble.id += 0x1000
    set_pipeline(rig.stub, shifted, PRIMARY)
    names = Names(shifted)
    write(
        rig.stub,
        PRIMARY,
        update(
            INSERT,
            names.entry("vip_table", [ip(VIP), b"\x50", b"\x06"], "set_pool", [b"\x01", b"\x00"]),
        ),
    )
    (entity,) = read(
        rig.stub,
        p4r.Entity(table_entry=p4r.TableEntry(table_id=names.tables["vip_table"].preamble.id)),
    )
    assert entity.table_entry.table_id == names.tables["vip_table"].preamble.id


def test_insert_read_modify_delete_round_trip_with_canonical_values(rig: Rig) -> None:
    n = rig.names
    padded = n.entry(
        "vip_table", [ip("10.0.0.100"), b"\x00\x50", b"\x06"], "set_pool", [b"\x00\x07", b"\x01"]
    )
    write(rig.stub, PRIMARY, update(INSERT, padded))
    table_id = n.tables["vip_table"].preamble.id
    (entity,) = read(rig.stub, p4r.Entity(table_entry=p4r.TableEntry(table_id=table_id)))
    got = entity.table_entry
    assert [m.exact.value for m in got.match] == [ip("10.0.0.100"), b"\x50", b"\x06"]
    assert [p.value for p in got.action.action.params] == [b"\x07", b"\x01"]
    modified = n.entry(
        "vip_table", [ip("10.0.0.100"), b"\x50", b"\x06"], "set_pool", [b"\x09", b"\x00"]
    )
    write(rig.stub, PRIMARY, update(MODIFY, modified))
    key_only = n.entry("vip_table", [ip("10.0.0.100"), b"\x50", b"\x06"])
    (entity,) = read(rig.stub, p4r.Entity(table_entry=key_only))
    assert [p.value for p in entity.table_entry.action.action.params] == [b"\x09", b"\x00"]
    write(rig.stub, PRIMARY, update(DELETE, key_only))
    assert read(rig.stub, p4r.Entity(table_entry=p4r.TableEntry(table_id=table_id))) == []


def test_lpm_entries_and_a_read_of_all_tables(rig: Rig) -> None:
    n = rig.names
    route = n.entry("ipv4_lpm", [], "forward", [b"\x02", bytes(6), bytes(5) + b"\x01"])
    route.match.add(field_id=1).lpm.value = ip("10.0.2.0")
    route.match[0].lpm.prefix_len = 24
    write(rig.stub, PRIMARY, update(INSERT, route))
    everything = read(rig.stub, p4r.Entity(table_entry=p4r.TableEntry()))
    by_table = {e.table_entry.table_id for e in everything}
    assert n.tables["ipv4_lpm"].preamble.id in by_table
    assert len([e for e in everything if e.table_entry.is_const]) == 64  # version_select
    (lpm,) = [e.table_entry for e in everything if e.table_entry.table_id == route.table_id]
    assert (lpm.match[0].lpm.value, lpm.match[0].lpm.prefix_len) == (ip("10.0.2.0"), 24)
    assert [p.value for p in lpm.action.action.params] == [b"\x02", b"\x00", b"\x01"]


def test_default_entry_modify_read_and_reset(rig: Rig) -> None:
    n = rig.names
    default = n.entry(
        "version_config", [], "set_versions", [b"\x01", b"\x05", b"\x00", b"\x00", b"\x00"]
    )
    default.is_default_action = True
    write(rig.stub, PRIMARY, update(MODIFY, default))
    query = p4r.TableEntry(table_id=default.table_id, is_default_action=True)
    (entity,) = read(rig.stub, p4r.Entity(table_entry=query))
    assert [p.value for p in entity.table_entry.action.action.params] == [
        b"\x01",
        b"\x05",
        b"\x00",
        b"\x00",
        b"\x00",
    ]
    write(rig.stub, PRIMARY, update(MODIFY, query))  # no action: back to the program's default
    (entity,) = read(rig.stub, p4r.Entity(table_entry=query))
    assert [p.value for p in entity.table_entry.action.action.params] == [b"\x00"] * 5


def test_a_batch_reports_one_error_per_update_in_order(rig: Rig) -> None:
    n = rig.names
    good = n.entry("vip_table", [ip(VIP), b"\x50", b"\x06"], "set_pool", [b"\x01", b"\x00"])
    too_wide = n.entry(
        "vip_table", [ip(VIP), b"\x01\x00\x50", b"\x06"], "set_pool", [b"\x01", b"\x00"]
    )
    missing = n.entry("vip_table", [ip(VIP), b"\x51", b"\x06"])
    unknown_table = p4r.TableEntry(table_id=0x02FFFFFF)
    with pytest.raises(grpc.RpcError) as caught:
        write(
            rig.stub,
            PRIMARY,
            update(INSERT, good),
            update(INSERT, good),
            update(INSERT, too_wide),
            update(DELETE, missing),
            update(INSERT, unknown_table),
        )
    assert caught.value.code() is grpc.StatusCode.UNKNOWN
    codes = [e.canonical_code for e in batch_errors(caught.value)]
    assert codes == [0, 6, 11, 5, 3]  # OK, ALREADY_EXISTS, OUT_OF_RANGE, NOT_FOUND, INVALID_ARG.
    assert len(read(rig.stub, p4r.Entity(table_entry=p4r.TableEntry(table_id=good.table_id)))) == 1


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda e: e.match.pop(), 3),  # an exact field missing
        (lambda e: e.match[0].exact.__setattr__("value", b""), 11),  # empty bytestring
        (lambda e: e.action.action.params.pop(), 3),  # a parameter missing
        (lambda e: e.action.action.__setattr__("action_id", 0x01FFFFFF), 3),  # not the table's
        (lambda e: e.__setattr__("priority", 5), 3),  # priority on an exact table
        (lambda e: e.__setattr__("idle_timeout_ns", 10), 3),  # vip_table does not age
        (lambda e: e.match[1].__setattr__("field_id", 9), 3),  # unknown field id
    ],
)
def test_malformed_entries_get_a_clear_code(rig: Rig, mutate: object, code: int) -> None:
    entry = rig.names.entry(
        "vip_table", [ip(VIP), b"\x50", b"\x06"], "set_pool", [b"\x01", b"\x00"]
    )
    mutate(entry)  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as caught:
        write(rig.stub, PRIMARY, update(INSERT, entry))
    (error,) = batch_errors(caught.value)
    assert error.canonical_code == code and error.message


def test_const_table_writes_are_permission_denied(rig: Rig) -> None:
    entry = rig.names.entry("version_select", [b"\x00", b"\x00"], "use_version", [b"\x00", b"\x01"])
    with pytest.raises(grpc.RpcError) as caught:
        write(rig.stub, PRIMARY, update(MODIFY, entry))
    assert [e.canonical_code for e in batch_errors(caught.value)] == [7]


def test_other_atomicity_modes_are_unimplemented(rig: Rig) -> None:
    request = p4r.WriteRequest(device_id=DEVICE_ID, atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR)
    request.election_id.low = PRIMARY
    with pytest.raises(grpc.RpcError) as caught:
        rig.stub.Write(request)
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_garbage_bytes_get_an_error_and_the_server_keeps_serving(rig: Rig) -> None:
    channel = grpc.insecure_channel(rig.server.p4runtime_address)
    raw = channel.unary_unary("/p4.v1.P4Runtime/Write")
    with pytest.raises(grpc.RpcError):
        raw(b"\xff\xff\xff\xff")
    channel.close()
    assert (
        read(
            rig.stub,
            p4r.Entity(
                table_entry=p4r.TableEntry(table_id=rig.names.tables["vip_table"].preamble.id)
            ),
        )
        == []
    )


def install_vip(rig: Rig) -> None:
    """VIP:80/TCP -> DIP:8080, routes to the DIP, through P4Runtime."""
    n = rig.names
    route = n.entry(
        "ipv4_lpm",
        [],
        "forward",
        [b"\x02", bytes.fromhex(GW2.replace(":", "")), bytes.fromhex(H2.replace(":", ""))],
    )
    route.match.add(field_id=1).lpm.value = ip(DIP)
    route.match[0].lpm.prefix_len = 32
    vip = n.entry("vip_table", [ip(VIP), b"\x50", b"\x06"], "set_pool", [b"\x00", b"\x00"])
    dip = n.entry("dip_table", [b"\x00", b"\x00"], "rewrite_dst", [ip(DIP), b"\x1f\x90"])
    write(rig.stub, PRIMARY, update(INSERT, route), update(INSERT, vip), update(INSERT, dip))


def digest_config(rig: Rig, kind: p4r.Update.Type.ValueType, ack_timeout_ns: int) -> None:
    """Write a DigestEntry: one sample per list, sent at once."""
    entry = p4r.DigestEntry(digest_id=rig.names.digest_id)
    entry.config.max_list_size = 1
    entry.config.max_timeout_ns = 0
    entry.config.ack_timeout_ns = ack_timeout_ns
    write(rig.stub, PRIMARY, p4r.Update(type=kind, entity=p4r.Entity(digest_entry=entry)))


def syn(rig: Rig, sport: int) -> None:
    """Send a SYN from the client to the VIP and wait for it to leave on port 2."""
    rig.ports[1].far.send(build_frame(H1, GW1, FlowKey(CLIENT, VIP, sport, 80, TCP), flags=SYN))
    ready, _, _ = select.select([rig.ports[2].far], [], [], 10.0)
    assert ready, "the SYN did not come out"
    rig.ports[2].far.recv(65536)


def test_digests_from_real_frames_are_listed_acked_and_held_back_until_acked(rig: Rig) -> None:
    install_vip(rig)
    digest_config(rig, INSERT, ack_timeout_ns=3600 * 10**9)
    syn(rig, 40000)
    first = rig.primary.next("digest").digest
    assert first.digest_id == rig.names.digest_id and len(first.data) == 1
    members = [m.bitstring for m in first.data[0].struct.members]
    assert members == [
        b"\x01",
        ip(CLIENT),
        ip(VIP),
        (40000).to_bytes(2, "big"),
        b"\x50",
        b"\x06",
        b"\x00",
        ip(DIP),
        b"\x1f\x90",
    ]
    syn(rig, 40000)  # the same sample while its list is unacknowledged: held back
    syn(rig, 40001)
    second = rig.primary.next("digest").digest
    assert second.list_id != first.list_id
    assert second.data[0].struct.members[3].bitstring == (40001).to_bytes(2, "big")
    ack = p4r.DigestListAck(digest_id=first.digest_id, list_id=first.list_id)
    rig.primary.send(p4r.StreamMessageRequest(digest_ack=ack))
    # The stream's messages are handled in order: once this one is answered, the ack is in.
    assert rig.primary.arbitrate(PRIMARY).status.code == 0
    syn(rig, 40000)  # acknowledged: the sample may come again
    third = rig.primary.next("digest").digest
    assert third.data[0].struct.members[3].bitstring == (40000).to_bytes(2, "big")
    (entity,) = read(rig.stub, p4r.Entity(digest_entry=p4r.DigestEntry()))
    assert entity.digest_entry.config.max_list_size == 1


def test_digest_entry_insert_twice_and_modify_or_delete_unknown_are_refused(rig: Rig) -> None:
    digest_config(rig, INSERT, 0)
    with pytest.raises(grpc.RpcError) as caught:
        digest_config(rig, INSERT, 0)
    assert [e.canonical_code for e in batch_errors(caught.value)] == [6]
    digest_config(rig, DELETE, 0)
    with pytest.raises(grpc.RpcError) as caught:
        digest_config(rig, MODIFY, 0)
    assert [e.canonical_code for e in batch_errors(caught.value)] == [5]


def test_digests_go_to_the_primary_only(rig: Rig) -> None:
    backup = StreamClient(rig.stub)
    try:
        assert backup.arbitrate(PRIMARY - 1).status.code == 6  # ALREADY_EXISTS: a backup
        install_vip(rig)
        digest_config(rig, INSERT, ack_timeout_ns=0)
        syn(rig, 40002)
        rig.primary.next("digest")
        # The server queues a stream's messages in order: a digest for the backup would come
        # before the answer to this second arbitration update.
        backup.arbitrate(PRIMARY - 1)
        assert [m for m in backup.skipped if m.WhichOneof("update") == "digest"] == []
    finally:
        backup.close()


def test_a_partly_filled_list_is_sent_when_its_max_timeout_passes(rig: Rig) -> None:
    install_vip(rig)
    entry = p4r.DigestEntry(digest_id=rig.names.digest_id)
    entry.config.max_list_size = 100
    entry.config.max_timeout_ns = 20_000_000  # the ticker sends it 20 ms after the first sample
    write(rig.stub, PRIMARY, p4r.Update(type=INSERT, entity=p4r.Entity(digest_entry=entry)))
    syn(rig, 41000)
    syn(rig, 41001)
    lists = [rig.primary.next("digest").digest]
    while sum(len(d.data) for d in lists) < 2:  # both may share one list, or not, by timing
        lists.append(rig.primary.next("digest").digest)
    ports = [d.struct.members[3].bitstring for x in lists for d in x.data]
    assert ports == [(41000).to_bytes(2, "big"), (41001).to_bytes(2, "big")]
