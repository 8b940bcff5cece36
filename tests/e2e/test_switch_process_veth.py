"""p4lb-switch forwarding real traffic between two network namespaces over veth pairs (root),
programmed and heard over P4Runtime by the controller's client (through `BlockingSwitch`)."""

from __future__ import annotations

import ast
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.switch.blocking import BlockingSwitch
from p4model import Digest

pytestmark = [
    pytest.mark.mininet,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("ethtool"),
        reason="needs root, ip and ethtool",
    ),
]

VIP, VPORT, DPORT = "10.0.0.100", 80, 8080
OFFLOADS = ["tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off"]


@dataclass(frozen=True)
class Host:
    """One namespace with one veth to switch port ``port``."""

    port: int
    netns: str
    iface: str  # inside the namespace
    switch_iface: str  # in the root namespace, attached to the switch
    ip: str
    mac: str
    gateway_mac: str


@dataclass
class Network:
    hosts: dict[int, Host]
    remote: BlockingSwitch
    switch: subprocess.Popen[str]


def run(
    *cmd: str, netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command (in a namespace), capturing its output."""
    full = ["ip", "netns", "exec", netns, *cmd] if netns else list(cmd)
    return subprocess.run(full, capture_output=True, text=True, check=check, timeout=60)


def make_hosts() -> dict[int, Host]:
    tag = f"{os.getpid() % 100000}"
    return {
        n: Host(
            port=n,
            netns=f"p4lbh{n}-{tag}",
            iface=f"p4h{tag}-{n}",
            switch_iface=f"p4s{tag}-{n}",
            ip=f"10.0.{n}.2",
            mac=f"00:00:0a:00:0{n}:02",
            gateway_mac=f"00:01:0a:00:0{n}:01",
        )
        for n in (1, 2)
    }


def create_host(host: Host) -> None:
    ns, ifc = host.netns, host.iface
    run("ip", "netns", "add", ns)
    run("ip", "link", "add", host.switch_iface, "type", "veth", "peer", "name", ifc, "netns", ns)
    run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", netns=ns)
    run("ip", "link", "set", "lo", "up", netns=ns)
    run("ip", "link", "set", ifc, "address", host.mac, netns=ns)
    run("ip", "addr", "add", f"{host.ip}/24", "dev", ifc, netns=ns)
    run("ip", "link", "set", ifc, "up", netns=ns)
    gateway = host.ip.rsplit(".", 1)[0] + ".1"
    run(
        "ip",
        "neigh",
        "add",
        gateway,
        "lladdr",
        host.gateway_mac,
        "dev",
        ifc,
        "nud",
        "permanent",
        netns=ns,
    )
    run("ip", "route", "add", "default", "via", gateway, netns=ns)
    run("ethtool", "-K", ifc, *OFFLOADS, netns=ns, check=False)  # some are fixed: ignore errors
    # The switch side: no IPv6 chatter, no IPv4 forwarding by the root namespace's stack.
    conf = Path("/proc/sys/net")
    (conf / "ipv6/conf" / host.switch_iface / "disable_ipv6").write_text("1")
    (conf / "ipv4/conf" / host.switch_iface / "forwarding").write_text("0")
    run("ip", "link", "set", host.switch_iface, "up")
    run("ethtool", "-K", host.switch_iface, *OFFLOADS, check=False)
    features = run("ethtool", "-k", ifc, netns=ns).stdout
    assert "tx-checksumming: off" in features, features


def destroy_host(host: Host) -> None:
    run("ip", "netns", "del", host.netns, check=False)  # takes the veth pair with it
    run("ip", "link", "del", host.switch_iface, check=False)


def start_switch(hosts: dict[int, Host], log: Path) -> tuple[subprocess.Popen[str], str]:
    """p4lb-switch on the hosts' switch ends, P4Runtime on a free port; (process, HOST:PORT)."""
    args = [f"{h.port}@{h.switch_iface}" for h in hosts.values()]
    with log.open("w") as stderr:  # its counters, logged when it stops, are checked at the end
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "p4model",
                *[a for s in args for a in ("-i", s)],
                "--p4runtime",
                "127.0.0.1:0",
                "--log-level",
                "info",
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30.0)
    line = proc.stdout.readline().split() if ready else []
    if line[:2] != ["p4lb-switch", "ready"]:
        proc.kill()
        proc.wait()
        raise AssertionError(f"p4lb-switch did not start: {line!r}")
    fields = dict(item.split("=", 1) for item in line[2:])
    return proc, fields["p4runtime"]


def final_counters(log: Path) -> dict[str, int]:
    """The packet counters p4lb-switch logged when it stopped."""
    for line in log.read_text().splitlines():
        _, found, counters = line.partition("stopped; counters ")
        if found:
            parsed: dict[str, int] = ast.literal_eval(counters)
            return parsed
    raise AssertionError(f"p4lb-switch logged no counters: {log.read_text()[-2000:]}")


def install(remote: BlockingSwitch, hosts: dict[int, Host]) -> None:
    for h in hosts.values():
        remote.table_add("ipv4_lpm", "forward", [f"{h.ip}/32"], [str(h.port), h.gateway_mac, h.mac])
    dip = hosts[2].ip
    remote.table_add("vip_table", "set_pool", [VIP, str(VPORT), "6"], ["0", "0"])
    for bucket in ("0x0000/1", "0x8000/1"):
        remote.table_add("dip_table", "rewrite_dst", ["0", "0", bucket], [dip, str(DPORT)])
    remote.table_add("dip_reverse", "rewrite_src", [dip, str(DPORT), "6"], [VIP, str(VPORT)])


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    hosts = make_hosts()
    log = tmp_path_factory.mktemp("veth") / "switch.log"
    switch: subprocess.Popen[str] | None = None
    remote: BlockingSwitch | None = None
    try:
        for host in hosts.values():
            create_host(host)
        switch, address = start_switch(hosts, log)
        remote = BlockingSwitch(f"p4rt://{address}", timeout=10.0)
        install(remote, hosts)
        remote.subscribe()
        yield Network(hosts, remote, switch)
        remote.close()
        remote = None
        switch.terminate()
        assert switch.wait(30.0) == 0, "p4lb-switch did not exit cleanly on SIGTERM"
        counters = final_counters(log)
        assert counters.get("process_errors", 0) == 0, counters
        assert not any(k.startswith("tx_errors") for k in counters), counters
    finally:
        if remote is not None:
            remote.close()
        if switch is not None and switch.poll() is None:
            switch.kill()
            switch.wait()
        for host in hosts.values():
            destroy_host(host)


@pytest.mark.parametrize(("src", "dst"), [(1, 2), (2, 1)])
def test_ping_is_routed_between_namespaces(network: Network, src: int, dst: int) -> None:
    source, target = network.hosts[src], network.hosts[dst]
    result = run(
        "ping", "-c", "3", "-i", "0.2", "-W", "5", target.ip, netns=source.netns, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0% packet loss" in result.stdout, result.stdout


ECHO_SERVER = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(1)
srv.settimeout(60)
print("ready", flush=True)
conn, peer = srv.accept()
conn.settimeout(60)
print(peer[0], peer[1], flush=True)
while data := conn.recv(65536):
    conn.sendall(data)
conn.close()
"""

ECHO_CLIENT = """
import socket, sys
payload = bytes(range(256)) * 256
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
print(conn.getsockname()[1], flush=True)
if sys.argv[3:] == ["wait"]:
    sys.stdin.readline()  # the test installs the connection's conn_table entry meanwhile
conn.sendall(payload)
conn.shutdown(socket.SHUT_WR)
got = bytearray()
while data := conn.recv(65536):
    got += data
print("ok" if got == payload else f"mismatch {len(got)} bytes", flush=True)
"""


def in_netns(host: Host, script: str, *args: str) -> subprocess.Popen[str]:
    """Start a Python script in a host's namespace, with pipes."""
    cmd = ["ip", "netns", "exec", host.netns, sys.executable, "-c", script, *args]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The next line a process prints, failing after ``timeout`` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "process printed nothing"
    return proc.stdout.readline().strip()


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """A list of started processes, all killed on the way out."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def test_tcp_to_the_vip_reaches_the_dip_and_raises_a_digest(network: Network) -> None:
    client, server = network.hosts[1], network.hosts[2]
    with processes() as procs:
        procs.append(echo := in_netns(server, ECHO_SERVER, server.ip, str(DPORT)))
        assert read_line(echo) == "ready"
        network.remote.digests.clear()  # forget older digests
        procs.append(talker := in_netns(client, ECHO_CLIENT, VIP, str(VPORT)))
        sport = int(read_line(talker))
        assert read_line(talker) == "ok"
        peer_ip, _ = read_line(echo).split()
        assert peer_ip == client.ip  # the DIP sees the real client
        assert echo.wait(30.0) == talker.wait(30.0) == 0
    wanted = Digest("new_conn", client.ip, VIP, sport, VPORT, 6, 0, server.ip, DPORT)
    assert network.remote.wait_digest(lambda d: d == wanted) == wanted


def test_learned_connection_hits_conn_table_and_its_fin_raises_teardown(network: Network) -> None:
    client, server = network.hosts[1], network.hosts[2]
    remote = network.remote
    with processes() as procs:
        procs.append(echo := in_netns(server, ECHO_SERVER, server.ip, str(DPORT)))
        assert read_line(echo) == "ready"
        procs.append(talker := in_netns(client, ECHO_CLIENT, VIP, str(VPORT), "wait"))
        sport = int(read_line(talker))
        learned = remote.wait_digest(lambda d: d.kind == "new_conn" and d.src_port == sport)
        keys = [learned.src_ip, learned.dst_ip, str(sport), str(learned.dst_port), "6"]
        handle = remote.table_add(
            "conn_table", "rewrite_dst", keys, [learned.dip_ip, str(learned.dip_port)]
        )
        try:
            assert talker.stdin is not None
            talker.stdin.write("go\n")
            talker.stdin.flush()
            assert read_line(talker) == "ok"
            # Only a conn_table hit raises teardown: this proves the entry carried the flow.
            teardown = remote.wait_digest(lambda d: d.kind == "teardown" and d.src_port == sport)
            assert (teardown.dip_ip, teardown.dip_port) == (server.ip, DPORT)
        finally:
            remote.table_delete("conn_table", handle)
