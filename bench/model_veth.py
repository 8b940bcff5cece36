"""Packets/s through a `p4lb-switch` process between two veth pairs (root only; part of `model`).

Two veth pairs in the root namespace: the switch holds one end of each (ports 1 and 2); this
process sends prebuilt UDP frames into the far end of pair 1 with an AF_PACKET socket and counts
what comes out of the far end of pair 2. At most ``window`` frames are in flight, so nothing is lost
to a full socket buffer and the figure is the switch's sustained forwarding rate, not the kernel's.
The host ends carry no addresses and the frames' MACs belong to no interface, so the kernel drops
them after the packet sockets have seen them.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.switch.blocking import BlockingSwitch
from p4model.afpacket import (
    ETH_P_ALL,
    PACKET_IGNORE_OUTGOING,
    PACKET_OUTGOING,
    SO_RCVBUFFORCE,
    SOL_PACKET,
)

CLIENT, VIP, DIP = "10.0.1.2", "10.0.0.100", "10.0.2.2"
GW1, GW2, H1, H2 = (
    "00:01:0a:00:01:01",
    "00:01:0a:00:02:01",
    "00:00:0a:00:01:02",
    "00:00:0a:00:02:02",
)
VPORT = DPORT = 9000
OFFLOADS = ["tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off"]


@dataclass(frozen=True)
class Case:
    """One measured path: where the frames go and whether each one is a new flow."""

    name: str
    dst_ip: str
    new_flows: bool


def udp_frame(
    src_ip: str, dst_ip: str, sport: int, dport: int, payload: bytes = b"x" * 18
) -> bytes:
    """An Ethernet/IPv4/UDP frame from host 1 to the switch (UDP checksum 0: none)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
        socket.inet_aton(src_ip), socket.inet_aton(dst_ip),
    )  # fmt: skip
    words = struct.unpack("!10H", ip)
    total = sum(words)
    total = (total & 0xFFFF) + (total >> 16)
    ip = ip[:10] + struct.pack("!H", ~(total + (total >> 16)) & 0xFFFF) + ip[12:]
    return _mac(GW1) + _mac(H1) + b"\x08\x00" + ip + udp


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _run(*cmd: str, check: bool = True) -> None:
    subprocess.run(cmd, check=check, capture_output=True, timeout=60)


@contextlib.contextmanager
def veth_pairs(tag: str) -> Iterator[tuple[list[str], list[str]]]:
    """Two veth pairs (host ends, switch ends), quiet and offload-free; deleted on the way out."""
    hosts, switches = [f"p4bh{tag}-{n}" for n in (1, 2)], [f"p4bs{tag}-{n}" for n in (1, 2)]
    try:
        for host, sw in zip(hosts, switches, strict=True):
            _run("ip", "link", "add", host, "type", "veth", "peer", "name", sw)
            for ifc in (host, sw):
                (Path("/proc/sys/net/ipv6/conf") / ifc / "disable_ipv6").write_text("1")
                (Path("/proc/sys/net/ipv4/conf") / ifc / "forwarding").write_text("0")
                _run("ethtool", "-K", ifc, *OFFLOADS, check=False)
                _run("ip", "link", "set", ifc, "up")
        yield hosts, switches
    finally:
        for host in hosts:
            _run("ip", "link", "del", host, check=False)


@contextlib.contextmanager
def switch_process(switch_ifaces: Sequence[str]) -> Iterator[BlockingSwitch]:
    """A p4lb-switch on the given interfaces (ports 1, 2, ...) and a P4Runtime client for it."""
    cmd = [sys.executable, "-m", "p4model", "--log-level", "warning"]
    for port, ifc in enumerate(switch_ifaces, start=1):
        cmd += ["-i", f"{port}@{ifc}"]
    cmd += ["--p4runtime", "127.0.0.1:0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        line = proc.stdout.readline().split() if ready else []
        if line[:2] != ["p4lb-switch", "ready"]:
            raise RuntimeError(f"p4lb-switch did not start: {line!r}")
        fields = dict(item.split("=", 1) for item in line[2:])
        with BlockingSwitch(f"p4rt://{fields['p4runtime']}", timeout=30.0) as remote:
            yield remote
    finally:
        proc.terminate()
        try:
            proc.wait(10.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def install(remote: BlockingSwitch, hit_sport: int) -> None:
    """Routes both ways, a UDP VIP with one DIP, and a conn_table entry for one flow."""
    remote.table_add("ipv4_lpm", "forward", [f"{DIP}/32"], ["2", GW2, H2])
    remote.table_add("ipv4_lpm", "forward", [f"{CLIENT}/32"], ["1", GW1, H1])
    remote.table_add("vip_table", "set_pool", [VIP, str(VPORT), "17"], ["0", "0"])
    for bucket in ("0x0000/1", "0x8000/1"):
        remote.table_add("dip_table", "rewrite_dst", ["0", "0", bucket], [DIP, str(DPORT)])
    keys = [CLIENT, VIP, str(hit_sport), str(VPORT), "17"]
    remote.table_add("conn_table", "rewrite_dst", keys, [DIP, str(DPORT)])


def _packet_socket(iface: str, protocol: int) -> socket.socket:
    """A packet socket on ``iface``; protocol 0 only sends, ETH_P_ALL also receives."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((iface, protocol))
    with contextlib.suppress(OSError):
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    return sock


def _drain(rx: socket.socket) -> int:
    """Count the UDP frames to the DIP waiting on ``rx``."""
    arrived = 0
    while True:
        try:
            frame, address = rx.recvfrom(2048, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return arrived
        if address[2] != PACKET_OUTGOING and frame[23:24] == b"\x11" and len(frame) > 37:
            arrived += frame[36:38] == struct.pack("!H", DPORT)


def blast(
    tx: socket.socket, rx: socket.socket, frames: Sequence[bytes], count: int, window: int
) -> tuple[int, float]:
    """Send ``count`` frames keeping at most ``window`` in flight; (arrived, seconds)."""
    sent = arrived = 0
    start = last = time.perf_counter()
    while arrived < count:
        while sent < count and sent - arrived < window:
            tx.send(frames[sent % len(frames)])
            sent += 1
        if select.select([rx], [], [], 1.0)[0]:
            arrived += _drain(rx)
            last = time.perf_counter()
        elif time.perf_counter() - last > 2.0:  # the rest is lost
            break
    return arrived, last - start


def veth_rows(count: int = 20000, window: int = 128, repeats: int = 3) -> list[dict[str, Any]]:
    """Packets/s through p4lb-switch (best of ``repeats``) for routed, hit and new-flow traffic."""
    if os.geteuid() != 0:
        return []
    if count * repeats > 60000:
        raise ValueError(
            f"count * repeats must be <= 60000 (distinct UDP ports), got {count * repeats}"
        )
    hit_sport, first_new_sport = 1000, 4000
    cases = [
        Case("p4lb-switch veth: routed only (no VIP)", DIP, new_flows=False),
        Case("p4lb-switch veth: conn_table hit", VIP, new_flows=False),
        Case("p4lb-switch veth: new flow (Bloom + LPM)", VIP, new_flows=True),
    ]
    rows: list[dict[str, Any]] = []
    tag = str(os.getpid() % 100000)
    with veth_pairs(tag) as (hosts, switches), switch_process(switches) as remote:
        install(remote, hit_sport)  # no digest is enabled: the switch buffers none
        tx, rx = _packet_socket(hosts[0], 0), _packet_socket(hosts[1], ETH_P_ALL)
        with tx, rx:
            if blast(tx, rx, [udp_frame(CLIENT, DIP, hit_sport, DPORT)], 100, window)[0] < 100:
                raise RuntimeError("p4lb-switch does not forward between the veth pairs")
            for case in cases:
                runs = []
                for run in range(repeats):
                    first = first_new_sport + run * count
                    sports = range(first, first + count) if case.new_flows else [hit_sport]
                    frames = [udp_frame(CLIENT, case.dst_ip, p, VPORT) for p in sports]
                    runs.append(blast(tx, rx, frames, count, window))
                arrived, seconds = max(runs, key=lambda r: r[0] / r[1] if r[1] > 0 else 0.0)
                rows.append(
                    {
                        "case": case.name,
                        "packets": count,
                        "lost": count - arrived,
                        "seconds": round(seconds, 3),
                        "pkts_per_s": arrived / seconds if seconds > 0 else 0.0,
                    }
                )
    return rows
