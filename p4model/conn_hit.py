"""The conn_table-hit path, specialised: most packets of an established connection on locals.

The general pipeline (packet.py, program.py) builds a Packet and runs every table through the
generic `apply`; that is the definition of the program, and it spends most of a hit's time on
attribute traffic and dispatch. For the shape that dominates a balancer's traffic (an
unfragmented IHL-5 TCP or UDP packet with TTL > 1 that hits conn_table with rewrite_dst, is not
a FIN or RST, and leaves through an ipv4_lpm `forward`) this path runs the same statements on
local variables: one unpack of the headers, conn_table's dict, ipv4_lpm, and the checksum
functions the general pipeline uses. Everything else (a miss, NoAction, a teardown digest, a
route that drops, a truncated frame) gets None, and the caller runs the general pipeline. A
property test holds the two to the same bytes wherever this path answers.
"""

from __future__ import annotations

import struct

from p4model.packet import (
    ETH_LEN,
    ETHERTYPE_IPV4,
    IPV4_LEN,
    L4_OFFSET,
    PROTO_TCP,
    PROTO_UDP,
    TCP_CHECKSUM_OFFSET,
    TCP_LEN,
    UDP_CHECKSUM_OFFSET,
    UDP_LEN,
    mac_bytes,
)
from p4model.program import (
    DROP_PORT,
    FORWARD,
    REWRITE_DST,
    TCP_FIN_RST,
    LbIngress,
    ipv4_checksum,
    tcp_checksum,
    udp_checksum,
)

# ethernet.ether_type, then ipv4 version_ihl, total_len, flags_frag, ttl, protocol (diffserv,
# identification and the checksum skipped), src, dst, and the L4 ports: the first 38 bytes
_HEADERS = struct.Struct("!12xHBxH2xHBB2xIIHH")
_MACS = struct.Struct("!6s6s")
_TTL = struct.Struct("!B")
_CHECKSUM_ADDRS = struct.Struct("!HII")  # not one struct with ttl: a pad byte would zero protocol
_U16 = struct.Struct("!H")
_UDP_LENGTH_CHECKSUM = struct.Struct("!HH")


ConnHit = tuple[int, bytes, int]
"""A packet the path forwarded: egress port, the frame that leaves, the conn_table handle
(a plain tuple: a NamedTuple costs a Python-level constructor per packet)."""


class ConnHitPath:
    """The specialised path over the tables of one `LbIngress`."""

    def __init__(self, ingress: LbIngress) -> None:
        """Read `ingress`'s conn_table and ipv4_lpm (live: later entries are seen)."""
        self._conn_lookup = ingress.conn_table.lookup
        self._route_lookup = ingress.ipv4_lpm.lookup

    def run(self, frame: bytes) -> ConnHit | None:
        """The packet forwarded as the program would, or None for the general pipeline."""
        size = len(frame)
        if size < _HEADERS.size:
            return None
        eth_type, vihl, total_len, flags_frag, ttl, protocol, src, dst, sport, dport = (
            _HEADERS.unpack_from(frame)
        )
        if eth_type != ETHERTYPE_IPV4 or vihl != 0x45 or flags_frag & 0x3FFF or ttl <= 1:
            return None
        if protocol == PROTO_TCP:
            if size < L4_OFFSET + TCP_LEN or frame[L4_OFFSET + 13] & TCP_FIN_RST:
                return None
        elif protocol != PROTO_UDP or size < L4_OFFSET + UDP_LEN:
            return None
        hit = self._conn_lookup((src, dst, sport, dport, protocol))
        if hit is None or hit.action != REWRITE_DST.name:
            return None
        dst, dport = hit.params
        route = self._route_lookup((dst,))
        if route is None or route.action != FORWARD.name or route.params[0] == DROP_PORT:
            return None
        port, src_mac, dst_mac = route.params
        ttl -= 1  # forward(); its incremental checksum update is overwritten below
        out = bytearray(frame)
        _MACS.pack_into(out, 0, mac_bytes(dst_mac), mac_bytes(src_mac))
        _TTL.pack_into(out, ETH_LEN + 8, ttl)
        checksum = ipv4_checksum(frame, ttl, protocol, src, dst)
        _CHECKSUM_ADDRS.pack_into(out, ETH_LEN + 10, checksum, src, dst)
        _U16.pack_into(out, L4_OFFSET + 2, dport)  # rewrite_dst leaves the source port
        if protocol == PROTO_TCP:
            l4_len = (total_len - IPV4_LEN) & 0xFFFF
            checksum = tcp_checksum(
                frame, src=src, dst=dst, l4_len=l4_len, sport=sport, dport=dport
            )
            _U16.pack_into(out, TCP_CHECKSUM_OFFSET, checksum)
        else:
            length, received = _UDP_LENGTH_CHECKSUM.unpack_from(frame, L4_OFFSET + 4)
            if received != 0:  # 0 is "no checksum" and stays 0
                checksum = udp_checksum(
                    frame, src=src, dst=dst, length=length, sport=sport, dport=dport
                )
                _U16.pack_into(out, UDP_CHECKSUM_OFFSET, checksum)
        return port, bytes(out), hit.handle
