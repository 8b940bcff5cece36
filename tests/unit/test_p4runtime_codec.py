"""P4Runtime entity <-> model entry translation: bytestrings, match kinds, checks and codes."""

from __future__ import annotations

import pytest
from finsy.proto import p4r
from hypothesis import given
from hypothesis import strategies as st

from p4model import Switch
from p4model.p4info import build_p4info
from p4model.p4runtime_codec import (
    Code,
    EntryExtras,
    P4RuntimeError,
    ProgramIndex,
    decode_bits,
    decode_table_entry,
    encode_bits,
    encode_default,
    encode_record,
)
from p4model.p4runtime_digests import encode_digest
from p4src.contract import Digest

SWITCH = Switch()
INDEX = ProgramIndex(build_p4info(SWITCH.tables(), SWITCH.registers()))
TABLES = {t.name.rsplit(".", 1)[-1]: t for t in INDEX.tables.values()}
ACTIONS = {a.name.rsplit(".", 1)[-1]: a for a in INDEX.actions.values()}


def entry(
    table: str, exact: list[bytes], action: str | None, params: list[bytes]
) -> p4r.TableEntry:
    """A TableEntry with exact values for the first fields and an optional action."""
    t = TABLES[table]
    out = p4r.TableEntry(table_id=t.id)
    for field, value in zip(t.fields, exact, strict=False):
        out.match.add(field_id=field.id).exact.value = value
    if action is not None:
        a = ACTIONS[action]
        out.action.action.action_id = a.id
        for (pid, _, _), value in zip(a.params, params, strict=True):
            out.action.action.params.add(param_id=pid, value=value)
    return out


@pytest.mark.parametrize(
    ("value", "data"),
    [(0, b"\x00"), (0x50, b"\x50"), (0x1F90, b"\x1f\x90"), (1 << 32, b"\x01" + bytes(4))],
)
def test_encode_is_canonical(value: int, data: bytes) -> None:
    assert encode_bits(value) == data


@pytest.mark.parametrize(
    ("data", "width", "value"),
    [
        (b"\x00\x50", 16, 0x50),
        (b"\x50", 16, 0x50),
        (b"\x00\x00\x63", 12, 0x63),
        (b"\x01\xff", 9, 511),
    ],
)
def test_decode_accepts_padded_and_canonical(data: bytes, width: int, value: int) -> None:
    assert decode_bits(data, width, "x") == value


@pytest.mark.parametrize(
    ("data", "width"), [(b"", 8), (b"\x01\x63", 8), (b"\x10\x63", 12), (b"\x02\x00", 9)]
)
def test_decode_refuses_empty_and_too_wide_with_out_of_range(data: bytes, width: int) -> None:
    with pytest.raises(P4RuntimeError) as caught:
        decode_bits(data, width, "x")
    assert caught.value.code is Code.OUT_OF_RANGE


@given(st.integers(min_value=0, max_value=(1 << 48) - 1))
def test_canonical_bytes_round_trip(value: int) -> None:
    assert decode_bits(encode_bits(value), 48, "x") == value


def test_an_exact_entry_decodes_to_the_model_string_form() -> None:
    e = entry(
        "vip_table", [b"\x0a\x00\x00\x64", b"\x00\x50", b"\x06"], "set_pool", [b"\x07", b"\x01"]
    )
    decoded = decode_table_entry(INDEX, e, with_action=True)
    assert decoded.keys == (str(0x0A000064), "80", "6")
    assert (decoded.action, decoded.params) == ("LbIngress.set_pool", ("7", "1"))


def test_a_decoded_entry_installs_and_encodes_back_canonically() -> None:
    switch = Switch()
    e = entry(
        "vip_table", [b"\x0a\x00\x00\x64", b"\x00\x50", b"\x06"], "set_pool", [b"\x00\x07", b"\x01"]
    )
    d = decode_table_entry(INDEX, e, with_action=True)
    assert d.action is not None
    handle = switch.table_add(d.table.name, d.action, d.keys, d.params)
    record = switch.table("vip_table").record(handle)
    out = encode_record(INDEX, d.table, record, EntryExtras(0, 9, b"m"))
    assert [m.exact.value for m in out.match] == [b"\x0a\x00\x00\x64", b"\x50", b"\x06"]
    assert [p.value for p in out.action.action.params] == [b"\x07", b"\x01"]
    assert (out.controller_metadata, out.metadata) == (9, b"m")


def test_lpm_prefix_round_trip_and_a_zero_prefix_is_omitted() -> None:
    switch = Switch()
    table = TABLES["dip_table"]
    e = entry("dip_table", [b"\x01", b"\x00\x07"], "drop", [])
    e.match.add(field_id=3).lpm.value = b"\x80\x00"
    e.match[2].lpm.prefix_len = 1
    d = decode_table_entry(INDEX, e, with_action=True)
    assert d.keys[2] == f"{0x8000}/1"
    handle = switch.table_add(table.name, "drop", d.keys, ())
    out = encode_record(INDEX, table, switch.table("dip_table").record(handle), EntryExtras())
    assert (out.match[2].lpm.value, out.match[2].lpm.prefix_len) == (b"\x80\x00", 1)
    del e.match[2]
    assert decode_table_entry(INDEX, e, with_action=True).keys[2] == "0/0"
    handle = switch.table_add(table.name, "drop", ["1", "7", "0/0"], ())
    assert (
        len(
            encode_record(
                INDEX, table, switch.table("dip_table").record(handle), EntryExtras()
            ).match
        )
        == 2
    )


def mutated(change: str) -> p4r.TableEntry:
    """A valid vip_table entry with one defect, named by `change`."""
    e = entry("vip_table", [b"\x0a\x00\x00\x64", b"\x50", b"\x06"], "set_pool", [b"\x07", b"\x01"])
    if change == "lpm on exact":
        e.match[0].lpm.value = b"\x0a"
        e.match[0].lpm.prefix_len = 8
    elif change == "dup field":
        e.match.add(field_id=1).exact.value = b"\x01"
    elif change == "extra param":
        e.action.action.params.add(param_id=9, value=b"\x01")
    elif change == "profile action":
        e.action.action_profile_member_id = 3
    elif change == "table 0":
        e.table_id = 0
    elif change == "default with match":
        e.is_default_action = True
    elif change == "read-only field":
        e.time_since_last_hit.elapsed_ns = 1
    elif change == "param too wide":
        e.action.action.params[1].value = b"\x02"
    return e


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("lpm on exact", Code.INVALID_ARGUMENT),
        ("dup field", Code.INVALID_ARGUMENT),
        ("extra param", Code.INVALID_ARGUMENT),
        ("profile action", Code.INVALID_ARGUMENT),
        ("table 0", Code.INVALID_ARGUMENT),
        ("default with match", Code.INVALID_ARGUMENT),
        ("read-only field", Code.INVALID_ARGUMENT),
        ("param too wide", Code.OUT_OF_RANGE),
    ],
)
def test_bad_entries_raise_the_spec_code(change: str, code: Code) -> None:
    with pytest.raises(P4RuntimeError) as caught:
        decode_table_entry(INDEX, mutated(change), with_action=True)
    assert caught.value.code is code


@pytest.mark.parametrize(
    ("value", "length"), [(b"\x0a\x00\x00\x01", 24), (b"\x0a", 33), (b"\x0a", 0)]
)
def test_bad_lpm_values_are_invalid(value: bytes, length: int) -> None:
    e = entry("ipv4_lpm", [], "drop", [])
    e.match.add(field_id=1).lpm.value = value
    e.match[0].lpm.prefix_len = length
    with pytest.raises(P4RuntimeError) as caught:
        decode_table_entry(INDEX, e, with_action=True)
    assert caught.value.code is Code.INVALID_ARGUMENT


def test_an_unknown_table_is_invalid_argument_as_in_bmv2() -> None:
    with pytest.raises(P4RuntimeError) as caught:
        decode_table_entry(INDEX, p4r.TableEntry(table_id=0x02ABCDEF), with_action=False)
    assert caught.value.code is Code.INVALID_ARGUMENT


def test_a_delete_needs_no_action_but_an_insert_does() -> None:
    e = entry("vip_table", [b"\x0a\x00\x00\x64", b"\x50", b"\x06"], None, [])
    assert decode_table_entry(INDEX, e, with_action=False).action is None
    with pytest.raises(P4RuntimeError):
        decode_table_entry(INDEX, e, with_action=True)


def test_default_entries_encode_with_the_flag_and_canonical_params() -> None:
    table = TABLES["version_config"]
    out = encode_default(INDEX, table, "LbIngress.set_versions", (1, 0, 0x100, 0, 0))
    assert out.is_default_action and not out.match
    assert [p.value for p in out.action.action.params] == [
        b"\x01",
        b"\x00",
        b"\x01\x00",
        b"\x00",
        b"\x00",
    ]


def test_a_digest_encodes_as_the_struct_in_program_order() -> None:
    digest = Digest("teardown", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 0, "10.0.2.2", 8080)
    members = [m.bitstring for m in encode_digest(digest).struct.members]
    assert members == [
        b"\x02",
        b"\x0a\x00\x01\x02",
        b"\x0a\x00\x00\x64",
        b"\x9c\x40",
        b"\x50",
        b"\x06",
        b"\x00",
        b"\x0a\x00\x02\x02",
        b"\x1f\x90",
    ]
