"""The controls of p4src/loadbalancer.p4, statement by statement: LbIngress and LbComputeChecksum.

Names match the P4 program (tables, actions, registers; BMv2 prefixes them with `LbIngress.`).
Every helper method here corresponds to an action or a block of the P4 `apply`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from operator import itemgetter

from p4model.hashes import HashAlgorithm, compute_hash
from p4model.keys import format_ipv4
from p4model.packet import (
    ETH_LEN,
    IPV4_LEN,
    L4_OFFSET,
    PROTO_TCP,
    PROTO_UDP,
    TCP_CHECKSUM_OFFSET,
    UDP_LEN,
    Packet,
    mac_bytes,
)
from p4model.registers import Register
from p4model.tables import ActionSpec, Entry, KeyField, MatchKind, Table
from p4model.versions import SLOTS, version_select_entries
from p4src.contract import AFFINITY_VERSION, EPOCH_BITS, KIND_CODES, Digest, Settings

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
# {src, dst, sport, dport, protocol} (the Bloom and flow hashes' field lists, in either order):
# byte-aligned widths, so BMv2's bit-packing is plain bytes.
HASH_TUPLE = struct.Struct("!IIHHB")
_IPV4_TTL = ETH_LEN + 8

_REWRITE = (("ip", 32), ("port", 16))
NO_ACTION = ActionSpec("NoAction")
REWRITE_DST = ActionSpec(PREFIX + "rewrite_dst", _REWRITE)
REWRITE_SRC = ActionSpec(PREFIX + "rewrite_src", _REWRITE)
SET_POOL = ActionSpec(PREFIX + "set_pool", (("pool", 16), ("affinity", 1)))
SET_VERSIONS = ActionSpec(
    PREFIX + "set_versions",
    (("active", 2), *((f"epoch_{i}", EPOCH_BITS) for i in range(SLOTS))),
)
USE_VERSION = ActionSpec(PREFIX + "use_version", (("version", 2), ("insert", 1)))
FORWARD = ActionSpec(PREFIX + "forward", (("port", 9), ("src_mac", 48), ("dst_mac", 48)))
DROP = ActionSpec(PREFIX + "drop")

BLOOM_LOOKUP = ActionSpec(PREFIX + "bloom_lookup")
BLOOM_INSERTS = tuple(ActionSpec(f"{PREFIX}bloom_insert_{i}") for i in range(SLOTS))
DIGEST_TUPLE = ActionSpec(PREFIX + "digest_tuple")
DIRECT_ACTIONS = (BLOOM_LOOKUP, *BLOOM_INSERTS, DIGEST_TUPLE)
"""Actions the program calls directly from `apply` (no table runs them; P4Info lists them)."""

DIGEST_NAME = "digest_t"
"""The struct the program's single digest() call sends (BMv2 and P4Info name it so)."""
DIGEST_MEMBERS: tuple[tuple[str, int], ...] = (
    ("kind", 8),
    ("src_addr", 32),
    ("dst_addr", 32),
    ("src_port", 16),
    ("dst_port", 16),
    ("protocol", 8),
    ("version", 8),
    ("dip_addr", 32),
    ("dip_port", 16),
)
"""`digest_t`'s members as the program names them, with widths (p4src.contract.DIGEST_FIELDS
gives the same layout under the controller's names)."""

Action = Callable[..., None]


class LbIngress:
    """Tables, registers and the ingress control of the program."""

    def __init__(self, settings: Settings) -> None:
        """Declare every table and register with the sizes from `settings`."""
        self.settings = settings
        self.blooms = [
            Register(f"{PREFIX}bloom_{i}", EPOCH_BITS, settings.bloom_bits) for i in range(SLOTS)
        ]
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
        self.affinity_table = Table(
            PREFIX + "affinity_table",
            [ipv4_src, ipv4_dst, dport, proto],
            [REWRITE_DST, NO_ACTION],
            settings.affinity_table_size,
            ("NoAction", ()),
        )
        self.version_config = Table(
            PREFIX + "version_config",
            [],
            [SET_VERSIONS],
            1,  # keyless: only the default action matters
            (SET_VERSIONS.name, (0,) * (1 + SLOTS)),
            size_declared=False,
        )
        self.version_select = Table(
            PREFIX + "version_select",
            [KeyField("meta.active", 2, EXACT), KeyField("meta.bloom_match", 4, EXACT)],
            [USE_VERSION, NO_ACTION],
            VERSION_SELECT_SIZE,
            ("NoAction", ()),
            const=True,
            size_declared=False,
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
            self.affinity_table,
            self.version_config,
            self.version_select,
            self.dip_table,
            self.dip_reverse,
            self.ipv4_lpm,
        ]
        self.registers = list(self.blooms)
        self._actions: dict[str, Action] = {
            NO_ACTION.name: _no_action,
            DROP.name: drop,
            REWRITE_DST.name: rewrite_dst,
            REWRITE_SRC.name: rewrite_src,
            SET_POOL.name: set_pool,
            SET_VERSIONS.name: set_versions,
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
            src, dst, proto = p.ipv4_src_addr, p.ipv4_dst_addr, p.ipv4_protocol
            # digest_tuple: the 5-tuple as received, in the order of conn_table's key
            p.dg_tuple = (src, dst, p.l4_sport, p.l4_dport, proto)
            hit = self._apply(self.conn_table, p.dg_tuple, p)
            if hit is not None:
                p.conn_handle = hit.handle
                if p.tcp_valid and p.tcp_flags & TCP_FIN_RST:
                    raise_digest(p, DIGEST_TEARDOWN, 0)
            elif self._apply(self.vip_table, (dst, p.l4_dport, proto), p) is not None:
                p.hash_sport = p.l4_sport
                if p.affinity:
                    p.hash_sport = 0
                    key = (src, dst, p.l4_dport, proto)
                    if self._apply(self.affinity_table, key, p) is not None:
                        p.pinned = 1
                        raise_digest(p, DIGEST_NEW_CONN, AFFINITY_VERSION)
                if not p.pinned:
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
        """A VIP packet that missed conn_table (and affinity_table): version selection, flow
        hash, dip_table."""
        self._apply(self.version_config, (), p)
        key = HASH_TUPLE.pack(
            p.ipv4_src_addr, p.ipv4_dst_addr, p.hash_sport, p.l4_dport, p.ipv4_protocol
        )
        indices, match = self.bloom_lookup(key, p)
        version, insert = 0, 0  # metadata starts at 0; version_select always hits
        chosen = self.version_select.lookup((p.active, match))
        if chosen is not None:
            version, insert = chosen.params
        if insert:
            self.bloom_insert(version, indices, p.epochs[version])
        hash_bits = self.settings.hash_bits
        flow_hash = compute_hash(HashAlgorithm.CRC32, 0, key, 1 << hash_bits, hash_bits)
        if self._apply(self.dip_table, (version, p.pool, flow_hash), p) is not None:
            raise_digest(p, DIGEST_NEW_CONN, version)

    def bloom_insert(self, slot: int, indices: list[int], epoch: int) -> None:
        """The program's bloom_insert_0, bloom_insert_1, bloom_insert_2 and bloom_insert_3 actions
        (one per slot there, since a P4 register array cannot be chosen at run time): tag the
        slot's cells with its epoch."""
        bloom = self.blooms[slot]
        cells, epoch = bloom.cells, epoch & bloom.mask
        for index in indices:  # in bounds: see bloom_lookup
            cells[index] = epoch

    def bloom_lookup(self, key: bytes, p: Packet) -> tuple[list[int], int]:
        """The `bloom_lookup` action: the Bloom indices and the holding mask (bit i: slot i).

        h0 = crc16 over {src, dst, sport, dport, proto}; h1 = crc32 over {dst, src, dport,
        sport, proto}; h2 (BLOOM_HASHES 3) = crc16 over the latter; all mod BLOOM_BITS; sport is
        the hash sport (0 for affinity VIPs). Slot i holds the key when epoch_i != 0 and every
        cell equals epoch_i.
        """
        bits = self.settings.bloom_bits
        swapped = HASH_TUPLE.pack(
            p.ipv4_dst_addr, p.ipv4_src_addr, p.l4_dport, p.hash_sport, p.ipv4_protocol
        )
        indices = [
            compute_hash(HashAlgorithm.CRC16, 0, key, bits, 32),
            compute_hash(HashAlgorithm.CRC32, 0, swapped, bits, 32),
        ]
        if self.settings.bloom_hashes == 3:
            indices.append(compute_hash(HashAlgorithm.CRC16, 0, swapped, bits, 32))
        # The indices are reduced modulo BLOOM_BITS, the registers' size: every read is in
        # bounds, so the cells can be fetched together (BLOOM_HASHES >= 2: a tuple).
        cells_at = itemgetter(*indices)
        match = 0
        for slot, epoch in enumerate(p.epochs):
            if epoch != 0 and cells_at(self.blooms[slot].cells) == (epoch,) * len(indices):
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


def set_pool(p: Packet, pool: int, affinity: int) -> None:
    """`set_pool(pool, affinity)`."""
    p.pool = pool
    p.affinity = affinity


def set_versions(p: Packet, active: int, *epochs: int) -> None:
    """`set_versions(active, epoch_0, epoch_1, epoch_2, epoch_3)`."""
    p.active = active
    p.epochs = epochs


def forward(p: Packet, port: int, src_mac: int, dst_mac: int) -> None:
    """`forward(port, src_mac, dst_mac)`: MACs, TTL decrement, RFC 1624 checksum update."""
    p.egress_spec = port
    p.eth_src = mac_bytes(src_mac)
    p.eth_dst = mac_bytes(dst_mac)
    p.ipv4_ttl = (p.ipv4_ttl - 1) & 0xFF
    total = (~p.ipv4_hdr_checksum & 0xFFFF) + 0xFEFF
    total = (total & 0xFFFF) + (total >> 16)
    p.ipv4_hdr_checksum = ~total & 0xFFFF


def raise_digest(p: Packet, kind: int, version: int) -> None:
    """Digest metadata: kind, version, the (rewritten) destination as the DIP; the single
    digest() call at the end of the apply block sends it when kind != 0."""
    p.dg_kind = kind
    p.dg_version = version
    p.dg_dip_addr = p.ipv4_dst_addr
    p.dg_dip_port = p.l4_dport


def digest_sample(
    kind: int, flow: tuple[int, ...], version: int, dip_addr: int, dip_port: int
) -> Digest:
    """What the digest() call sends for these `digest_t` values (`flow`: the 5-tuple as
    received, as `dg_tuple` holds it), as the switch delivers it."""
    src, dst, sport, dport, protocol = flow
    return Digest(  # positional, in the field order of digest_t (faster than keywords)
        KIND_CODES[kind],
        format_ipv4(src),
        format_ipv4(dst),
        sport,
        dport,
        protocol,
        version,
        format_ipv4(dip_addr),
        dip_port,
    )


def lb_compute_checksum(p: Packet) -> None:
    """LbComputeChecksum: full IPv4 and TCP/UDP checksums when the balancer rewrote the packet
    (a UDP checksum of 0, "none", stays 0)."""
    if not p.rewritten:
        return
    frame, src, dst = p.frame, p.ipv4_src_addr, p.ipv4_dst_addr
    if p.ipv4_valid:
        p.ipv4_hdr_checksum = ipv4_checksum(frame, p.ipv4_ttl, p.ipv4_protocol, src, dst)
    if p.tcp_valid:
        sport, dport = p.tcp_src_port, p.tcp_dst_port
        p.tcp_checksum = tcp_checksum(
            frame, src=src, dst=dst, l4_len=p.l4_len, sport=sport, dport=dport
        )
    if p.udp_valid and p.udp_checksum != 0:
        sport, dport = p.udp_src_port, p.udp_dst_port
        p.udp_checksum = udp_checksum(
            frame, src=src, dst=dst, length=p.udp_length, sport=sport, dport=dport
        )


# The three checksums are the full recompute's, computed without packing the fields: 2**16 is 1
# modulo 0xFFFF, so every 16-bit word (and a 32-bit address) adds its value to the ones'-
# complement sum wherever it sits, and the sum is taken over the received bytes with the words
# the program may have written replaced by their present values. This is RFC 1624's update
# applied to a sum of the received bytes, not to the received checksum: BMv2 repairs a wrong
# incoming checksum, so must we. Every sum covers a non-zero word (version 4; the protocol), so
# the "negative zero" case cannot arise and the checksum is -sum modulo 0xFFFF.


def ipv4_checksum(frame: bytes, ttl: int, protocol: int, src: int, dst: int) -> int:
    """The IPv4 header checksum with these ttl and addresses (IHL 5)."""
    # version_ihl .. flags_frag as received (four words), ttl+protocol, the addresses
    total = int.from_bytes(frame[ETH_LEN:_IPV4_TTL], "big") + (ttl << 8) + protocol
    return -(total + src + dst) % 0xFFFF


def tcp_checksum(frame: bytes, *, src: int, dst: int, l4_len: int, sport: int, dport: int) -> int:
    """The TCP checksum over the pseudo-header and the segment as received with these ports."""
    # seq_no .. urgent_ptr and the payload as received, minus the received checksum
    received = frame[TCP_CHECKSUM_OFFSET] << 8 | frame[TCP_CHECKSUM_OFFSET + 1]
    total = _word_sum(frame[L4_OFFSET + 4 :]) - received
    return -(total + src + dst + PROTO_TCP + l4_len + sport + dport) % 0xFFFF


def udp_checksum(frame: bytes, *, src: int, dst: int, length: int, sport: int, dport: int) -> int:
    """The UDP checksum over the pseudo-header and the datagram as received with these ports."""
    total = _word_sum(frame[L4_OFFSET + UDP_LEN :]) + 2 * length  # pseudo-header and header
    return -(total + src + dst + PROTO_UDP + sport + dport) % 0xFFFF


def _word_sum(data: bytes) -> int:
    """The sum of `data`'s 16-bit words modulo 0xFFFF (an odd length is padded with a zero
    byte, as the checksum does), reduced at once so that the rest is small-int arithmetic."""
    return (int.from_bytes(data, "big") << 8 * (len(data) & 1)) % 0xFFFF
