"""Oldest-match version selection: the rule, the P4 const table, and the switch's behaviour."""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p4model import Switch
from p4model.versions import oldest_match, version_select_entries
from p4src.contract import load_settings

P4_SOURCE = Path(__file__).resolve().parents[2] / "p4src" / "loadbalancer.p4"
_ENTRY = re.compile(r"\(2w(\d), 4w0b([01]{4})\)\s*:\s*use_version\(2w(\d), 1w(\d)\);")


def test_const_entries_in_the_p4_program_match_the_rule() -> None:
    """The 64 const entries of version_select in loadbalancer.p4 are exactly the model's rows."""
    rows = [
        (int(a), int(mask, 2), int(v), int(insert))
        for a, mask, v, insert in _ENTRY.findall(P4_SOURCE.read_text())
    ]
    assert rows == version_select_entries()
    assert len(rows) == 64


@given(
    active=st.integers(0, 3),
    age=st.integers(0, 3),
    false_positives=st.sets(st.integers(0, 3)),
)
def test_own_slot_beats_false_positives_in_newer_slots(
    active: int, age: int, false_positives: set[int]
) -> None:
    """A flow whose slot is `age` flips old wins over any set of matches in newer slots."""
    own = (active - age) % 4
    newer = {(own + k) % 4 for k in range(1, age + 1)}
    mask = 1 << own
    for slot in false_positives & newer:
        mask |= 1 << slot
    assert oldest_match(active, mask) == (own, False)


@given(active=st.integers(0, 3))
def test_no_match_uses_active_slot_with_insertion(active: int) -> None:
    """An empty mask selects the active slot and asks for insertion."""
    assert oldest_match(active, 0) == (active, True)


@given(active=st.integers(0, 3), mask=st.integers(1, 15))
def test_choice_is_a_match_and_no_older_slot_matches(active: int, mask: int) -> None:
    """The chosen slot matches and every slot older than it (in activation order) does not."""
    slot, insert = oldest_match(active, mask)
    assert not insert and mask >> slot & 1
    order = [(active + k) % 4 for k in (1, 2, 3, 0)]
    assert not any(mask >> s & 1 for s in order[: order.index(slot)])


def _syn(sport: int) -> bytes:
    eth = bytes(6) + bytes(6) + b"\x08\x00"
    ip = bytes.fromhex("45000028000000004006") + b"\x00\x00" + bytes([10, 0, 1, 2, 10, 0, 0, 100])
    tcp = (
        sport.to_bytes(2, "big")
        + (80).to_bytes(2, "big")
        + bytes(8)
        + b"\x50\x02\x20\x00"
        + bytes(4)
    )
    return eth + ip + tcp


@settings(max_examples=40, deadline=None)
@given(
    schedule=st.lists(st.tuples(st.integers(1000, 1200), st.booleans()), min_size=1, max_size=40),
)
def test_a_flow_keeps_its_first_version_across_three_flips(
    schedule: list[tuple[int, bool]],
) -> None:
    """With tiny Bloom filters (many false positives), every flow keeps the version of its first
    packet while at most three flips happen (no slot gets a fresh epoch)."""
    switch = Switch(dataclasses.replace(load_settings(), bloom_bits=16))
    switch.table_add("ipv4_lpm", "forward", ["10.0.0.0/8"], ["1", "0", "0"])
    switch.table_add("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["0", "0"])
    for version in range(4):
        switch.table_add(
            "dip_table", "rewrite_dst", [str(version), "0", "0/0"], [f"10.0.2.{version}", "80"]
        )
    epochs = ["101", "102", "103", "104"]
    switch.table_set_default("version_config", "set_versions", ["0", *epochs])
    first_version: dict[int, int] = {}
    flips = 0
    for sport, flip in schedule:
        if flip and flips < 3:
            flips += 1
            switch.table_set_default("version_config", "set_versions", [str(flips), *epochs])
        switch.process(1, _syn(sport))
        (digest,) = switch.pop_digests()
        assert digest.version == first_version.setdefault(sport, digest.version)


def _crc16_arc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


@pytest.mark.parametrize("hashes", [2, 3])
def test_insertion_sets_one_bit_per_hash_function(hashes: int) -> None:
    """A new flow tags bloom_a with epoch_a at crc16(tuple), crc32(swapped) and, with 3,
    crc16(swapped)."""
    switch = Switch(dataclasses.replace(load_settings(), bloom_hashes=hashes, bloom_bits=1 << 20))
    switch.table_add("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["0", "0"])
    switch.table_set_default("version_config", "set_versions", ["2", "5", "6", "77", "8"])
    switch.process(1, _syn(4321))
    forward = bytes([10, 0, 1, 2, 10, 0, 0, 100]) + struct.pack("!HHB", 4321, 80, 6)
    swapped = bytes([10, 0, 0, 100, 10, 0, 1, 2]) + struct.pack("!HHB", 80, 4321, 6)
    expected = {_crc16_arc(forward), zlib.crc32(swapped) % (1 << 20)}
    if hashes == 3:
        expected.add(_crc16_arc(swapped))
    cells = switch.register_read("bloom_2")
    assert isinstance(cells, list)
    assert {i: tag for i, tag in enumerate(cells) if tag} == dict.fromkeys(expected, 77)
    assert sum(switch.register_read("bloom_0")) == 0  # type: ignore[arg-type]
