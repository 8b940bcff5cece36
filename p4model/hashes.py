"""BMv2's hash algorithms and field-list packing, bit for bit.

BMv2 packs a field list most significant bit first with no per-field byte alignment, pads the
last byte with zeros, hashes the bytes, and computes `base + h % max` (max 0 gives base), truncated
to the destination's width.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from enum import Enum


class HashAlgorithm(Enum):
    """The v1model hash algorithms BMv2 implements (`random` is not supported by BMv2)."""

    CRC32 = "crc32"
    CRC16 = "crc16"
    CSUM16 = "csum16"
    IDENTITY = "identity"

    # Members are singletons: hashing by identity keeps ALGORITHMS[algorithm] off Enum's
    # Python-level __hash__, which compute_hash would otherwise pay on every packet.
    __hash__ = object.__hash__


def _crc16_arc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC16_TABLE = _crc16_arc_table()


def _crc16_arc_pair_table() -> tuple[int, ...]:
    # Two input bytes fill the whole 16-bit register, so the CRC after a little-endian pair w
    # depends on crc ^ w alone: one lookup per pair halves the Python loop (the Bloom key is
    # 13 bytes). 65,536 entries, about 15 ms to build.
    table = _CRC16_TABLE
    return tuple(
        (table[w & 0xFF] >> 8) ^ table[((w >> 8) ^ table[w & 0xFF]) & 0xFF] for w in range(1 << 16)
    )


_CRC16_PAIR_TABLE = _crc16_arc_pair_table()


crc32: Callable[[bytes], int] = zlib.crc32
"""Standard reflected CRC-32, as BMv2's `crc32`: zlib's own function, with no Python call
around it (the Bloom lookup and the flow hash take two per new connection)."""


def crc16(data: bytes) -> int:
    """CRC-16/ARC (poly 0x8005 reflected, init 0, no final xor), as BMv2's `crc16`."""
    crc = 0
    pairs = _CRC16_PAIR_TABLE
    size = len(data)
    words = _LITTLE_ENDIAN_PAIRS.get(size)
    if words is None:
        words = _LITTLE_ENDIAN_PAIRS.setdefault(size, struct.Struct(f"<{size >> 1}H"))
    for word in words.unpack_from(data):
        crc = pairs[crc ^ word]
    if size & 1:
        crc = (crc >> 8) ^ _CRC16_TABLE[(crc ^ data[-1]) & 0xFF]
    return crc


# data size -> the Struct that reads its byte pairs as little-endian words: unpacking with it
# is faster than building an array (field lists come in a few sizes, so this stays small)
_LITTLE_ENDIAN_PAIRS: dict[int, struct.Struct] = {}


def ones_complement_sum(data: bytes) -> int:
    """RFC 1071 16-bit ones'-complement sum (odd length padded with a zero byte), 0..0xFFFF."""
    if len(data) & 1:
        data += b"\x00"
    if not data:
        return 0
    number = int.from_bytes(data, "big")
    # 2**16 == 1 (mod 0xFFFF), so the sum with end-around carry is the number mod 0xFFFF,
    # except that a non-zero input never sums to 0: it sums to 0xFFFF ("negative zero").
    total = number % 0xFFFF
    if total == 0 and number != 0:
        return 0xFFFF
    return total


def csum16(data: bytes) -> int:
    """The Internet checksum (ones' complement of the ones'-complement sum), as BMv2's `csum16`."""
    return ~ones_complement_sum(data) & 0xFFFF


def identity(data: bytes) -> int:
    """BMv2's `identity`: the first (at most 8) bytes as a big-endian number."""
    return int.from_bytes(data[:8], "big")


ALGORITHMS: dict[HashAlgorithm, Callable[[bytes], int]] = {
    HashAlgorithm.CRC32: crc32,
    HashAlgorithm.CRC16: crc16,
    HashAlgorithm.CSUM16: csum16,
    HashAlgorithm.IDENTITY: identity,
}


def pack_fields(fields: Sequence[tuple[int, int]]) -> bytes:
    """Bit-pack (value, width) pairs MSB first without byte alignment; zero-pad the last byte."""
    number = 0
    bits = 0
    for value, width in fields:
        number = (number << width) | (value & ((1 << width) - 1))
        bits += width
    pad = -bits % 8
    return (number << pad).to_bytes((bits + pad) // 8, "big")


def compute_hash(
    algorithm: HashAlgorithm, base: int, data: bytes, maximum: int, out_width: int
) -> int:
    """The v1model `hash()` extern: `base + H(data) % maximum` (maximum 0 gives base), truncated."""
    value = ALGORITHMS[algorithm](data)
    result = base if maximum == 0 else base + value % maximum
    return result & ((1 << out_width) - 1)
