"""BMv2 hash algorithms and field-list packing against published values and naive versions."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p4model.hashes import (
    HashAlgorithm,
    compute_hash,
    crc16,
    crc32,
    csum16,
    identity,
    ones_complement_sum,
    pack_fields,
)

CHECK = b"123456789"


def _naive_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _bitwise_crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


@pytest.mark.parametrize(
    ("name", "function", "data", "expected"),
    [
        ("crc32 check value", crc32, CHECK, 0xCBF43926),
        ("crc16/ARC check value", crc16, CHECK, 0xBB3D),
        ("crc16 of nothing", crc16, b"", 0),
        ("RFC 1071 example words", csum16, bytes.fromhex("0001f203f4f5f6f7"), 0xFFFF - 0xDDF2),
        (
            "IPv4 header example",
            csum16,
            bytes.fromhex("450000730000400040110000c0a80001c0a800c7"),
            0xB861,
        ),
        ("all zeros", csum16, bytes(6), 0xFFFF),
        ("empty", csum16, b"", 0xFFFF),
        ("sum is negative zero", csum16, bytes.fromhex("80007fff"), 0x0000),
        ("odd length pads a zero byte", csum16, b"\x01", 0xFEFF),
        ("identity short", identity, b"\x01\x02", 0x0102),
        ("identity keeps the first 8 bytes", identity, bytes(range(1, 11)), 0x0102030405060708),
    ],
)
def test_published_values(name: str, function: object, data: bytes, expected: int) -> None:
    """Each algorithm gives the published / hand-computed value."""
    assert callable(function)
    assert function(data) == expected, name


@given(st.binary(max_size=300))
def test_ones_complement_sum_matches_naive_loop(data: bytes) -> None:
    """The big-integer shortcut equals the word-by-word end-around-carry sum."""
    assert ones_complement_sum(data) == _naive_sum(data)


@given(st.binary(max_size=64))
def test_crc16_matches_bitwise(data: bytes) -> None:
    """The table-driven CRC-16/ARC equals the bit-by-bit definition."""
    assert crc16(data) == _bitwise_crc16(data)


@given(st.binary(max_size=64))
def test_crc32_is_zlib(data: bytes) -> None:
    """crc32 is zlib's CRC-32."""
    assert crc32(data) == zlib.crc32(data)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([(1, 1), (0, 2), (0x1F, 5)], "9f"),
        ([(0xABC, 12)], "abc0"),
        ([(1, 3), (0x1FF, 9)], "3ff0"),
        ([(0xFF, 4)], "f0"),  # values are truncated to their width
        ([(0x3, 2), (0x0, 4), (0x3, 2), (0xAB, 8)], "c3ab"),
        ([(0xA, 4), (0xB, 4), (0xC, 4), (0xD, 4)], "abcd"),
        ([], ""),
    ],
)
def test_pack_fields_is_msb_first_without_alignment(
    fields: list[tuple[int, int]], expected: str
) -> None:
    """Odd-width fields run together MSB first; only the last byte is padded."""
    assert pack_fields(fields).hex() == expected


@given(st.lists(st.tuples(st.integers(0, 2**64), st.integers(1, 40)), max_size=8))
def test_pack_fields_equals_bit_string(fields: list[tuple[int, int]]) -> None:
    """Packing equals joining each value's width-bit binary string and zero-padding."""
    bits = "".join(format(v & ((1 << w) - 1), f"0{w}b") for v, w in fields)
    bits += "0" * (-len(bits) % 8)
    expected = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    assert pack_fields(fields) == expected


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(0, 255),
)
def test_byte_aligned_five_tuple_packs_to_plain_bytes(
    src: int, dst: int, sport: int, dport: int, proto: int
) -> None:
    """The program's 104-bit 5-tuple packs to the struct layout the model uses."""
    packed = pack_fields([(src, 32), (dst, 32), (sport, 16), (dport, 16), (proto, 8)])
    assert packed == struct.pack("!IIHHB", src, dst, sport, dport, proto)


@pytest.mark.parametrize(
    ("base", "maximum", "width", "expected"),
    [
        (0, 65536, 16, 0xCBF43926 % 65536),
        (100, 1000, 32, 100 + 0xCBF43926 % 1000),
        (7, 0, 32, 7),  # max 0 gives the base
        (0xFFFF, 65536, 16, (0xFFFF + 0x3926) & 0xFFFF),  # truncated to the output width
    ],
)
def test_compute_hash_is_base_plus_modulo(
    base: int, maximum: int, width: int, expected: int
) -> None:
    """hash() = base + H % max, truncated to the destination width."""
    assert compute_hash(HashAlgorithm.CRC32, base, CHECK, maximum, width) == expected
