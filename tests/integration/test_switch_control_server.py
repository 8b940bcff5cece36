"""p4lb-switch's server and RemoteSwitch over ZeroMQ on loopback, with socketpairs as ports."""

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
from typing import Any

import pytest
import zmq
from socketpair_port import CLIENT, DIP, GW1, GW2, H1, H2, VIP, SocketPairPort

from p4model import Digest, Switch, SwitchError
from p4model.client import RemoteSwitch
from p4model.server import SwitchServer, main, parse_port_spec
from topo.frames import SYN, TCP, FlowKey, build_frame


@dataclass
class Served:
    server: SwitchServer
    remote: RemoteSwitch
    ports: dict[int, SocketPairPort]
    clock: list[float]


@pytest.fixture
def served() -> Iterator[Served]:
    clock = [1000.0]
    switch = Switch(clock=lambda: clock[0])
    ports = {n: SocketPairPort(n) for n in (1, 2)}
    server = SwitchServer(
        switch,
        list(ports.values()),
        "tcp://127.0.0.1:*",
        "tcp://127.0.0.1:*",
        ageing_interval=0.02,
    )
    thread = threading.Thread(target=server.run, name="switch-server", daemon=True)
    thread.start()
    remote = RemoteSwitch(server.control_address, server.digest_address, timeout=10.0)
    try:
        yield Served(server, remote, ports, clock)
    finally:
        remote.close()
        server.stop()
        thread.join(10.0)
        assert not thread.is_alive()
        server.close()


def tcp_frame(src: str, dst: str, sport: int, dport: int, flags: int = SYN) -> bytes:
    """An Ethernet/IPv4/TCP frame from h1 to the gateway, with correct checksums."""
    return build_frame(H1, GW1, FlowKey(src, dst, sport, dport, TCP), flags=flags)


def recv_frame(sock: socket.socket, deadline: float = 10.0) -> bytes:
    ready, _, _ = select.select([sock], [], [], deadline)
    assert ready, "no frame came out"
    return sock.recv(65536)


def wait_for_counter(remote: RemoteSwitch, name: str, value: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        counters: dict[str, Any] = remote.info()["counters"]
        if counters.get(name, 0) >= value:
            return counters
    raise AssertionError(f"counter {name} never reached {value}")


def install_vip(remote: RemoteSwitch) -> None:
    remote.table_add("ipv4_lpm", "forward", [f"{DIP}/32"], ["2", GW2, H2])
    remote.table_add("ipv4_lpm", "forward", [f"{CLIENT}/32"], ["1", GW1, H1])
    remote.table_add("vip_table", "set_pool", [VIP, "80", "6"], ["0", "0"])
    remote.table_add("dip_table", "rewrite_dst", ["0", "0", "0x0000/1"], [DIP, "8080"])
    remote.table_add("dip_table", "rewrite_dst", ["0", "0", "0x8000/1"], [DIP, "8080"])


def test_table_writes_are_applied_and_counted(served: Served) -> None:
    remote = served.remote
    handle = remote.table_add("ipv4_lpm", "forward", ["10.0.2.0/24"], ["2", GW2, H2])
    assert isinstance(handle, int)
    assert remote.table_num_entries("ipv4_lpm") == 1
    remote.table_modify("ipv4_lpm", "forward", handle, ["1", GW1, H1])
    remote.table_delete("ipv4_lpm", handle)
    assert remote.table_num_entries("ipv4_lpm") == 0
    assert remote.info()["counters"]["requests"] >= 5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.table_add("no_such_table", "drop", [], []), "no_such_table"),
        (lambda r: r.table_delete("ipv4_lpm", 12345), "12345"),
        (lambda r: r.register_read("no_such_register", 0), "no_such_register"),
    ],
    ids=["unknown table", "unknown handle", "unknown register"],
)
def test_switch_errors_carry_the_servers_message(served: Served, call: Any, message: str) -> None:
    with pytest.raises(SwitchError, match=message):
        call(served.remote)
    assert served.remote.table_num_entries("conn_table") == 0  # still serving
    assert served.remote.info()["counters"]["request_errors"] == 1


def test_duplicate_entry_is_an_error(served: Served) -> None:
    served.remote.table_add("vip_table", "set_pool", [VIP, "80", "6"], ["0", "0"])
    with pytest.raises(SwitchError):
        served.remote.table_add("vip_table", "set_pool", [VIP, "80", "6"], ["1", "0"])


def test_registers_and_default_actions_are_written_and_read(served: Served) -> None:
    remote = served.remote
    remote.table_set_default("version_config", "set_versions", ["2", "9", "0", "0", "7"])
    assert remote.table_get_default("version_config") == ("LbIngress.set_versions", [2, 9, 0, 0, 7])
    remote.register_write("bloom_0", 3, 2)
    assert remote.register_read("bloom_0", 3) == 2
    remote.register_write("bloom_1", [10, 13], 1)
    cells = remote.register_read("bloom_1")
    assert isinstance(cells, list)
    assert [i for i, v in enumerate(cells) if v] == [10, 11, 12]
    remote.register_reset("bloom_1")
    assert remote.register_read("bloom_1", 11) == 0


def test_malformed_requests_get_an_error_reply_and_the_server_survives(served: Served) -> None:
    raw: zmq.Socket[bytes]
    with zmq.Context.instance().socket(zmq.REQ) as raw:
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(served.server.control_address)
        raw.send(b'{"method": "process", "args": [1, ""]}')
        assert raw.poll(10_000)
        assert b"unknown method" in raw.recv()
    assert served.remote.table_num_entries("vip_table") == 0


def test_vip_frame_is_balanced_forwarded_and_digested(served: Served) -> None:
    install_vip(served.remote)
    served.ports[1].far.send(tcp_frame(CLIENT, VIP, 40000, 80))
    out = recv_frame(served.ports[2].far)
    assert out[:6] == bytes.fromhex(H2.replace(":", ""))
    assert socket.inet_ntoa(out[30:34]) == DIP
    assert struct.unpack("!H", out[36:38])[0] == 8080
    digests = served.remote.recv_digests(10.0)
    assert digests == [Digest("new_conn", CLIENT, VIP, 40000, 80, 6, 0, DIP, 8080)]
    counters = served.remote.info()["counters"]
    assert counters["rx.1"] == 1
    assert counters["tx.2"] == 1


def test_unroutable_frame_is_dropped_and_counted(served: Served) -> None:
    served.ports[1].far.send(tcp_frame(CLIENT, "192.0.2.1", 40000, 80))
    counters = wait_for_counter(served.remote, "rx.1", 1)
    assert counters.get("tx.2", 0) == 0
    assert counters.get("dropped", 0) + counters.get("dropped_unmapped_port", 0) == 1


def test_idle_conn_table_entries_are_published_as_aged(served: Served) -> None:
    remote = served.remote
    handle = remote.table_add(
        "conn_table", "rewrite_dst", [CLIENT, VIP, "40000", "80", "6"], [DIP, "8080"]
    )
    remote.table_set_timeout("conn_table", handle, 500)
    served.clock[0] += 1.0
    digests, aged = [], []
    deadline = time.monotonic() + 10.0
    while handle not in aged and time.monotonic() < deadline:
        new_digests, new_aged = remote.recv_notifications(1.0)
        digests += new_digests
        aged += new_aged
    assert handle in aged
    assert digests == []


def test_no_notifications_within_timeout_gives_empty_lists(served: Served) -> None:
    assert served.remote.recv_notifications(0.05) == ([], [])
    assert served.remote.recv_digests(0.0) == []


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


def _start_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "p4model", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_process_serves_then_exits_cleanly_on_sigterm() -> None:
    proc = _start_process("--control", "tcp://127.0.0.1:*", "--digests", "tcp://127.0.0.1:*")
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        assert ready, "no ready line"
        line = proc.stdout.readline().split()
        assert line[:2] == ["p4lb-switch", "ready"], line
        fields = dict(item.split("=", 1) for item in line[2:])
        with RemoteSwitch(fields["control"], fields["digests"]) as remote:
            assert remote.info()["digests"] == fields["digests"]
            remote.register_write("bloom_0", 0, 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30.0) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_process_fails_when_an_interface_cannot_be_opened() -> None:
    proc = _start_process("-i", "1@p4lb-nonexist", "--control", "tcp://127.0.0.1:*")
    _, err = proc.communicate(timeout=30.0)
    assert proc.returncode == 1
    assert "cannot start" in err


def test_process_fails_when_the_control_address_is_taken() -> None:
    taken: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REP)
    taken.setsockopt(zmq.LINGER, 0)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        proc = _start_process("--control", f"tcp://127.0.0.1:{port}")
        _, err = proc.communicate(timeout=30.0)
        assert proc.returncode == 1
        assert "cannot start" in err
    finally:
        taken.close(0)


def test_a_port_number_given_twice_is_refused() -> None:
    assert main(["-i", "1@veth1", "-i", "1@veth2", "--control", "tcp://127.0.0.1:*"]) == 2
