"""The controls of p4src/loadbalancer.p4, statement by statement: LbIngress and LbComputeChecksum.

Names match the P4 program (tables, actions, registers; BMv2 prefixes them with `LbIngress.`).
Every helper method here corresponds to an action or a block of the P4 `apply`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from p4model.hashes import HashAlgorithm, compute_hash, csum16
from p4model.packet import IPV4_LEN, Packet
from p4model.registers import Register
from p4model.tables import ActionSpec, Entry, KeyField, MatchKind, Table
from p4model.versions import SLOTS, version_select_entries
from p4src.contract import Settings

PREFIX = "LbIngress."
DROP_PORT = 511
TCP_FIN_RST = 0x05
DIGEST_NEW_CONN = 1
"""`digest_t.kind` of a new connection (p4src.contract.KIND_CODES decodes it)."""
DIGEST_TEARDOWN = 2
"""`digest_t.kind` of a TCP FIN or RST on an installed connection."""
VERSION_SELECT_SIZE = SLOTS << SLOTS
"""Entries of the const `version_select` table: every (active slot, Bloom match mask)."""

EXACT, LPM = MatchKind.EXACT, MatchKind.LPM
# {src, dst, sport, dport, protocol}: byte-aligned widths, so BMv2's bit-packing is plain bytes.
_TUPLE = struct.Struct("!IIHHB")
_PSEUDO = struct.Struct("!IIBBH")
_PORTS = struct.Struct("!HH")
_UDP_FIELDS = struct.Struct("!HHH")
_U16 = struct.Struct("!H")

_REWRITE = (("ip", 32), ("port", 16))
NO_ACTION = ActionSpec("NoAction")
REWRITE_DST = ActionSpec(PREFIX + "rewrite_dst", _REWRITE)
REWRITE_SRC = ActionSpec(PREFIX + "rewrite_src", _REWRITE)
SET_POOL = ActionSpec(PREFIX + "set_pool", (("pool", 16),))
USE_VERSION = ActionSpec(PREFIX + "use_version", (("version", 2), ("insert", 1)))
FORWARD = ActionSpec(PREFIX + "forward", (("port", 9), ("src_mac", 48), ("dst_mac", 48)))
DROP = ActionSpec(PREFIX + "drop")

Action = Callable[..., None]


class LbIngress:
    """Tables, registers and the ingress control of the program."""

    def __init__(self, settings: Settings) -> None:
        """Declare every table and register with the sizes from `settings`."""
        self.settings = settings
        self.active_version = Register(PREFIX + "active_version", 2, 1)
        self.blooms = [Register(f"{PREFIX}bloom_{i}", 1, settings.bloom_bits) for i in range(SLOTS)]
        ipv4_src = KeyField("hdr.ipv4.src_addr", 32, EXACT)
        ipv4_dst = KeyField("hdr.ipv4.dst_addr", 32, EXACT)
        sport = KeyField("meta.l4_sport", 16, EXACT)
        dport = KeyField("meta.l4_dport", 16, EXACT)
        proto = KeyField("hdr.ipv4.protocol", 8, EXACT)
        self.conn_table = Table(
            PREFIX + "conn_table",
            [ipv4_src, ipv4_dst, sport, dport, proto],
            [REWRITE_DST, NO_ACTION],
            settings.conn_table_size,
            ("NoAction", ()),
            support_timeout=True,
        )
        self.vip_table = Table(
            PREFIX + "vip_table",
            [ipv4_dst, dport, proto],
            [SET_POOL, NO_ACTION],
            settings.vip_table_size,
            ("NoAction", ()),
        )
        self.version_select = Table(
            PREFIX + "version_select",
            [KeyField("meta.active", 2, EXACT), KeyField("meta.bloom_match", 4, EXACT)],
            [USE_VERSION, NO_ACTION],
            VERSION_SELECT_SIZE,
            ("NoAction", ()),
            const=True,
        )
        for active, mask, version, insert in version_select_entries():
            self.version_select.add_const((active, mask), USE_VERSION.name, (version, insert))
        self.dip_table = Table(
            PREFIX + "dip_table",
            [
                KeyField("meta.version", 2, EXACT),
                KeyField("meta.pool", 16, EXACT),
                KeyField("meta.flow_hash", settings.hash_bits, LPM),
            ],
            [REWRITE_DST, DROP],
            settings.dip_table_size,
            (DROP.name, ()),
        )
        self.dip_reverse = Table(
            PREFIX + "dip_reverse",
            [ipv4_src, sport, proto],
            [REWRITE_SRC, NO_ACTION],
            settings.dip_reverse_size,
            ("NoAction", ()),
        )
        self.ipv4_lpm = Table(
            PREFIX + "ipv4_lpm",
            [KeyField("hdr.ipv4.dst_addr", 32, LPM)],
            [FORWARD, DROP],
            settings.route_table_size,
            (DROP.name, ()),
        )
        self.tables = [
            self.conn_table,
            self.vip_table,
            self.version_select,
            self.dip_table,
            self.dip_reverse,
            self.ipv4_lpm,
        ]
        self.registers = [self.active_version, *self.blooms]
        self._actions: dict[str, Action] = {
            NO_ACTION.name: _no_action,
            DROP.name: drop,
            REWRITE_DST.name: rewrite_dst,
            REWRITE_SRC.name: rewrite_src,
            SET_POOL.name: set_pool,
            FORWARD.name: forward,
        }

    def _apply(self, table: Table, key: tuple[int, ...], p: Packet) -> Entry | None:
        """`table.apply()`: run the hit entry's or the default action; return the hit entry."""
        entry = table.lookup(key)
        chosen = table.default if entry is None else entry
        self._actions[chosen.action](p, *chosen.params)
        return entry

    def apply(self, p: Packet) -> None:
        """The ingress `apply` block."""
        if not p.ipv4_valid or p.ipv4_ttl <= 1:
            drop(p)
            return
        if p.tcp_valid or p.udp_valid:
            p.l4_len = (p.ipv4_total_len - IPV4_LEN) & 0xFFFF  # IHL is 5
            digest_tuple(p)
            src, dst, proto = p.ipv4_src_addr, p.ipv4_dst_addr, p.ipv4_protocol
            hit = self._apply(self.conn_table, (src, dst, p.l4_sport, p.l4_dport, proto), p)
            if hit is not None:
                p.conn_handle = hit.handle
                if p.tcp_valid and p.tcp_flags & TCP_FIN_RST:
                    raise_digest(p, DIGEST_TEARDOWN, 0)
            elif self._apply(self.vip_table, (dst, p.l4_dport, proto), p) is not None:
                self._balance(p)
            else:
                self._apply(self.dip_reverse, (src, p.l4_sport, proto), p)
            if p.rewritten:
                if p.tcp_valid:
                    p.tcp_src_port, p.tcp_dst_port = p.l4_sport, p.l4_dport
                else:
                    p.udp_src_port, p.udp_dst_port = p.l4_sport, p.l4_dport
        if not p.dropped:
            self._apply(self.ipv4_lpm, (p.ipv4_dst_addr,), p)

    def _balance(self, p: Packet) -> None:
        """A VIP packet that missed conn_table: version selection, flow hash, dip_table."""
        active = self.active_version.read(0, 0)
        five_tuple = _TUPLE.pack(
            p.ipv4_src_addr, p.ipv4_dst_addr, p.l4_sport, p.l4_dport, p.ipv4_protocol
        )
        indices, match = self.bloom_lookup(five_tuple, p)
        version, insert = 0, 0  # metadata starts at 0; version_select always hits
        chosen = self.version_select.lookup((active, match))
        if chosen is not None:
            version, insert = chosen.params
        if insert:
            self.bloom_insert(version, indices)
        hash_bits = self.settings.hash_bits
        flow_hash = compute_hash(HashAlgorithm.CRC32, 0, five_tuple, 1 << hash_bits, hash_bits)
        if self._apply(self.dip_table, (version, p.pool, flow_hash), p) is not None:
            raise_digest(p, DIGEST_NEW_CONN, version)

    def bloom_insert(self, slot: int, indices: list[int]) -> None:
        """The program's bloom_insert_0, bloom_insert_1, bloom_insert_2 and bloom_insert_3
        actions (one per slot there, since a P4 register array cannot be chosen at run time):
        set the slot's bits."""
        bloom = self.blooms[slot]
        for index in indices:
            bloom.write(index, 1)

    def bloom_lookup(self, five_tuple: bytes, p: Packet) -> tuple[list[int], int]:
        """The `bloom_lookup` action: the Bloom indices and the match mask (bit i: slot i).

        h0 = crc16 over {src, dst, sport, dport, proto}; h1 = crc32 over {dst, src, dport,
        sport, proto}; h2 (BLOOM_HASHES 3) = crc16 over the latter; all mod BLOOM_BITS.
        """
        bits = self.settings.bloom_bits
        swapped = _TUPLE.pack(
            p.ipv4_dst_addr, p.ipv4_src_addr, p.l4_dport, p.l4_sport, p.ipv4_protocol
        )
        indices = [
            compute_hash(HashAlgorithm.CRC16, 0, five_tuple, bits, 32),
            compute_hash(HashAlgorithm.CRC32, 0, swapped, bits, 32),
        ]
        if self.settings.bloom_hashes == 3:
            indices.append(compute_hash(HashAlgorithm.CRC16, 0, swapped, bits, 32))
        match = 0
        for slot, bloom in enumerate(self.blooms):
            if all(bloom.read(index, 0) for index in indices):
                match |= 1 << slot
        return indices, match


def _no_action(p: Packet) -> None:
    """NoAction."""


def drop(p: Packet) -> None:
    """`drop`: mark_to_drop and remember not to route."""
    p.egress_spec = DROP_PORT
    p.dropped = 1


def rewrite_dst(p: Packet, ip: int, port: int) -> None:
    """`rewrite_dst(ip, port)`."""
    p.ipv4_dst_addr = ip
    p.l4_dport = port
    p.rewritten = 1


def rewrite_src(p: Packet, ip: int, port: int) -> None:
    """`rewrite_src(ip, port)`."""
    p.ipv4_src_addr = ip
    p.l4_sport = port
    p.rewritten = 1


def set_pool(p: Packet, pool: int) -> None:
    """`set_pool(pool)`."""
    p.pool = pool


def forward(p: Packet, port: int, src_mac: int, dst_mac: int) -> None:
    """`forward(port, src_mac, dst_mac)`: MACs, TTL decrement, RFC 1624 checksum update."""
    p.egress_spec = port
    p.eth_src = src_mac.to_bytes(6, "big")
    p.eth_dst = dst_mac.to_bytes(6, "big")
    p.ipv4_ttl = (p.ipv4_ttl - 1) & 0xFF
    total = (~p.ipv4_hdr_checksum & 0xFFFF) + 0xFEFF
    total = (total & 0xFFFF) + (total >> 16)
    p.ipv4_hdr_checksum = ~total & 0xFFFF


def digest_tuple(p: Packet) -> None:
    """`digest_tuple`: the 5-tuple as received into the digest metadata."""
    p.dg_src_addr = p.ipv4_src_addr
    p.dg_dst_addr = p.ipv4_dst_addr
    p.dg_src_port = p.l4_sport
    p.dg_dst_port = p.l4_dport
    p.dg_protocol = p.ipv4_protocol


def raise_digest(p: Packet, kind: int, version: int) -> None:
    """Digest metadata: kind, version, the (rewritten) destination as the DIP; the single
    digest() call at the end of the apply block sends it when kind != 0."""
    p.dg_kind = kind
    p.dg_version = version
    p.dg_dip_addr = p.ipv4_dst_addr
    p.dg_dip_port = p.l4_dport


def lb_compute_checksum(p: Packet) -> None:
    """LbComputeChecksum: full IPv4 and TCP/UDP checksums when the balancer rewrote the packet."""
    if not p.rewritten:
        return
    if p.ipv4_valid:
        p.ipv4_hdr_checksum = csum16(p.ipv4_header_fields())
    if p.tcp_valid:
        p.tcp_checksum = csum16(
            _PSEUDO.pack(p.ipv4_src_addr, p.ipv4_dst_addr, 0, p.ipv4_protocol, p.l4_len)
            + _PORTS.pack(p.tcp_src_port, p.tcp_dst_port)
            + p.tcp_middle
            + _U16.pack(p.tcp_urgent_ptr)
            + p.payload
        )
    if p.udp_valid and p.udp_checksum != 0:
        p.udp_checksum = csum16(
            _PSEUDO.pack(p.ipv4_src_addr, p.ipv4_dst_addr, 0, p.ipv4_protocol, p.udp_length)
            + _UDP_FIELDS.pack(p.udp_src_port, p.udp_dst_port, p.udp_length)
            + p.payload
        )
