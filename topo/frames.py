"""Minimal Ethernet/IPv4/TCP|UDP frames for the simulated demo (build and read back, no I/O).

The simulation pushes each simulated connection's packets through the in-process model; it
only needs well-formed frames with correct checksums and the addresses of what comes out.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

TCP = 6
UDP = 17
SYN, FIN, ACK, PSH = 0x02, 0x01, 0x10, 0x08


class FrameError(ValueError):
    """A frame that is not Ethernet/IPv4/TCP|UDP with a 20-byte IPv4 header."""


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True)
class FlowKey:
    """A 5-tuple as it appears in a frame."""

    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    protocol: int


def build_frame(
    src_mac: str,
    dst_mac: str,
    flow: FlowKey,
    *,
    flags: int = SYN,
    payload: bytes = b"",
    ttl: int = 64,
) -> bytes:
    """An Ethernet frame carrying ``flow`` (TCP with ``flags``, or UDP) and ``payload``."""
    src, dst = socket.inet_aton(flow.src_ip), socket.inet_aton(flow.dst_ip)
    if flow.protocol == TCP:
        header = struct.pack(
            "!HHIIBBHHH", flow.src_port, flow.dst_port, 1, 0, 5 << 4, flags, 65535, 0, 0
        )
    elif flow.protocol == UDP:
        header = struct.pack("!HHHH", flow.src_port, flow.dst_port, 8 + len(payload), 0)
    else:
        raise FrameError(f"protocol must be TCP or UDP, got {flow.protocol!r}")
    l4 = header + payload
    pseudo = src + dst + struct.pack("!BBH", 0, flow.protocol, len(l4))
    csum = _checksum(pseudo + l4)
    offset = 16 if flow.protocol == TCP else 6
    l4 = l4[:offset] + struct.pack("!H", csum or 0xFFFF) + l4[offset + 2 :]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, ttl, flow.protocol, 0, src, dst
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return _mac(dst_mac) + _mac(src_mac) + b"\x08\x00" + ip + l4


def read_flow(frame: bytes) -> FlowKey:
    """The 5-tuple of an Ethernet/IPv4/TCP|UDP frame."""
    if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00" or frame[14] != 0x45:
        raise FrameError(f"not an IPv4 frame with a 20-byte header: {frame[:40].hex()}")
    protocol = frame[23]
    if protocol not in (TCP, UDP):
        raise FrameError(f"not TCP or UDP: protocol {protocol!r}")
    sport, dport = struct.unpack_from("!HH", frame, 34)
    return FlowKey(
        socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34]), sport, dport, protocol
    )


def checksums_ok(frame: bytes) -> bool:
    """Whether the IPv4 header checksum and the TCP/UDP checksum of ``frame`` verify."""
    ip = frame[14:34]
    if _checksum(ip) != 0:
        return False
    total = struct.unpack_from("!H", ip, 2)[0]
    l4 = frame[34 : 14 + total]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, ip[9], len(l4))
    return _checksum(pseudo + l4) == 0
