"""Per-packet state (headers, metadata, standard metadata) and the program's parser and deparser.

Field names follow p4src/loadbalancer.p4 with the header name as prefix (`ipv4_ttl` is
`hdr.ipv4.ttl`). This is the model's hot path, so a packet carries only the header fields the
program reads or writes: the program never calls setValid/setInvalid, so the deparser emits each
valid header at the offset the parser extracted it from, and the frame it emits is the received
frame with the writable fields (MACs, TTL, addresses, ports, checksums) stored over it.
"""

from __future__ import annotations

import functools
import struct

ETHERTYPE_IPV4 = 0x0800
PROTO_TCP = 6
PROTO_UDP = 17

_ETH = struct.Struct("!6s6sH")
# version_ihl, diffserv, total_len, identification, flags_frag, ttl, protocol, checksum, src, dst
_IPV4 = struct.Struct("!BBHHHBBHII")
_TCP_HEAD = struct.Struct("!HH8xxBxxH")  # ports, flags, checksum (seq, ack, offset, window: kept)
_UDP = struct.Struct("!HHHH")
_MACS = struct.Struct("!6s6s")
_TTL = struct.Struct("!B")
_ADDRS = struct.Struct("!II")
_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")
ETH_LEN = _ETH.size
IPV4_LEN = _IPV4.size
TCP_LEN = 20
UDP_LEN = _UDP.size
L4_OFFSET = ETH_LEN + IPV4_LEN
"""Where TCP or UDP starts: the parser only goes past IPv4 when IHL is 5."""
TCP_CHECKSUM_OFFSET = L4_OFFSET + 16
UDP_CHECKSUM_OFFSET = L4_OFFSET + 6


@functools.lru_cache(maxsize=4096)
def mac_bytes(mac: int) -> bytes:
    """A 48-bit MAC as header bytes (cached: forward() takes its MACs from a few routes)."""
    return mac.to_bytes(6, "big")


class Packet:
    """Mutable state of one packet in the pipeline: `hdr`, `meta` and `standard_metadata`.

    The class attributes are the values before parsing (headers invalid, metadata 0, BMv2's
    egress_spec 0); an instance stores only what the parser extracted and the pipeline wrote,
    which makes a packet several times cheaper to create than one with every field in a slot.
    """

    frame: bytes  # as received: the deparser's template
    ingress_port: int
    egress_spec = 0
    eth_valid = False
    eth_dst = b""
    eth_src = b""
    ipv4_valid = False
    ipv4_total_len = 0
    ipv4_ttl = 0
    ipv4_protocol = 0
    ipv4_hdr_checksum = 0
    ipv4_src_addr = 0
    ipv4_dst_addr = 0
    tcp_valid = False
    tcp_src_port = 0
    tcp_dst_port = 0
    tcp_flags = 0
    tcp_checksum = 0
    udp_valid = False
    udp_src_port = 0
    udp_dst_port = 0
    udp_length = 0
    udp_checksum = 0
    # meta
    l4_sport = 0
    l4_dport = 0
    l4_len = 0
    rewritten = 0
    dropped = 0
    pool = 0
    affinity = 0
    pinned = 0
    hash_sport = 0
    active = 0
    epochs: tuple[int, ...] = (0, 0, 0, 0)  # version_config's epoch_0 .. epoch_3
    dg_kind = 0
    dg_tuple = (0, 0, 0, 0, 0)  # src_addr, dst_addr, src_port, dst_port, protocol
    dg_version = 0
    dg_dip_addr = 0
    dg_dip_port = 0
    conn_handle = -1  # model only: the conn_table entry hit, for entry ageing

    def __init__(self, frame: bytes, ingress_port: int) -> None:
        """A packet before parsing."""
        self.frame = frame
        self.ingress_port = ingress_port


def lb_parser(frame: bytes, ingress_port: int) -> Packet:
    """LbParser: Ethernet -> IPv4 -> (IHL 5, unfragmented) TCP | UDP; the rest is payload.

    As in BMv2, a header that does not fit stops the parser and stays invalid; the packet still
    goes on to ingress with what was extracted.
    """
    p = Packet(frame, ingress_port)
    size = len(frame)
    if size < ETH_LEN:
        return p
    p.eth_dst, p.eth_src, eth_type = _ETH.unpack_from(frame, 0)
    p.eth_valid = True
    if eth_type != ETHERTYPE_IPV4 or size < L4_OFFSET:
        return p
    (
        vihl,
        _,
        p.ipv4_total_len,
        _,
        flags_frag,
        p.ipv4_ttl,
        protocol,
        p.ipv4_hdr_checksum,
        p.ipv4_src_addr,
        p.ipv4_dst_addr,
    ) = _IPV4.unpack_from(frame, ETH_LEN)
    p.ipv4_protocol = protocol
    p.ipv4_valid = True
    if vihl != 0x45 or flags_frag & 0x3FFF:  # version 4, IHL 5, MF clear, offset 0
        return p
    if protocol == PROTO_TCP and size >= L4_OFFSET + TCP_LEN:
        p.l4_sport, p.l4_dport, p.tcp_flags, p.tcp_checksum = _TCP_HEAD.unpack_from(
            frame, L4_OFFSET
        )
        p.tcp_src_port, p.tcp_dst_port = p.l4_sport, p.l4_dport
        p.tcp_valid = True
    elif protocol == PROTO_UDP and size >= L4_OFFSET + UDP_LEN:
        p.l4_sport, p.l4_dport, p.udp_length, p.udp_checksum = _UDP.unpack_from(frame, L4_OFFSET)
        p.udp_src_port, p.udp_dst_port = p.l4_sport, p.l4_dport
        p.udp_valid = True
    return p


def lb_deparser(p: Packet) -> bytes:
    """LbDeparser: the valid headers in order, then the unparsed payload.

    Emitted as the received frame with every field the program can write stored over it (see
    the module docstring for why that is the same bytes).
    """
    out = bytearray(p.frame)
    if p.eth_valid:
        _MACS.pack_into(out, 0, p.eth_dst, p.eth_src)
    if p.ipv4_valid:
        _TTL.pack_into(out, ETH_LEN + 8, p.ipv4_ttl)
        _U16.pack_into(out, ETH_LEN + 10, p.ipv4_hdr_checksum)
        _ADDRS.pack_into(out, ETH_LEN + 12, p.ipv4_src_addr, p.ipv4_dst_addr)
    if p.tcp_valid:
        _PORTS.pack_into(out, L4_OFFSET, p.tcp_src_port, p.tcp_dst_port)
        _U16.pack_into(out, TCP_CHECKSUM_OFFSET, p.tcp_checksum)
    elif p.udp_valid:
        _PORTS.pack_into(out, L4_OFFSET, p.udp_src_port, p.udp_dst_port)
        _U16.pack_into(out, UDP_CHECKSUM_OFFSET, p.udp_checksum)
    return bytes(out)
