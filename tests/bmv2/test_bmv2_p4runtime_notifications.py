"""Stream notifications from BMv2's simple_switch_grpc and from p4lb-switch, side by side: the
DigestLists raised by the same frames (content, hold-back of an unacknowledged sample) and the
IdleTimeoutNotification of an idle conn_table entry. Real time: the entry's TTL is 1 s and BMv2
scans once a second, so this test takes a few seconds (every wait is bounded)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from finsy.proto import p4i, p4r, p4r_grpc

# Test helpers of the integration tier, reused here.
from grpc_switch_harness import GrpcSwitch, compile_with_p4info, tools_missing

from p4model import Switch
from p4model.server import SwitchServer
from topo.frames import SYN, TCP, FlowKey, build_frame

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from p4rt_harness import Names, StreamClient, set_pipeline, update, write
from socketpair_port import CLIENT, DIP, GW1, GW2, H1, H2, VIP, SocketPairPort

MISSING = tools_missing()
pytestmark = [
    pytest.mark.bmv2,
    pytest.mark.skipif(bool(MISSING), reason=f"not on PATH: {', '.join(MISSING)}"),
]
INSERT = p4r.Update.INSERT
SendFrame = Callable[[int, bytes], None]


def _ip(text: str) -> bytes:
    return socket.inet_aton(text)


@pytest.fixture(scope="module")
def compiled() -> tuple[p4i.P4Info, bytes]:
    """p4c's P4Info and BMv2 JSON for our program."""
    return compile_with_p4info().program()


@pytest.fixture
def bmv2(tmp_path: Path) -> Iterator[tuple[str, SendFrame]]:
    """simple_switch_grpc with frames in over nanomsg; its address and a frame sender."""
    with GrpcSwitch(tmp_path) as switch:
        yield switch.address, switch.send


@pytest.fixture
def model() -> Iterator[tuple[str, SendFrame]]:
    """p4lb-switch with a socketpair port 1 and P4Runtime; its address and a frame sender."""
    ports = [SocketPairPort(1), SocketPairPort(2)]

    def send(port: int, frame: bytes) -> None:
        ports[port - 1].far.send(frame)

    server = SwitchServer(Switch(), list(ports), "127.0.0.1:0", ageing_interval=0.2)
    with server.running():
        yield server.p4runtime_address, send


def conversation(
    address: str, send: SendFrame, info: p4i.P4Info, device_config: bytes
) -> dict[str, object]:
    """Program the switch, raise digests and let an entry idle; what the stream carried."""
    seen: dict[str, object] = {}
    n = Names(info)
    channel = grpc.insecure_channel(address)
    stub = p4r_grpc.P4RuntimeStub(channel)
    client = StreamClient(stub)
    client.arbitrate(10)
    set_pipeline(stub, info, 10, device_config=device_config)
    gw2, h2 = (bytes.fromhex(mac.replace(":", "")) for mac in (GW2, H2))
    route = n.entry("ipv4_lpm", [], "forward", [b"\x02", gw2, h2])
    route.match.add(field_id=1).lpm.value = _ip(DIP)
    route.match[0].lpm.prefix_len = 32
    vip = n.entry("vip_table", [_ip(VIP), b"\x50", b"\x06"], "set_pool", [b"\x00", b"\x00"])
    dip = n.entry("dip_table", [b"\x00", b"\x00"], "rewrite_dst", [_ip(DIP), b"\x1f\x90"])
    digest = p4r.DigestEntry(digest_id=n.digest_id)
    digest.config.max_list_size = 1
    digest.config.ack_timeout_ns = 3600 * 10**9
    write(
        stub,
        10,
        update(INSERT, route),
        update(INSERT, vip),
        update(INSERT, dip),
        p4r.Update(type=INSERT, entity=p4r.Entity(digest_entry=digest)),
    )

    def syn(sport: int) -> None:
        send(1, build_frame(H1, GW1, FlowKey(CLIENT, VIP, sport, 80, TCP), flags=SYN))

    syn(40000)
    first = client.next("digest").digest
    seen["first list"] = (
        first.digest_id == n.digest_id,
        [[m.bitstring for m in d.struct.members] for d in first.data],
    )
    syn(40000)  # unacknowledged: held back
    syn(40001)
    second = client.next("digest").digest
    seen["second list sports"] = [d.struct.members[3].bitstring for d in second.data]
    key = [_ip(CLIENT), _ip(VIP), b"\x9c\x42", b"\x50", b"\x06"]
    conn = n.entry("conn_table", key, "rewrite_dst", [_ip(DIP), b"\x1f\x90"])
    conn.idle_timeout_ns = 10**9
    conn.controller_metadata = 5
    write(stub, 10, update(INSERT, conn))
    note = client.next("idle_timeout_notification").idle_timeout_notification
    seen["idle entries"] = [
        (
            e.table_id == conn.table_id,
            [m.exact.value for m in e.match],
            e.idle_timeout_ns,
            e.controller_metadata,
            e.priority,
        )
        for e in note.table_entry
    ]
    seen["idle timestamp set"] = note.timestamp > 0
    client.close()
    channel.close()
    return seen


def test_digests_and_idle_notifications_match_bmv2(
    compiled: tuple[p4i.P4Info, bytes],
    bmv2: tuple[str, SendFrame],
    model: tuple[str, SendFrame],
) -> None:
    info, device_config = compiled
    theirs = conversation(*bmv2, info, device_config)
    ours = conversation(*model, info, device_config)
    assert ours == theirs
