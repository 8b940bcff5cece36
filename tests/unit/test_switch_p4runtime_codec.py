"""P4Runtime translation: names to IDs, strings to canonical bytes, entries and digests back."""

from __future__ import annotations

from pathlib import Path

import pytest
from finsy.proto import p4d, p4i, p4r
from google.protobuf import json_format, text_format

from controller.core.ops import DefaultEntry, ErrorKind
from controller.switch.api import Digest, SwitchError
from controller.switch.p4info_index import P4InfoIndex
from controller.switch.p4runtime_codec import (
    ActionValue,
    EntryKey,
    action_of_entry,
    decode_digest,
    encode_action,
    encode_key,
    key_of_entry,
    parse_value,
    read_default,
    read_entry,
    table_entry,
    to_bytes,
)
from controller.switch.p4runtime_pipeline import load_p4info


@pytest.fixture
def index(sample_p4info: p4i.P4Info) -> P4InfoIndex:
    """An index over the sample P4Info."""
    return P4InfoIndex(sample_p4info)


@pytest.mark.parametrize(
    ("text", "bits", "value"),
    [
        ("10.0.0.1", 32, 0x0A000001),
        ("80", 16, 80),
        ("0x1f", 8, 31),
        ("00:01:0a:00:02:01", 48, 0x00010A000201),
        ("0", 1, 0),
        ("1", 1, 1),
        ("65535", 16, 65535),
    ],
)
def test_runtime_strings_read_as_numbers(text: str, bits: int, value: int) -> None:
    assert parse_value(text, bits, "k") == value


@pytest.mark.parametrize(
    ("text", "bits"),
    [("65536", 16), ("2", 1), ("-1", 8), ("ten", 8), ("10.0.0.256", 32), ("", 8), ("1.5", 8)],
)
def test_values_that_do_not_fit_or_parse_are_invalid(text: str, bits: int) -> None:
    with pytest.raises(SwitchError) as raised:
        parse_value(text, bits, "vip_table key")
    assert raised.value.kind is ErrorKind.INVALID
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize(
    ("value", "data"), [(0, b"\x00"), (80, b"P"), (255, b"\xff"), (256, b"\x01\x00")]
)
def test_bytes_are_canonical_shortest_big_endian(value: int, data: bytes) -> None:
    assert to_bytes(value) == data


@pytest.mark.parametrize("name", ["vip_table", "LbIngress.vip_table"])
def test_tables_are_found_by_alias_or_full_name(name: str, index: P4InfoIndex) -> None:
    assert index.table(name).id == 100


def test_unknown_names_and_foreign_actions_are_invalid(index: P4InfoIndex) -> None:
    for call in (
        lambda: index.table("nope"),
        lambda: index.action("nope"),
        lambda: index.table_action(index.table("vip_table"), "rewrite_dst"),
    ):
        with pytest.raises(SwitchError) as raised:
            call()
        assert raised.value.kind is ErrorKind.INVALID


def test_the_idle_timeout_table_and_the_digest_are_read_from_the_p4info(index: P4InfoIndex) -> None:
    assert index.table("conn_table").idle_timeout
    assert not index.table("vip_table").idle_timeout
    assert index.digest().id == 300
    assert index.digest().widths == (8, 32, 32, 16, 16, 8, 8, 32, 16)


def test_an_exact_key_encodes_canonically_and_reads_back_equal_from_padded_bytes(
    index: P4InfoIndex,
) -> None:
    table = index.table("vip_table")
    key = encode_key(table, ("10.0.0.1", "80", "6"))
    assert key == EntryKey(100, ((1, 0x0A000001, 0), (2, 80, 0), (3, 6, 0)))
    padded = table_entry(table, key)
    assert [m.exact.value for m in padded.match] == [b"\n\x00\x00\x01", b"P", b"\x06"]
    # A target may answer with leading zeros: the identity is the same.
    padded.match[1].exact.value = b"\x00\x50"
    assert key_of_entry(table, padded) == key


def test_an_lpm_key_is_masked_and_a_zero_length_prefix_is_left_out_on_the_wire(
    index: P4InfoIndex,
) -> None:
    table = index.table("dip_table")
    key = encode_key(table, ("1", "7", "0xffff/4"))
    assert key.match[2] == (3, 0xF000, 4)
    assert table_entry(table, key).match[2].lpm.prefix_len == 4
    wildcard = encode_key(table, ("1", "7", "0/0"))
    read = table_entry(table, wildcard)
    assert [m.field_id for m in read.match] == [1, 2]
    assert key_of_entry(table, read) == wildcard


@pytest.mark.parametrize(
    ("table", "keys"),
    [
        ("vip_table", ("10.0.0.1", "80")),
        ("vip_table", ("10.0.0.1", "80", "6", "1")),
        ("ipv4_lpm", ("10.0.0.0/33",)),
    ],
)
def test_keys_of_the_wrong_count_or_prefix_are_invalid(
    table: str, keys: tuple[str, ...], index: P4InfoIndex
) -> None:
    with pytest.raises(SwitchError) as raised:
        encode_key(index.table(table), keys)
    assert raised.value.kind is ErrorKind.INVALID


def test_an_action_call_round_trips_through_an_entry_read_back(index: P4InfoIndex) -> None:
    table = index.table("conn_table")
    action = encode_action(index.action("rewrite_dst"), ("10.0.2.3", "8080"))
    assert action == ActionValue(202, ((1, 0x0A000203), (2, 8080)))
    key = encode_key(table, ("10.0.1.2", "10.0.0.100", "40000", "80", "6"))
    entry = table_entry(table, key, action, timeout_ns=5)
    assert entry.idle_timeout_ns == 5
    assert action_of_entry(entry) == action
    row = read_entry(index, table, 9, key_of_entry(table, entry), action_of_entry(entry))
    assert (row.handle, row.action, row.params) == (9, "rewrite_dst", (0x0A000203, 8080))
    assert row.match == (0x0A000102, 0x0A000064, 40000, 80, 6)


def test_an_lpm_field_reads_back_as_value_and_prefix_length(index: P4InfoIndex) -> None:
    table = index.table("ipv4_lpm")
    key = encode_key(table, ("10.0.2.0/24",))
    action = encode_action(index.action("forward"), ("2", "00:01:0a:00:02:01", "0"))
    row = read_entry(index, table, 1, key, action)
    assert row.match == ((0x0A000200, 24),)


def test_a_default_entry_reads_back_by_alias(index: P4InfoIndex) -> None:
    entry = p4r.TableEntry(table_id=103, is_default_action=True)
    entry.action.action.action_id = 204
    for n, value in enumerate((b"\x03", b"\x01", b"\xff\xff\xff\xff", b"\x00", b"M"), 1):
        entry.action.action.params.add(param_id=n, value=value)
    assert read_default(index, entry) == DefaultEntry("set_versions", (3, 1, 2**32 - 1, 0, 77))


def _member(value: bytes) -> p4d.P4Data:
    return p4d.P4Data(bitstring=value)


def test_a_digest_sample_decodes_from_canonical_bitstrings(index: P4InfoIndex) -> None:
    values = [b"\x01", b"\n\x00\x01\x02", b"\n\x00\x00d", b"\x9c@", b"P", b"\x06", b"\x00"]
    values += [b"\n\x00\x02\x03", b"\x1f\x90"]
    data = p4d.P4Data(struct=p4d.P4StructLike(members=[_member(v) for v in values]))
    expected = Digest("new_conn", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 0, "10.0.2.3", 8080)
    assert decode_digest(index.digest(), data) == expected


@pytest.mark.parametrize(
    "members",
    [
        [b"\x01"] * 8,  # one short
        [b"\x01\x00"] + [b"\x00"] * 8,  # kind wider than 8 bits
        [b"\x07"] + [b"\x00"] * 8,  # no such kind
    ],
)
def test_a_malformed_digest_sample_is_an_error(members: list[bytes], index: P4InfoIndex) -> None:
    data = p4d.P4Data(struct=p4d.P4StructLike(members=[_member(v) for v in members]))
    with pytest.raises(SwitchError):
        decode_digest(index.digest(), data)


@pytest.mark.parametrize("suffix", [".txt", ".json", ".bin"])
def test_a_p4info_file_is_read_in_the_format_its_suffix_names(
    tmp_path: Path, sample_p4info: p4i.P4Info, suffix: str
) -> None:
    path = tmp_path / f"lb.p4info{suffix}"
    if suffix == ".bin":
        path.write_bytes(sample_p4info.SerializeToString())
    elif suffix == ".json":
        path.write_text(json_format.MessageToJson(sample_p4info))
    else:
        path.write_text(text_format.MessageToString(sample_p4info))
    assert load_p4info(path) == sample_p4info


@pytest.mark.parametrize(
    ("name", "content"), [("x.txt", b"tables {"), ("x.json", b"[1]"), ("x.bin", b"\xff\xff")]
)
def test_a_malformed_or_missing_p4info_file_is_invalid(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for candidate in (path, tmp_path / "missing.txt"):
        with pytest.raises(SwitchError) as raised:
            load_p4info(candidate)
        assert raised.value.kind is ErrorKind.INVALID
