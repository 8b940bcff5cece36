"""Differential test: the same seeded random traffic through p4model and through BMv2 must give
the same frames and digests, packet by packet (skipped unless p4c and simple_switch are present).

The vectors check chosen cases; this explores the corners between them: TCP flags, UDP checksum
0, TTL 0-2, IPv4 options and fragments, truncated and non-IPv4 frames, Ethernet trailers, bad
checksums, conn_table hits and the return path, while the active version flips and Bloom bits
accumulate under changing epochs, and with an affinity VIP and an affinity_table entry.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from bmv2_harness import Bmv2Switch, Compiled, add_bmv2_python_path, compile_once

from p4model import Switch

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "p4src" / "loadbalancer.p4"
MISSING = [tool for tool in ("p4c", "simple_switch") if shutil.which(tool) is None]
add_bmv2_python_path()
NO_PYTHON = [m for m in ("runtime_CLI", "bm_runtime", "thrift") if not importlib.util.find_spec(m)]

pytestmark = [
    pytest.mark.bmv2,
    pytest.mark.skipif(bool(MISSING), reason=f"not on PATH: {', '.join(MISSING)}"),
    pytest.mark.skipif(bool(NO_PYTHON), reason=f"BMv2 Python modules missing: {NO_PYTHON}"),
]

PACKETS = 400
CLIENTS = ["10.0.1.2", "10.0.1.3", "10.0.3.7"]
VIPS = [
    ("10.0.0.100", 80, 6),
    ("10.0.0.100", 53, 17),
    ("10.0.0.101", 443, 6),
    ("10.0.0.101", 80, 6),
]
DIPS = [("10.0.2.2", 8080), ("10.0.2.3", 8080), ("10.0.2.200", 9000)]
SETUP: list[tuple[str, str, list[str], list[str]]] = [
    ("ipv4_lpm", "forward", ["10.0.1.0/24"], ["1", "00:01:0a:00:01:01", "00:00:0a:00:01:02"]),
    ("ipv4_lpm", "forward", ["10.0.2.0/24"], ["2", "00:01:0a:00:02:01", "00:00:0a:00:02:02"]),
    ("ipv4_lpm", "forward", ["10.0.2.128/25"], ["4", "00:01:0a:00:02:81", "00:00:0a:00:02:82"]),
    ("ipv4_lpm", "forward", ["10.0.0.0/24"], ["3", "00:01:0a:00:00:01", "00:00:0a:00:00:02"]),
    ("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["0", "0"]),
    ("vip_table", "set_pool", ["10.0.0.100", "53", "17"], ["1", "0"]),
    ("vip_table", "set_pool", ["10.0.0.101", "443", "6"], ["2", "1"]),  # no DIPs: drop
    ("vip_table", "set_pool", ["10.0.0.101", "80", "6"], ["0", "1"]),  # affinity, pool 0
    ("affinity_table", "rewrite_dst", ["10.0.1.3", "10.0.0.101", "80", "6"], ["10.0.2.3", "8080"]),
    ("dip_table", "rewrite_dst", ["0", "0", "0x0000/1"], ["10.0.2.2", "8080"]),
    ("dip_table", "rewrite_dst", ["0", "0", "0x8000/1"], ["10.0.2.3", "8080"]),
    ("dip_table", "rewrite_dst", ["0", "0", "0xc000/2"], ["10.0.2.200", "9000"]),
    ("dip_table", "rewrite_dst", ["1", "0", "0/0"], ["10.0.2.3", "8080"]),
    ("dip_table", "rewrite_dst", ["2", "0", "0x4000/2"], ["10.0.2.2", "8080"]),
    ("dip_table", "rewrite_dst", ["0", "1", "0/0"], ["10.0.2.2", "5353"]),
    ("dip_table", "rewrite_dst", ["1", "1", "0/1"], ["10.0.2.200", "5353"]),
    ("dip_reverse", "rewrite_src", ["10.0.2.2", "8080", "6"], ["10.0.0.100", "80"]),
    ("dip_reverse", "rewrite_src", ["10.0.2.2", "5353", "17"], ["10.0.0.100", "53"]),
    (
        "conn_table",
        "rewrite_dst",
        ["10.0.1.2", "10.0.0.100", "40000", "80", "6"],
        ["10.0.2.200", "9000"],
    ),
    (
        "conn_table",
        "rewrite_dst",
        ["10.0.1.3", "10.0.0.100", "40001", "53", "17"],
        ["10.0.2.2", "8080"],
    ),
]


def _checksum(data: bytes) -> int:
    total = sum(
        int.from_bytes(data[i : i + 2].ljust(2, b"\0"), "big") for i in range(0, len(data), 2)
    )
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


def random_frame(rng: random.Random) -> bytes:
    """One Ethernet frame from a mix of balanced, returning, routed and malformed traffic."""
    kind = rng.choice(["vip", "vip", "vip", "conn", "reply", "other", "odd"])
    src, sport = rng.choice(CLIENTS), rng.choice([40000, 40001, rng.randrange(1024, 65536)])
    dst, dport, proto = rng.choice(VIPS)
    if kind == "conn":
        src, dst, sport, dport, proto = "10.0.1.2", "10.0.0.100", 40000, 80, 6
    elif kind == "reply":
        (src, sport), dst, dport = rng.choice(DIPS), rng.choice(CLIENTS), rng.randrange(1024, 65536)
        proto = rng.choice([6, 17])
    elif kind == "other":
        dst, dport = rng.choice(["10.0.0.100", "10.0.2.9", "10.9.9.9"]), rng.randrange(1, 65536)
    payload = rng.randbytes(rng.choice([0, 0, 1, 7, 40]))
    if proto == 6:
        flags = rng.choice([0x02, 0x10, 0x18, 0x11, 0x04, 0x14, 0x01])
        l4 = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + rng.randbytes(8)
        l4 += bytes([0x50, flags]) + b"\x20\x00\x00\x00\x00\x00"
        csum_at = 16
    else:
        l4 = sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
        l4 += (8 + len(payload)).to_bytes(2, "big") + b"\x00\x00"
        csum_at = 6
    options = b"\x01\x01\x01\x00" if kind == "odd" and rng.random() < 0.3 else b""
    flags_frag = rng.choice([0x4000, 0x0000, 0x2000, 0x0010]) if kind == "odd" else 0x4000
    ttl = rng.choice([0, 1, 2, 64]) if kind == "odd" else 64
    total = 20 + len(options) + len(l4) + len(payload)
    header = bytes([0x45 + len(options) // 4, 0]) + total.to_bytes(2, "big")
    header += rng.randbytes(2) + flags_frag.to_bytes(2, "big") + bytes([ttl, proto, 0, 0])
    header += _ip(src) + _ip(dst) + options
    header = header[:10] + _checksum(header).to_bytes(2, "big") + header[12:]
    pseudo = _ip(src) + _ip(dst) + bytes([0, proto]) + (len(l4) + len(payload)).to_bytes(2, "big")
    csum = _checksum(pseudo + l4 + payload)
    if not (proto == 17 and rng.random() < 0.2):  # else a UDP checksum of 0 ("none")
        l4 = l4[:csum_at] + csum.to_bytes(2, "big") + l4[csum_at + 2 :]
    if kind == "odd" and rng.random() < 0.2:
        header = header[:10] + b"\xde\xad" + header[12:]  # wrong IPv4 checksum
    ether = rng.choice([b"\x08\x00", b"\x08\x00", b"\x86\xdd"]) if kind == "odd" else b"\x08\x00"
    frame = bytes.fromhex("00010a00010100000a000102") + ether + header + l4 + payload
    if kind == "odd" and rng.random() < 0.2:
        frame = frame[: rng.randrange(10, len(frame))]
    elif kind == "odd" and rng.random() < 0.3:
        frame += rng.randbytes(rng.randrange(1, 12))  # Ethernet trailer beyond total_len
    elif kind == "odd" and rng.random() < 0.2:
        frame = frame[:14] + bytes([0x65]) + frame[15:]  # IP version 6 under EtherType IPv4
    return frame


@pytest.fixture(scope="module")
def compiled() -> Compiled:
    """The program compiled once per session."""
    result = compile_once(PROGRAM)
    assert result.returncode == 0, result.output
    return result


@pytest.fixture
def switch(compiled: Compiled, tmp_path: Path) -> Iterator[Bmv2Switch]:
    """A fresh simple_switch."""
    with Bmv2Switch(compiled.json_path, tmp_path) as sw:
        yield sw


@pytest.mark.parametrize("seed", [1, 2])
def test_model_and_bmv2_agree_on_random_traffic(switch: Bmv2Switch, seed: int) -> None:
    """Frames, digests and Bloom registers agree packet by packet."""
    rng = random.Random(seed)
    model = Switch()
    for table, action, keys, params in SETUP:
        assert model.table_add(table, action, keys, list(params)) == switch.table_add(
            table, action, keys, list(params)
        )
    diffs: list[str] = []
    epochs = [1, 2, 3, 4]
    for number in range(PACKETS):
        if rng.random() < 0.05:
            # A flip, sometimes with a fresh epoch (or 0) for one slot.
            epochs[rng.randrange(4)] = rng.choice([0, rng.randrange(1, 1 << 32)])
            params = [str(rng.randrange(4)), *map(str, epochs)]
            model.table_set_default("version_config", "set_versions", params)
            switch.table_set_default("version_config", "set_versions", params)
        frame, port = random_frame(rng), rng.choice([1, 2, 3])
        want = (model.process(port, frame), model.pop_digests())
        got = (switch.process(port, frame), switch.pop_digests())
        if got != want:
            diffs.append(f"#{number} in {port} {frame.hex()}\n  model {want!r}\n  bmv2  {got!r}")
    for slot in range(4):
        name = f"bloom_{slot}"
        if model.register_read(name) != switch.register_read(name):
            diffs.append(f"{name} differs")
    assert not diffs, f"{len(diffs)} differences:\n" + "\n".join(diffs[:10])
