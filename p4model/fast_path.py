"""The two common shapes of VIP traffic, specialised: a conn_table hit and a new connection.

The general pipeline (packet.py, program.py) builds a Packet and runs every table through the
generic `apply`; that is the definition of the program, and it spends most of a packet's time on
attribute traffic and dispatch. For the shapes that dominate a balancer's traffic this path runs
the same statements on local variables: one unpack of the headers of an unfragmented IHL-5 TCP
or UDP packet with TTL > 1, conn_table's dict, then

- a hit with rewrite_dst that is not a FIN or RST: the rewrite;
- a miss that hits a vip_table `set_pool` entry (and, on an affinity VIP, misses
  affinity_table): version_config, the Bloom lookup, version_select, the flow hash, a dip_table
  `rewrite_dst` hit, the Bloom insert, the rewrite and a new_conn digest;

and the packet leaves through an ipv4_lpm `forward`, with the checksum functions the general
pipeline uses. Everything else (NoAction, a teardown digest, an affinity hit, a dip_table miss or
`drop`, a changed default action on the way, a route that drops, a truncated frame) gets None
and the caller runs the general pipeline. Nothing is written before the path knows it answers:
the Bloom insert comes last, so a packet it declines has left no trace. Property tests hold the
two to the same bytes, digests and register state wherever this path answers.
"""

from __future__ import annotations

import struct

from p4model.hashes import crc16, crc32
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
    DIGEST_NEW_CONN,
    DROP_PORT,
    FORWARD,
    HASH_TUPLE,
    NO_ACTION,
    REWRITE_DST,
    SET_POOL,
    SET_VERSIONS,
    TCP_FIN_RST,
    LbIngress,
    digest_sample,
    ipv4_checksum,
    tcp_checksum,
    udp_checksum,
)
from p4src.contract import Digest

# ethernet.ether_type, then ipv4 version_ihl, total_len, flags_frag, ttl, protocol (diffserv,
# identification and the checksum skipped), src, dst, and the L4 ports: the first 38 bytes
_HEADERS = struct.Struct("!12xHBxH2xHBB2xIIHH")
_MACS = struct.Struct("!6s6s")
_TTL_TO_DST = struct.Struct("!BBHII")  # ttl, protocol, checksum, src, dst
_U16 = struct.Struct("!H")
_UDP_LENGTH_CHECKSUM = struct.Struct("!HH")
# the action names compared per packet, looked up once
_NO_ACTION, _REWRITE_DST, _SET_POOL = NO_ACTION.name, REWRITE_DST.name, SET_POOL.name
_SET_VERSIONS, _FORWARD = SET_VERSIONS.name, FORWARD.name


FastResult = tuple[int, bytes, int, Digest | None]
"""A packet the path forwarded: egress port, the frame that leaves, the conn_table handle hit
(-1 for a new connection) and the digest raised (None for a hit, always one for a new
connection); a plain tuple: a NamedTuple costs a Python-level constructor per packet."""


class FastPath:
    """The specialised paths over the tables and registers of one `LbIngress`."""

    def __init__(self, ingress: LbIngress) -> None:
        """Read `ingress`'s tables and registers (live: later entries and writes are seen)."""
        self._conn_table = ingress.conn_table
        self._conn_lookup = ingress.conn_table.lookup
        self._vip_lookup = ingress.vip_table.lookup
        self._affinity_table = ingress.affinity_table
        self._version_config = ingress.version_config
        self._select_lookup = ingress.version_select.lookup
        self._dip_lookup = ingress.dip_table.lookup
        self._route_lookup = ingress.ipv4_lpm.lookup
        self._blooms = ingress.blooms  # Register.reset rebinds `cells`: read it per packet
        settings = ingress.settings
        self._bloom_bits = settings.bloom_bits
        self._third_hash = settings.bloom_hashes == 3
        self._hash_space = 1 << settings.hash_bits

    def run(self, frame: bytes) -> FastResult | None:
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
            if size < L4_OFFSET + TCP_LEN:
                return None
        elif protocol != PROTO_UDP or size < L4_OFFSET + UDP_LEN:
            return None
        flow = (src, dst, sport, dport, protocol)
        hit = self._conn_lookup(flow)
        if hit is not None:
            if hit.action != _REWRITE_DST or (
                protocol == PROTO_TCP and frame[L4_OFFSET + 13] & TCP_FIN_RST
            ):
                return None
            new_dst, new_dport = hit.params
            digest = None
        else:
            balanced = self._balance(src, dst, sport, dport, protocol)
            if balanced is None:
                return None
            new_dst, new_dport, version, tag = balanced
        route = self._route_lookup((new_dst,))
        if route is None or route.action != _FORWARD or route.params[0] == DROP_PORT:
            return None
        port, src_mac, dst_mac = route.params
        if hit is not None:
            handle = hit.handle
        else:  # the path answers: now the Bloom insert and the digest
            handle = -1
            if tag is not None:  # bloom_insert_<version>
                i0, i1, i2, epoch = tag
                bloom = self._blooms[version]
                cells, epoch = bloom.cells, epoch & bloom.mask
                cells[i0] = cells[i1] = cells[i2] = epoch
            digest = digest_sample(DIGEST_NEW_CONN, flow, version, new_dst, new_dport)
        ttl -= 1  # forward(); its incremental checksum update is overwritten below
        out = bytearray(frame)
        _MACS.pack_into(out, 0, mac_bytes(dst_mac), mac_bytes(src_mac))
        checksum = ipv4_checksum(frame, ttl, protocol, src, new_dst)
        _TTL_TO_DST.pack_into(out, ETH_LEN + 8, ttl, protocol, checksum, src, new_dst)
        _U16.pack_into(out, L4_OFFSET + 2, new_dport)  # rewrite_dst leaves the source port
        if protocol == PROTO_TCP:
            l4_len = (total_len - IPV4_LEN) & 0xFFFF
            checksum = tcp_checksum(
                frame, src=src, dst=new_dst, l4_len=l4_len, sport=sport, dport=new_dport
            )
            _U16.pack_into(out, TCP_CHECKSUM_OFFSET, checksum)
        else:
            length, received = _UDP_LENGTH_CHECKSUM.unpack_from(frame, L4_OFFSET + 4)
            if received != 0:  # 0 is "no checksum" and stays 0
                checksum = udp_checksum(
                    frame, src=src, dst=new_dst, length=length, sport=sport, dport=new_dport
                )
                _U16.pack_into(out, UDP_CHECKSUM_OFFSET, checksum)
        return port, bytes(out), handle, digest

    def _balance(
        self, src: int, dst: int, sport: int, dport: int, protocol: int
    ) -> tuple[int, int, int, tuple[int, int, int, int] | None] | None:
        """A conn_table miss through vip_table, version selection and dip_table, read only:
        (DIP, DIP port, version, the Bloom cells to tag and the epoch, or None), or None."""
        if self._conn_table.default.action != _NO_ACTION:
            return None  # a miss runs the default action; a rewrite there changes the key
        vip = self._vip_lookup((dst, dport, protocol))
        if vip is None or vip.action != _SET_POOL:
            return None
        pool, affinity = vip.params
        hash_sport = sport
        if affinity:
            hash_sport = 0
            table = self._affinity_table
            if (
                table.default.action != _NO_ACTION
                or table.lookup((src, dst, dport, protocol)) is not None
            ):
                return None
        table = self._version_config
        entry = table.lookup(())
        versions = table.default if entry is None else entry
        if versions.action != _SET_VERSIONS:
            return None
        active, *epochs = versions.params  # SLOTS of them
        # bloom_lookup (program.py), each field list packed once. With two hashes the first
        # index stands in for the third: reading or tagging a cell twice changes nothing.
        key = HASH_TUPLE.pack(src, dst, hash_sport, dport, protocol)
        swapped = HASH_TUPLE.pack(dst, src, dport, hash_sport, protocol)
        bits = self._bloom_bits
        i0, i1 = crc16(key) % bits, crc32(swapped) % bits
        i2 = crc16(swapped) % bits if self._third_hash else i0
        match = 0
        for slot, epoch in enumerate(epochs):
            if epoch != 0:
                cells = self._blooms[slot].cells
                if cells[i0] == epoch and cells[i1] == epoch and cells[i2] == epoch:
                    match |= 1 << slot
        chosen = self._select_lookup((active, match))
        if chosen is None:
            return None
        version, insert = chosen.params
        flow_hash = crc32(key) % self._hash_space
        dip = self._dip_lookup((version, pool, flow_hash))
        if dip is None or dip.action != _REWRITE_DST:
            return None
        new_dst, new_dport = dip.params
        return new_dst, new_dport, version, (i0, i1, i2, epochs[version]) if insert else None
