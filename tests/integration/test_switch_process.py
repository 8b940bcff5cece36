"""p4lb-switch as the controller sees it: frames through socketpair ports, programmed and heard
over P4Runtime by the controller's client; and the process itself (options, ready line, exit)."""

from __future__ import annotations

import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from finsy.proto import p4r, p4r_grpc
from socketpair_port import CLIENT, DIP, GW1, GW2, H1, H2, VIP, SocketPairPort

from controller.switch.blocking import BlockingSwitch, count_entries
from p4model import Digest, Switch
from p4model.server import DEFAULT_P4RUNTIME, SwitchServer, build_parser, main, parse_port_spec
from topo.frames import SYN, TCP, FlowKey, build_frame

WAIT = 10.0
"""Seconds a test waits for a frame, a counter or a process (a bound, not a pace)."""


@dataclass
class Served:
    server: SwitchServer
    remote: BlockingSwitch
    ports: dict[int, SocketPairPort]


@pytest.fixture
def served() -> Iterator[Served]:
    """A running switch with two socketpair ports, and the controller's client as primary."""
    ports = {n: SocketPairPort(n) for n in (1, 2)}
    with SwitchServer(Switch(), list(ports.values()), "127.0.0.1:0").running(WAIT) as server:
        remote = BlockingSwitch(f"p4rt://{server.p4runtime_address}", timeout=WAIT)
        try:
            yield Served(server, remote, ports)
        finally:
            remote.close()


def tcp_frame(dst: str, sport: int) -> bytes:
    """A SYN from the client (behind port 1) to `dst`:80, with correct checksums."""
    return build_frame(H1, GW1, FlowKey(CLIENT, dst, sport, 80, TCP), flags=SYN)


def recv_frame(sock: socket.socket) -> bytes:
    ready, _, _ = select.select([sock], [], [], WAIT)
    assert ready, "no frame came out"
    return sock.recv(65536)


def install_vip(remote: BlockingSwitch) -> None:
    remote.table_add("ipv4_lpm", "forward", [f"{DIP}/32"], ["2", GW2, H2])
    remote.table_add("ipv4_lpm", "forward", [f"{CLIENT}/32"], ["1", GW1, H1])
    remote.table_add("vip_table", "set_pool", [VIP, "80", "6"], ["0", "0"])
    remote.table_add("dip_table", "rewrite_dst", ["0", "0", "0x0000/1"], [DIP, "8080"])
    remote.table_add("dip_table", "rewrite_dst", ["0", "0", "0x8000/1"], [DIP, "8080"])


def wait_counter(server: SwitchServer, name: str, value: int) -> None:
    deadline = time.monotonic() + WAIT
    while server.counters[name] < value:
        assert time.monotonic() < deadline, f"counter {name} never reached {value}"
        time.sleep(0.001)  # a counter the loop thread moves; no event to wait on


def test_vip_frame_is_balanced_forwarded_and_its_digest_reaches_the_client(
    served: Served,
) -> None:
    install_vip(served.remote)
    served.remote.subscribe()
    served.ports[1].far.send(tcp_frame(VIP, 40000))
    out = recv_frame(served.ports[2].far)
    assert out[:6] == bytes.fromhex(H2.replace(":", ""))
    assert socket.inet_ntoa(out[30:34]) == DIP
    assert struct.unpack("!H", out[36:38])[0] == 8080
    wanted = Digest("new_conn", CLIENT, VIP, 40000, 80, 6, 0, DIP, 8080)
    assert served.remote.wait_digest(lambda d: d.src_port == 40000) == wanted
    assert (served.server.counters["rx.1"], served.server.counters["tx.2"]) == (1, 1)


def test_unroutable_frame_is_dropped_and_counted(served: Served) -> None:
    served.ports[1].far.send(tcp_frame("192.0.2.1", 40000))
    wait_counter(served.server, "dropped", 1)
    assert served.server.counters["tx.2"] == 0


def test_forwarding_progresses_under_a_write_flood(served: Served) -> None:
    install_vip(served.remote)
    flood, batch = 40_000, 500
    info = served.server.p4runtime.device.own_p4info
    table = next(t for t in info.tables if t.preamble.alias == "conn_table")
    action = next(a for a in info.actions if a.preamble.alias == "rewrite_dst")

    def insert(n: int) -> p4r.Update:
        entry = p4r.TableEntry(table_id=table.preamble.id)
        values = [bytes([10, 9, n >> 8, n & 0xFF]), b"\x0a\x00\x00\x64", b"\x01", b"\x50", b"\x06"]
        for field, value in zip(table.match_fields, values, strict=True):
            entry.match.add(field_id=field.id).exact.value = value
        entry.action.action.action_id = action.preamble.id
        for param, value in zip(action.params, [b"\x0a\x00\x02\x02", b"\x1f\x90"], strict=True):
            entry.action.action.params.add(param_id=param.id, value=value)
        return p4r.Update(type=p4r.Update.INSERT, entity=p4r.Entity(table_entry=entry))

    requests = [[insert(n) for n in range(s, s + batch)] for s in range(0, flood, batch)]

    def write_all() -> None:
        # The controller's client is primary (election id 1) and its writes are ours too.
        with grpc.insecure_channel(served.server.p4runtime_address) as channel:
            stub = p4r_grpc.P4RuntimeStub(channel)
            for updates in requests:
                request = p4r.WriteRequest(device_id=1, updates=updates)
                request.election_id.low = 1
                stub.Write(request)

    writer = threading.Thread(target=write_all, daemon=True)
    writer.start()
    try:
        deadline = time.monotonic() + WAIT
        while served.server.switch.table_num_entries("conn_table") == 0:
            assert time.monotonic() < deadline, "the flood never started"
            time.sleep(0.001)  # a table another thread fills; no event to wait on
        frames = 20
        for sport in range(frames):
            served.ports[1].far.send(tcp_frame(VIP, 41000 + sport))
        for _ in range(frames):
            assert recv_frame(served.ports[2].far)
        with served.server.lock:
            written_when_forwarded = served.server.switch.table_num_entries("conn_table")
    finally:
        writer.join(60.0)
    # A Write takes the switch per update, so frames pass between updates: forwarding did not
    # wait for the flood to end (one that did would have seen every entry written).
    assert written_when_forwarded < flood, written_when_forwarded
    assert count_entries(served.server.p4runtime_address, "conn_table") == flood


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("1@veth1", True),
        ("510@s1-eth510", True),
        ("0@veth0", False),
        ("511@x", False),
        ("veth1", False),
        ("1@", False),
        ("x@veth1", False),
    ],
)
def test_port_spec_parsing(text: str, ok: bool) -> None:
    if ok:
        spec = parse_port_spec(text)
        assert f"{spec.port}@{spec.iface}" == text
    else:
        with pytest.raises(Exception, match="PORT@IFACE"):
            parse_port_spec(text)


@pytest.mark.parametrize(
    ("argv", "address", "device_id"),
    [
        ([], DEFAULT_P4RUNTIME, 1),
        (["--p4runtime", "127.0.0.1:0", "--device-id", "3"], "127.0.0.1:0", 3),
    ],
)
def test_p4runtime_options(argv: list[str], address: str, device_id: int) -> None:
    args = build_parser().parse_args(argv)
    assert (args.p4runtime, args.device_id) == (address, device_id)


def _start_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "p4model", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_process_runs_our_program_at_once_then_exits_cleanly_on_sigterm() -> None:
    proc = _start_process("--p4runtime", "127.0.0.1:0", "--device-id", "4")
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        assert ready, "no ready line"
        line = proc.stdout.readline().split()
        assert line[:2] == ["p4lb-switch", "ready"], line
        fields = dict(item.split("=", 1) for item in line[2:])
        assert fields["device_id"] == "4"
        host, _, port = fields["p4runtime"].rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0  # port 0 became the bound one
        # No pipeline push: the controller's client reads the P4Info and writes.
        with BlockingSwitch(f"p4rt://{fields['p4runtime']}?device_id=4", timeout=WAIT) as remote:
            remote.table_add("vip_table", "set_pool", [VIP, "80", "6"], ["1", "0"])
            assert remote.table_num_entries("vip_table") == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30.0) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_process_fails_when_an_interface_cannot_be_opened() -> None:
    proc = _start_process("-i", "1@p4lb-nonexist", "--p4runtime", "127.0.0.1:0")
    _, err = proc.communicate(timeout=30.0)
    assert proc.returncode == 1
    assert "cannot start" in err


def test_a_taken_p4runtime_port_is_refused_and_nothing_is_left_bound() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            SwitchServer(Switch(), [], f"127.0.0.1:{port}")
        assert main(["--p4runtime", f"127.0.0.1:{port}"]) == 1


def test_a_port_number_given_twice_is_refused() -> None:
    assert main(["-i", "1@veth1", "-i", "1@veth2", "--p4runtime", "127.0.0.1:0"]) == 2
