"""Generate the conformance vectors (*.vec) in this folder, independently of p4model.

Frames and checksums come from scapy; hashes from zlib.crc32 and a bitwise CRC-16/ARC written
here; the expected behaviour from DESIGN §2 and the comment block of p4src/loadbalancer.p4.
Run `python tests/conformance/make_vectors.py` after changing it and commit the .vec files.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

HERE = Path(__file__).resolve().parent
SETTINGS = HERE.parent.parent / "p4src" / "settings.p4"


def _define(name: str) -> int:
    match = re.search(rf"^#define\s+{name}\s+(\d+)\s*$", SETTINGS.read_text(), re.MULTILINE)
    assert match is not None, name
    return int(match.group(1))


HASH_BITS = _define("HASH_BITS")
BLOOM_BITS = _define("BLOOM_BITS")
assert _define("BLOOM_HASHES") == 2, "the Bloom vectors assume two hash functions"

# Routes: (prefix, port, switch MAC, next-hop MAC)
ROUTES = [
    ("10.0.1.0/24", 1, "00:01:0a:00:01:01", "00:00:0a:00:01:02"),
    ("10.0.2.0/24", 2, "00:01:0a:00:02:01", "00:00:0a:00:02:02"),
    ("10.0.2.128/25", 4, "00:01:0a:00:02:81", "00:00:0a:00:02:82"),
    ("10.0.0.0/24", 3, "00:01:0a:00:00:01", "00:00:0a:00:00:02"),
]
CLIENT = "10.0.1.2"
VIP = "10.0.0.100"
CLIENT_MAC = "00:00:0a:00:01:02"
SWITCH_MAC = "00:01:0a:00:01:01"


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC, bit by bit (reflected poly 0xA001, init 0)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def ones_add(a: int, b: int) -> int:
    """16-bit ones'-complement addition."""
    total = a + b
    return (total & 0xFFFF) + (total >> 16)


def tuple_bytes(src: str, dst: str, sport: int, dport: int, proto: int) -> bytes:
    """The 104-bit 5-tuple as BMv2 packs it (all fields byte-aligned)."""
    return struct.pack(
        "!4s4sHHB", IPv4Address(src).packed, IPv4Address(dst).packed, sport, dport, proto
    )


def flow_hash(src: str, dst: str, sport: int, dport: int, proto: int) -> int:
    """crc32 over {src, dst, sport, dport, proto} mod 2^HASH_BITS."""
    return zlib.crc32(tuple_bytes(src, dst, sport, dport, proto)) % (1 << HASH_BITS)


def bloom_indices(src: str, dst: str, sport: int, dport: int, proto: int) -> tuple[int, int]:
    """h0 = crc16 over the 5-tuple, h1 = crc32 over it with endpoints swapped, mod BLOOM_BITS."""
    h0 = crc16_arc(tuple_bytes(src, dst, sport, dport, proto)) % BLOOM_BITS
    h1 = zlib.crc32(tuple_bytes(dst, src, dport, sport, proto)) % BLOOM_BITS
    return h0, h1


def owner(entries: Sequence[tuple[int, int, str]], value: int) -> str:
    """The DIP of the longest prefix (value, length) matching a HASH_BITS-wide value."""
    best = (-1, "")
    for prefix, length, dip in entries:
        shift = HASH_BITS - length
        if value >> shift == prefix >> shift and length > best[0]:
            best = (length, dip)
    assert best[0] >= 0, value
    return best[1]


def route_for(dst: str) -> tuple[int, str, str] | None:
    """(port, switch MAC, next-hop MAC) of the longest matching route, or None."""
    best: tuple[int, tuple[int, str, str]] | None = None
    for prefix, port, smac, dmac in ROUTES:
        net, length = prefix.split("/")
        mask = ((1 << int(length)) - 1) << (32 - int(length))
        if int(IPv4Address(dst)) & mask == int(IPv4Address(net)) and (
            best is None or int(length) > best[0]
        ):
            best = (int(length), (port, smac, dmac))
    return None if best is None else best[1]


def tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    *,
    flags: str = "S",
    payload: bytes = b"",
    **ip: Any,
) -> Packet:
    """A client frame carrying TCP."""
    return (
        Ether(src=CLIENT_MAC, dst=SWITCH_MAC)
        / IP(src=src, dst=dst, **ip)
        / TCP(sport=sport, dport=dport, flags=flags, seq=1000, window=8192)
        / Raw(payload)
    )


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"", **kw: Any) -> Packet:
    """A client frame carrying UDP."""
    return (
        Ether(src=CLIENT_MAC, dst=SWITCH_MAC)
        / IP(src=src, dst=dst)
        / UDP(sport=sport, dport=dport, **kw)
        / Raw(payload)
    )


def forwarded(
    frame: Packet,
    dst: tuple[str, int] | None = None,
    src: tuple[str, int] | None = None,
    keep_l4_checksum: bool = False,
) -> tuple[int, bytes]:
    """The frame as the switch should send it: routed, TTL - 1, optionally rewritten.

    Checksums are recomputed by scapy: IPv4 always, TCP/UDP when something was rewritten.
    """
    out = Ether(bytes(frame))
    ip = out[IP]
    l4 = out.getlayer(TCP)
    if l4 is None:
        l4 = out.getlayer(UDP)
    if dst is not None:
        ip.dst = dst[0]
        assert l4 is not None
        l4.dport = dst[1]
    if src is not None:
        ip.src = src[0]
        assert l4 is not None
        l4.sport = src[1]
    route = route_for(ip.dst)
    assert route is not None
    port, smac, dmac = route
    out.src, out.dst = smac, dmac
    ip.ttl -= 1
    del ip.chksum
    if l4 is not None and (dst or src) and not keep_l4_checksum:
        del l4.chksum
    return port, bytes(out)


class VectorFile:
    """Lines of one .vec file."""

    def __init__(self, name: str, title: str) -> None:
        self.name = name
        self.lines = [f"# {title}", "# Generated by make_vectors.py: do not edit by hand.", ""]

    def comment(self, text: str) -> None:
        self.lines += ["", f"# {text}"]

    def routes(self) -> None:
        for prefix, port, smac, dmac in ROUTES:
            self.add("ipv4_lpm", [prefix], "forward", [str(port), smac, dmac])

    def add(self, table: str, keys: Sequence[str], action: str, params: Sequence[str]) -> None:
        self.lines.append(f"add {table} {' '.join(keys)} {action}({', '.join(params)})")

    def set_versions(self, active: int, epochs: Sequence[int]) -> None:
        self.lines.append(
            f"setdefault version_config set_versions({', '.join(map(str, (active, *epochs)))})"
        )

    def register_write(self, name: str, index: int, value: int) -> None:
        self.lines.append(f"register_write {name} {index} {value}")

    def expect_register(self, name: str, index: int, value: int) -> None:
        self.lines.append(f"expect_register {name} {index} {value}")

    def packet(
        self,
        frame: Packet | bytes,
        outputs: Sequence[tuple[int, bytes]] = (),
        digests: Sequence[str] = (),
        port: int = 1,
    ) -> None:
        data = frame if isinstance(frame, bytes) else bytes(frame)
        self.lines.append(f"packet {port} {data.hex()}")
        for out_port, out in outputs:
            self.lines.append(f"expect {out_port} {out.hex()}")
        if not outputs:
            self.lines.append("expect_nothing")
        for digest in digests:
            self.lines.append(f"digest {digest}")

    def write(self) -> None:
        (HERE / f"{self.name}.vec").write_text("\n".join(self.lines) + "\n")


def new_conn(frame: Packet, version: int, dip: tuple[str, int]) -> str:
    ip, l4 = frame[IP], frame[IP].payload
    return (
        f"new_conn {ip.src} {ip.dst} {l4.sport} {l4.dport} {ip.proto} {version} {dip[0]} {dip[1]}"
    )


def teardown(frame: Packet, dip: tuple[str, int]) -> str:
    ip, l4 = frame[IP], frame[IP].payload
    return f"teardown {ip.src} {ip.dst} {l4.sport} {l4.dport} {ip.proto} 0 {dip[0]} {dip[1]}"


GENERATORS: list[Callable[[], VectorFile]] = []


def generator(fn: Callable[[], VectorFile]) -> Callable[[], VectorFile]:
    GENERATORS.append(fn)
    return fn


@generator
def routing() -> VectorFile:
    v = VectorFile("routing", "Routing: LPM, MAC rewrite, TTL decrement, drops; never port 0.")
    v.routes()
    v.comment("TCP and UDP to a server: routed, MACs rewritten, TTL - 1, IPv4 checksum updated")
    frame = tcp(CLIENT, "10.0.2.2", 40000, 22, flags="A", payload=b"ssh")
    v.packet(frame, [forwarded(frame)])
    frame = udp(CLIENT, "10.0.2.2", 40000, 5000, payload=b"datagram")
    v.packet(frame, [forwarded(frame)])
    v.comment("longest prefix wins: 10.0.2.200 matches /24 (port 2) and /25 (port 4)")
    frame = tcp(CLIENT, "10.0.2.200", 40000, 22, flags="A")
    v.packet(frame, [forwarded(frame)])
    v.comment("other IPv4 protocols are routed (ICMP-like payload, protocol 1)")
    frame = (
        Ether(src=CLIENT_MAC, dst=SWITCH_MAC)
        / IP(src=CLIENT, dst="10.0.2.2", proto=1)
        / Raw(b"\x08\x00\xf7\xff\x00\x00\x00\x00")
    )
    v.packet(frame, [forwarded(frame)])
    v.comment("TTL 2 leaves with TTL 1; TTL 1 and TTL 0 are dropped")
    frame = tcp(CLIENT, "10.0.2.2", 40000, 22, flags="A", ttl=2)
    v.packet(frame, [forwarded(frame)])
    v.packet(tcp(CLIENT, "10.0.2.2", 40000, 22, flags="A", ttl=1))
    v.packet(tcp(CLIENT, "10.0.2.2", 40000, 22, flags="A", ttl=0))
    v.comment("no route: dropped (not sent to port 0)")
    v.packet(tcp(CLIENT, "192.168.7.7", 40000, 22, flags="A"))
    v.comment("non-IPv4 (ARP) and truncated frames: dropped")
    v.packet(Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=CLIENT, pdst="10.0.1.1"))
    v.packet(bytes(tcp(CLIENT, "10.0.2.2", 40000, 22))[:30])
    v.comment("a checksum that was wrong stays wrong by the same amount (no silent repair)")
    frame = Ether(bytes(tcp(CLIENT, "10.0.2.2", 40000, 22, flags="A")))
    good_port, good = forwarded(frame)
    frame[IP].chksum = ones_add(frame[IP].chksum, 0x0101)
    bad = bytearray(good)
    struct.pack_into("!H", bad, 24, ones_add(struct.unpack_from("!H", good, 24)[0], 0x0101))
    v.packet(frame, [(good_port, bytes(bad))])
    return v


def _pool0_buckets() -> list[tuple[int, int, str]]:
    return [
        (0x0000, 1, "10.0.2.2:8080"),
        (0x8000, 1, "10.0.2.3:8080"),
        (0xC000, 2, "10.0.2.4:8080"),
        (0x1000, 4, "10.0.2.200:9000"),
    ]


def _add_buckets(
    v: VectorFile, version: int, pool: int, entries: Sequence[tuple[int, int, str]]
) -> None:
    for prefix, length, dip in entries:
        ip, port = dip.split(":")
        v.add(
            "dip_table",
            [str(version), str(pool), f"0x{prefix:04x}/{length}"],
            "rewrite_dst",
            [ip, port],
        )


def _dip(text: str) -> tuple[str, int]:
    ip, port = text.split(":")
    return ip, int(port)


def _ports_covering(
    entries: Sequence[tuple[int, int, str]], dport: int, proto: int, per_dip: int
) -> list[tuple[int, str]]:
    chosen: list[tuple[int, str]] = []
    counts: dict[str, int] = {}
    sport = 40000
    while any(counts.get(d, 0) < per_dip for _, _, d in entries):
        dip = owner(entries, flow_hash(CLIENT, VIP, sport, dport, proto))
        if counts.get(dip, 0) < per_dip:
            counts[dip] = counts.get(dip, 0) + 1
            chosen.append((sport, dip))
        sport += 1
    return chosen


@generator
def vip_tcp() -> VectorFile:
    v = VectorFile(
        "vip_tcp",
        "TCP to a VIP: the DIP of the flow hash's longest bucket prefix, new_conn digest.",
    )
    v.routes()
    v.add("vip_table", [VIP, "80", "6"], "set_pool", ["0", "0"])
    entries = _pool0_buckets()
    _add_buckets(v, 0, 0, entries)
    for sport, dip in _ports_covering(entries, 80, 6, per_dip=2):
        fh = flow_hash(CLIENT, VIP, sport, 80, 6)
        v.comment(f"sport {sport}: flow hash 0x{fh:04x} -> {dip}")
        payload = b"GET / HTTP/1.0\r\n\r\n!" if sport % 2 else b""
        frame = tcp(CLIENT, VIP, sport, 80, flags="S", payload=payload)
        v.packet(frame, [forwarded(frame, dst=_dip(dip))], [new_conn(frame, 0, _dip(dip))])
    v.comment("DF set (as Linux sends it) is still balanced; odd-length payload")
    sport, dip = _ports_covering(entries, 80, 6, per_dip=1)[0]
    frame = (
        Ether(src=CLIENT_MAC, dst=SWITCH_MAC)
        / IP(src=CLIENT, dst=VIP, flags="DF")
        / TCP(sport=sport, dport=80, flags="PA", seq=5, ack=7)
        / Raw(b"abc")
    )
    v.packet(frame, [forwarded(frame, dst=_dip(dip))], [new_conn(frame, 0, _dip(dip))])
    v.comment("the same flow again (no conn_table entry yet): same DIP, same version")
    v.packet(frame, [forwarded(frame, dst=_dip(dip))], [new_conn(frame, 0, _dip(dip))])
    v.comment("a VIP whose pool has no buckets: dropped, no digest")
    v.add("vip_table", ["10.0.0.101", "80", "6"], "set_pool", ["7", "0"])
    v.packet(tcp(CLIENT, "10.0.0.101", 40000, 80))
    v.comment("a balanced packet whose DIP has no route: dropped, but the digest is still sent")
    v.add("vip_table", ["10.0.0.102", "80", "6"], "set_pool", ["3", "0"])
    _add_buckets(v, 0, 3, [(0, 0, "172.16.0.1:80")])
    frame = tcp(CLIENT, "10.0.0.102", 40000, 80)
    v.packet(frame, [], [new_conn(frame, 0, ("172.16.0.1", 80))])
    v.comment("TTL 1 to a VIP: dropped before balancing, no digest")
    v.packet(tcp(CLIENT, VIP, 40000, 80, ttl=1))
    return v


@generator
def vip_udp() -> VectorFile:
    v = VectorFile("vip_udp", "UDP to a VIP, including a datagram without checksum (0 stays 0).")
    v.routes()
    v.add("vip_table", [VIP, "53", "17"], "set_pool", ["1", "0"])
    entries = [(0x0000, 1, "10.0.2.5:5353"), (0x8000, 1, "10.0.2.6:5353")]
    _add_buckets(v, 0, 1, entries)
    for sport, dip in _ports_covering(entries, 53, 17, per_dip=2):
        frame = udp(CLIENT, VIP, sport, 53, payload=b"query" + bytes([sport % 256]))
        v.packet(frame, [forwarded(frame, dst=_dip(dip))], [new_conn(frame, 0, _dip(dip))])
    v.comment("UDP checksum 0 means none: it stays 0 after the rewrite")
    sport, dip = _ports_covering(entries, 53, 17, per_dip=1)[0]
    frame = udp(CLIENT, VIP, sport, 53, payload=b"no checksum", chksum=0)
    port, out = forwarded(frame, dst=_dip(dip), keep_l4_checksum=True)
    v.packet(frame, [(port, out)], [new_conn(frame, 0, _dip(dip))])
    v.comment("TCP to the UDP VIP port is not a VIP: routed untouched to the VIP subnet")
    frame = tcp(CLIENT, VIP, 40000, 53)
    v.packet(frame, [forwarded(frame)])
    return v


@generator
def conn_table() -> VectorFile:
    v = VectorFile(
        "conn_table", "conn_table hits override the buckets; FIN and RST raise teardown digests."
    )
    v.routes()
    v.add("vip_table", [VIP, "80", "6"], "set_pool", ["0", "0"])
    v.add("vip_table", [VIP, "53", "17"], "set_pool", ["1", "0"])
    entries = _pool0_buckets()
    _add_buckets(v, 0, 0, entries)
    sport, bucket_dip = _ports_covering(entries, 80, 6, per_dip=1)[0]
    pinned = "10.0.2.3:8080" if bucket_dip != "10.0.2.3:8080" else "10.0.2.4:8080"
    v.comment(f"sport {sport} hashes to {bucket_dip}, but its conn_table entry says {pinned}")
    v.add(
        "conn_table", [CLIENT, VIP, str(sport), "80", "6"], "rewrite_dst", list(pinned.split(":"))
    )
    for flags in ("S", "A", "PA"):
        frame = tcp(CLIENT, VIP, sport, 80, flags=flags, payload=b"data" if "P" in flags else b"")
        v.packet(frame, [forwarded(frame, dst=_dip(pinned))])
    v.comment("FIN and RST on a hit: forwarded and a teardown digest (version 0, the entry's DIP)")
    for flags in ("FA", "R", "RA"):
        frame = tcp(CLIENT, VIP, sport, 80, flags=flags)
        v.packet(frame, [forwarded(frame, dst=_dip(pinned))], [teardown(frame, _dip(pinned))])
    v.comment("FIN on a flow without an entry is balanced like any VIP packet (new_conn)")
    other, other_dip = _ports_covering(entries, 80, 6, per_dip=1)[1]
    frame = tcp(CLIENT, VIP, other, 80, flags="FA")
    v.packet(frame, [forwarded(frame, dst=_dip(other_dip))], [new_conn(frame, 0, _dip(other_dip))])
    v.comment("UDP hit: rewritten, no digest")
    v.add("conn_table", [CLIENT, VIP, "41000", "53", "17"], "rewrite_dst", ["10.0.2.7", "5353"])
    frame = udp(CLIENT, VIP, 41000, 53, payload=b"q")
    v.packet(frame, [forwarded(frame, dst=("10.0.2.7", 5353))])
    v.comment("an entry whose DIP has no route: dropped, never port 0")
    v.add("conn_table", [CLIENT, VIP, "41001", "80", "6"], "rewrite_dst", ["172.16.9.9", "80"])
    v.packet(tcp(CLIENT, VIP, 41001, 80, flags="A"))
    v.comment("the same 5-tuple with another protocol does not hit")
    v.add("conn_table", [CLIENT, "10.0.2.9", "41002", "7", "17"], "rewrite_dst", ["10.0.2.8", "7"])
    frame = tcp(CLIENT, "10.0.2.9", 41002, 7, flags="A")
    v.packet(frame, [forwarded(frame)])
    return v


@generator
def return_path() -> VectorFile:
    v = VectorFile(
        "return_path", "dip_reverse: replies from a DIP's service port leave as the VIP."
    )
    v.routes()
    v.add("dip_reverse", ["10.0.2.2", "8080", "6"], "rewrite_src", [VIP, "80"])
    v.add("dip_reverse", ["10.0.2.5", "5353", "17"], "rewrite_src", [VIP, "53"])
    server_mac = "00:00:0a:00:02:02"
    for flags, payload in (("SA", b""), ("PA", b"HTTP/1.0 200 OK\r\n\r\nhello"), ("FA", b"")):
        frame = (
            Ether(src=server_mac, dst="00:01:0a:00:02:01")
            / IP(src="10.0.2.2", dst=CLIENT)
            / TCP(sport=8080, dport=40001, flags=flags, seq=77, ack=1001)
            / Raw(payload)
        )
        v.packet(frame, [forwarded(frame, src=(VIP, 80))], port=2)
    frame = (
        Ether(src=server_mac)
        / IP(src="10.0.2.5", dst=CLIENT)
        / UDP(sport=5353, dport=40002)
        / Raw(b"answer")
    )
    v.packet(frame, [forwarded(frame, src=(VIP, 53))], port=2)
    v.comment("another port of the DIP (ssh, agent) passes untouched apart from routing")
    frame = (
        Ether(src=server_mac)
        / IP(src="10.0.2.2", dst=CLIENT)
        / TCP(sport=22, dport=40003, flags="A")
    )
    v.packet(frame, [forwarded(frame)], port=2)
    v.comment("the service port over UDP is not in dip_reverse: untouched")
    frame = Ether(src=server_mac) / IP(src="10.0.2.2", dst=CLIENT) / UDP(sport=8080, dport=40004)
    v.packet(frame, [forwarded(frame)], port=2)
    return v


@generator
def not_balanced() -> VectorFile:
    v = VectorFile("not_balanced", "Traffic that is routed but never balanced.")
    v.routes()
    v.add("vip_table", [VIP, "80", "6"], "set_pool", ["0", "0"])
    _add_buckets(v, 0, 0, [(0, 0, "10.0.2.2:8080")])
    v.comment("the VIP address on a port that is not a VIP: routed to the VIP subnet, untouched")
    frame = tcp(CLIENT, VIP, 40000, 443)
    v.packet(frame, [forwarded(frame)])
    v.comment("IPv4 with options (IHL 6) to the VIP: routed only; checksum still right")
    frame = (
        Ether(src=CLIENT_MAC, dst=SWITCH_MAC)
        / IP(src=CLIENT, dst=VIP, options=[IPOption_Router_Alert()])
        / TCP(sport=40000, dport=80, flags="S")
    )
    assert frame[IP].ihl is None and len(bytes(frame[IP])) - len(bytes(frame[TCP])) == 24
    v.packet(frame, [forwarded(frame)])
    v.comment("fragments to the VIP (MF set, or a non-zero offset): routed only")
    frame = (
        Ether(src=CLIENT_MAC, dst=SWITCH_MAC)
        / IP(src=CLIENT, dst=VIP, flags="MF", id=9)
        / TCP(sport=40000, dport=80, flags="S")
        / Raw(b"first fragment")
    )
    v.packet(frame, [forwarded(frame)])
    frame = (
        Ether(src=CLIENT_MAC, dst=SWITCH_MAC)
        / IP(src=CLIENT, dst=VIP, frag=3, proto=6, id=9)
        / Raw(b"\x00\x50\x9c\x40" + b"later fragment")
    )
    v.packet(frame, [forwarded(frame)])
    v.comment("a TCP header cut short (parser error): routed as plain IPv4")
    frame = (
        Ether(src=CLIENT_MAC, dst=SWITCH_MAC)
        / IP(src=CLIENT, dst=VIP, proto=6)
        / Raw(b"\x9c\x40\x00\x50short")
    )
    v.packet(frame, [forwarded(frame)])
    v.comment("the balanced flow itself still works in this setup")
    frame = tcp(CLIENT, VIP, 40000, 80)
    v.packet(
        frame, [forwarded(frame, dst=("10.0.2.2", 8080))], [new_conn(frame, 0, ("10.0.2.2", 8080))]
    )
    return v


def _tag(v: VectorFile, slot: int, indices: Sequence[int], epoch: int) -> None:
    for index in indices:
        v.register_write(f"bloom_{slot}", index, epoch)


@generator
def bloom_versions() -> VectorFile:
    v = VectorFile(
        "bloom_versions",
        "Version selection: oldest slot holding the key (cells == its epoch, epoch != 0) in order"
        " a+1, a+2, a+3, a; else a + insert of epoch_a.",
    )
    v.routes()
    v.add("vip_table", [VIP, "80", "6"], "set_pool", ["0", "0"])
    dips = {version: ("10.0.2." + str(10 + version), 8080) for version in range(4)}
    for version, (ip, port) in dips.items():
        v.add("dip_table", [str(version), "0", "0/0"], "rewrite_dst", [ip, str(port)])

    def flow(sport: int) -> tuple[Packet, tuple[int, int]]:
        return tcp(CLIENT, VIP, sport, 80), bloom_indices(CLIENT, VIP, sport, 80, 6)

    def expect(frame: Packet, version: int) -> None:
        v.packet(
            frame, [forwarded(frame, dst=dips[version])], [new_conn(frame, version, dips[version])]
        )

    epochs = [7, 11, 13, 17]
    v.comment("active 0, epochs 7, 11, 13, 17, empty filters: version 0; the key's cells of")
    v.comment("bloom_0 now hold epoch 7")
    v.set_versions(0, epochs)
    frame, (h0, h1) = flow(50000)
    expect(frame, 0)
    v.expect_register("bloom_0", h0, 7)
    v.expect_register("bloom_0", h1, 7)
    v.expect_register("bloom_1", h0, 0)
    v.comment("after a flip to 1 the same flow still matches bloom_0 only: version 0, no insert")
    v.set_versions(1, epochs)
    expect(frame, 0)
    v.expect_register("bloom_1", h0, 0)
    v.comment("a new flow under active 1 goes to version 1; its cells of bloom_1 hold epoch 11")
    frame, (g0, g1) = flow(50001)
    expect(frame, 1)
    v.expect_register("bloom_1", g0, 11)
    v.expect_register("bloom_1", g1, 11)
    v.comment("slot 0 gets a fresh epoch (19): its old cells (7) no longer match: the first flow")
    v.comment("now goes to the active slot 1 and is inserted there")
    epochs = [19, 11, 13, 17]
    v.set_versions(1, epochs)
    frame, (h0, h1) = flow(50000)
    expect(frame, 1)
    v.expect_register("bloom_1", h0, 11)
    v.expect_register("bloom_0", h0, 7)

    v.comment("epoch mismatch: cells of an older epoch (5) in bloom_3 do not hold the key")
    frame, (h0, h1) = flow(50002)
    _tag(v, 3, (h0, h1), 5)
    expect(frame, 1)
    v.comment("epoch 0 never holds: slot 2 with epoch 0 and zeroed cells is skipped (no match on")
    v.comment("0 == 0); the active slot 1 takes the key")
    v.set_versions(1, [19, 11, 0, 17])
    frame, (h0, h1) = flow(50003)
    expect(frame, 1)
    v.comment("epoch 0 as the active slot: insertion writes 0, which never matches later")
    v.set_versions(2, [19, 11, 0, 17])
    frame, (h0, h1) = flow(50004)
    expect(frame, 2)
    v.expect_register("bloom_2", h0, 0)
    expect(frame, 2)

    epochs = [23, 29, 31, 37]
    v.comment("active 2, epochs 23, 29, 31, 37; a flow whose cells hold its own slot's epoch in")
    v.comment("bloom_0 and, falsely, bloom_1 and bloom_2: order 3, 0, 1, 2, so slot 0 wins")
    v.set_versions(2, epochs)
    frame, (h0, h1) = flow(50005)
    for slot in (0, 1, 2):
        _tag(v, slot, (h0, h1), epochs[slot])
    expect(frame, 0)
    v.expect_register("bloom_3", h0, 0)

    v.comment("half a match (one of two cells) is no match: version 2, both cells := 31")
    frame, (h0, h1) = flow(50006)
    _tag(v, 3, (h0,), epochs[3])
    _tag(v, 0, (h1,), epochs[0])
    expect(frame, 2)
    v.expect_register("bloom_2", h0, 31)
    v.expect_register("bloom_2", h1, 31)
    v.comment("after a flip to 3 (order 0, 1, 2, 3) only bloom_2 holds the key: version 2")
    v.set_versions(3, epochs)
    expect(frame, 2)

    v.comment("wrap-around: active 0, the key in bloom_3 and bloom_1: order 1, 2, 3, 0: slot 1")
    v.set_versions(0, epochs)
    frame, (h0, h1) = flow(50007)
    _tag(v, 3, (h0, h1), epochs[3])
    _tag(v, 1, (h0, h1), epochs[1])
    expect(frame, 1)
    v.comment("active 1, the key in bloom_3 and bloom_0: order 2, 3, 0, 1, so slot 3 wins")
    v.set_versions(1, epochs)
    frame, (h0, h1) = flow(50008)
    _tag(v, 0, (h0, h1), epochs[0])
    _tag(v, 3, (h0, h1), epochs[3])
    expect(frame, 3)
    v.comment("the key in the active slot only: the active slot")
    frame, (h0, h1) = flow(50009)
    _tag(v, 1, (h0, h1), epochs[1])
    expect(frame, 1)
    return v


@generator
def affinity() -> VectorFile:
    v = VectorFile(
        "affinity",
        "Client-IP affinity: sport 0 in the Bloom key and flow hash, affinity_table hits (255).",
    )
    v.routes()
    v.add("vip_table", [VIP, "80", "6"], "set_pool", ["0", "1"])
    v.add("vip_table", [VIP, "81", "6"], "set_pool", ["0", "0"])
    entries = _pool0_buckets()
    for slot in (0, 1):
        _add_buckets(v, slot, 0, entries)
    epochs = [3, 5, 0, 0]
    v.set_versions(0, epochs)
    pinned_dip = owner(entries, flow_hash(CLIENT, VIP, 0, 80, 6))
    v.comment(f"affinity VIP: the flow hash takes sport 0 ({pinned_dip} for {CLIENT}), whatever")
    v.comment("the real sport; the digest carries the real sport")
    sports = (40000, 40001, 51234)
    assert len({owner(entries, flow_hash(CLIENT, VIP, sp, 80, 6)) for sp in sports}) > 1
    for sport in sports:
        frame = tcp(CLIENT, VIP, sport, 80)
        v.packet(
            frame, [forwarded(frame, dst=_dip(pinned_dip))], [new_conn(frame, 0, _dip(pinned_dip))]
        )
    h0, h1 = bloom_indices(CLIENT, VIP, 0, 80, 6)
    v.comment("the Bloom key is the 5-tuple with sport 0: its cells of bloom_0 hold epoch 3")
    v.expect_register("bloom_0", h0, 3)
    v.expect_register("bloom_0", h1, 3)
    v.comment("after a flip to 1 the client still holds in slot 0 (every sport): version 0")
    v.set_versions(1, epochs)
    frame = tcp(CLIENT, VIP, 40002, 80)
    v.packet(
        frame, [forwarded(frame, dst=_dip(pinned_dip))], [new_conn(frame, 0, _dip(pinned_dip))]
    )
    v.comment("the plain VIP (port 81) hashes the real sport: these sports reach several DIPs")
    for sport, dip in _ports_covering(entries, 81, 6, per_dip=1):
        frame = tcp(CLIENT, VIP, sport, 81)
        v.packet(frame, [forwarded(frame, dst=_dip(dip))], [new_conn(frame, 1, _dip(dip))])
    v.comment("an affinity_table entry for the client: a hit rewrites to its DIP (not the bucket)")
    v.comment("and raises new_conn with version 255")
    other = "10.0.2.3:8080" if pinned_dip != "10.0.2.3:8080" else "10.0.2.4:8080"
    v.add("affinity_table", [CLIENT, VIP, "80", "6"], "rewrite_dst", list(other.split(":")))
    for sport in (40003, 40004):
        frame = tcp(CLIENT, VIP, sport, 80, flags="S")
        v.packet(frame, [forwarded(frame, dst=_dip(other))], [new_conn(frame, 255, _dip(other))])
    v.comment("affinity miss: another client of the affinity VIP is balanced (sport 0)")
    client2 = "10.0.1.3"
    dip2 = owner(entries, flow_hash(client2, VIP, 0, 80, 6))
    frame = tcp(client2, VIP, 40005, 80)
    v.packet(frame, [forwarded(frame, dst=_dip(dip2))], [new_conn(frame, 1, _dip(dip2))])
    v.comment("the affinity entry does not apply to the plain VIP (port 81): a flow seen before")
    v.comment("still holds in slot 1 and keeps its bucket")
    sport, dip = _ports_covering(entries, 81, 6, per_dip=1)[0]
    frame = tcp(CLIENT, VIP, sport, 81)
    v.packet(frame, [forwarded(frame, dst=_dip(dip))], [new_conn(frame, 1, _dip(dip))])
    v.comment("conn_table still wins over affinity_table; FIN on it raises teardown")
    v.add("conn_table", [CLIENT, VIP, "40003", "80", "6"], "rewrite_dst", ["10.0.2.200", "9000"])
    frame = tcp(CLIENT, VIP, 40003, 80, flags="FA")
    v.packet(
        frame,
        [forwarded(frame, dst=("10.0.2.200", 9000))],
        [teardown(frame, ("10.0.2.200", 9000))],
    )
    return v


def main() -> None:
    """Write every vector file."""
    for make in GENERATORS:
        vector = make()
        vector.write()
        print(f"wrote {vector.name}.vec ({len(vector.lines)} lines)")


if __name__ == "__main__":
    main()
