"""Per-packet state (headers, metadata, standard metadata) and the program's parser and deparser.

Field names follow p4src/loadbalancer.p4 with the header name as prefix (`ipv4_ttl` is
`hdr.ipv4.ttl`). Parsing and deparsing use `struct` on whole headers: the model's hot path.
"""

from __future__ import annotations

import struct

ETHERTYPE_IPV4 = 0x0800
PROTO_TCP = 6
PROTO_UDP = 17

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBHII")
_IPV4_NO_CHECKSUM = struct.Struct("!BBHHHBBII")
_TCP = struct.Struct("!HH12sHH")
_UDP = struct.Struct("!HHHH")
ETH_LEN = _ETH.size
IPV4_LEN = _IPV4.size
TCP_LEN = 20
UDP_LEN = _UDP.size


class Packet:
    """Mutable state of one packet in the pipeline: `hdr`, `meta` and `standard_metadata`."""

    __slots__ = (
        "active",
        "affinity",
        "conn_handle",
        "dg_dip_addr",
        "dg_dip_port",
        "dg_dst_addr",
        "dg_dst_port",
        "dg_kind",
        "dg_protocol",
        "dg_src_addr",
        "dg_src_port",
        "dg_version",
        "dropped",
        "egress_spec",
        "epochs",
        "eth_dst",
        "eth_src",
        "eth_type",
        "eth_valid",
        "hash_sport",
        "ingress_port",
        "ipv4_diffserv",
        "ipv4_dst_addr",
        "ipv4_flags",
        "ipv4_frag_offset",
        "ipv4_hdr_checksum",
        "ipv4_identification",
        "ipv4_ihl",
        "ipv4_protocol",
        "ipv4_src_addr",
        "ipv4_total_len",
        "ipv4_ttl",
        "ipv4_valid",
        "ipv4_version",
        "l4_dport",
        "l4_len",
        "l4_sport",
        "payload",
        "pinned",
        "pool",
        "rewritten",
        "tcp_checksum",
        "tcp_dst_port",
        "tcp_flags",
        "tcp_middle",
        "tcp_src_port",
        "tcp_urgent_ptr",
        "tcp_valid",
        "udp_checksum",
        "udp_dst_port",
        "udp_length",
        "udp_src_port",
        "udp_valid",
    )

    def __init__(self, ingress_port: int) -> None:
        """A packet before parsing: no header valid, metadata zero, egress_spec 0 (BMv2)."""
        self.ingress_port = ingress_port
        self.egress_spec = 0
        self.eth_valid = self.ipv4_valid = self.tcp_valid = self.udp_valid = False
        self.eth_dst = self.eth_src = b""
        self.eth_type = 0
        self.ipv4_version = self.ipv4_ihl = self.ipv4_diffserv = self.ipv4_total_len = 0
        self.ipv4_identification = self.ipv4_flags = self.ipv4_frag_offset = 0
        self.ipv4_ttl = self.ipv4_protocol = self.ipv4_hdr_checksum = 0
        self.ipv4_src_addr = self.ipv4_dst_addr = 0
        self.tcp_src_port = self.tcp_dst_port = self.tcp_checksum = self.tcp_urgent_ptr = 0
        self.tcp_flags = 0
        self.tcp_middle = (
            b""  # seq_no, ack_no, data_offset, reserved, flags, window: never rewritten
        )
        self.udp_src_port = self.udp_dst_port = self.udp_length = self.udp_checksum = 0
        self.payload = b""
        self.l4_sport = self.l4_dport = self.l4_len = 0
        self.rewritten = self.dropped = 0
        self.pool = self.affinity = self.pinned = self.hash_sport = self.active = 0
        self.epochs: tuple[int, ...] = (0, 0, 0, 0)  # version_config's epoch_0 .. epoch_3
        self.dg_kind = self.dg_src_addr = self.dg_dst_addr = self.dg_src_port = 0
        self.dg_dst_port = self.dg_protocol = self.dg_version = 0
        self.dg_dip_addr = self.dg_dip_port = 0
        self.conn_handle = -1  # model only: the conn_table entry hit, for entry ageing

    def ipv4_header_fields(self) -> bytes:
        """The IPv4 header bit-packed without its checksum (the update_checksum field list)."""
        return _IPV4_NO_CHECKSUM.pack(
            (self.ipv4_version << 4) | self.ipv4_ihl,
            self.ipv4_diffserv,
            self.ipv4_total_len,
            self.ipv4_identification,
            (self.ipv4_flags << 13) | self.ipv4_frag_offset,
            self.ipv4_ttl,
            self.ipv4_protocol,
            self.ipv4_src_addr,
            self.ipv4_dst_addr,
        )


def lb_parser(frame: bytes, ingress_port: int) -> Packet:
    """LbParser: Ethernet -> IPv4 -> (IHL 5, unfragmented) TCP | UDP; the rest is payload.

    As in BMv2, a header that does not fit stops the parser and stays invalid; the packet still
    goes on to ingress with what was extracted.
    """
    p = Packet(ingress_port)
    size = len(frame)
    if size < ETH_LEN:
        p.payload = frame
        return p
    p.eth_dst, p.eth_src, p.eth_type = _ETH.unpack_from(frame, 0)
    p.eth_valid = True
    offset = ETH_LEN
    if p.eth_type == ETHERTYPE_IPV4 and size >= offset + IPV4_LEN:
        fields = _IPV4.unpack_from(frame, offset)
        vihl, p.ipv4_diffserv, p.ipv4_total_len, p.ipv4_identification, flags_frag = fields[:5]
        p.ipv4_ttl, p.ipv4_protocol, p.ipv4_hdr_checksum, p.ipv4_src_addr, p.ipv4_dst_addr = fields[
            5:
        ]
        p.ipv4_version = vihl >> 4
        p.ipv4_ihl = vihl & 0x0F
        p.ipv4_flags = flags_frag >> 13
        p.ipv4_frag_offset = flags_frag & 0x1FFF
        p.ipv4_valid = True
        offset += IPV4_LEN
        if vihl == 0x45 and flags_frag & 0x3FFF == 0:  # version 4, IHL 5, MF clear, offset 0
            offset = _parse_l4(p, frame, offset)
    p.payload = frame[offset:]
    return p


def _parse_l4(p: Packet, frame: bytes, offset: int) -> int:
    size = len(frame)
    if p.ipv4_protocol == PROTO_TCP and size >= offset + TCP_LEN:
        p.tcp_src_port, p.tcp_dst_port, p.tcp_middle, p.tcp_checksum, p.tcp_urgent_ptr = (
            _TCP.unpack_from(frame, offset)
        )
        p.tcp_flags = frame[offset + 13]
        p.tcp_valid = True
        p.l4_sport = p.tcp_src_port
        p.l4_dport = p.tcp_dst_port
        return offset + TCP_LEN
    if p.ipv4_protocol == PROTO_UDP and size >= offset + UDP_LEN:
        p.udp_src_port, p.udp_dst_port, p.udp_length, p.udp_checksum = _UDP.unpack_from(
            frame, offset
        )
        p.udp_valid = True
        p.l4_sport = p.udp_src_port
        p.l4_dport = p.udp_dst_port
        return offset + UDP_LEN
    return offset


def lb_deparser(p: Packet) -> bytes:
    """LbDeparser: emit the valid headers in order, then the unparsed payload."""
    parts = []
    if p.eth_valid:
        parts.append(_ETH.pack(p.eth_dst, p.eth_src, p.eth_type))
    if p.ipv4_valid:
        parts.append(
            _IPV4.pack(
                (p.ipv4_version << 4) | p.ipv4_ihl,
                p.ipv4_diffserv,
                p.ipv4_total_len,
                p.ipv4_identification,
                (p.ipv4_flags << 13) | p.ipv4_frag_offset,
                p.ipv4_ttl,
                p.ipv4_protocol,
                p.ipv4_hdr_checksum,
                p.ipv4_src_addr,
                p.ipv4_dst_addr,
            )
        )
    if p.tcp_valid:
        parts.append(
            _TCP.pack(
                p.tcp_src_port, p.tcp_dst_port, p.tcp_middle, p.tcp_checksum, p.tcp_urgent_ptr
            )
        )
    if p.udp_valid:
        parts.append(_UDP.pack(p.udp_src_port, p.udp_dst_port, p.udp_length, p.udp_checksum))
    parts.append(p.payload)
    return b"".join(parts)
