"""The P4Info the model builds of its program: p4c's names, widths and kinds; P4Runtime's IDs."""

from __future__ import annotations

import re

import pytest
from finsy.proto import p4i

from p4model import Switch
from p4model.p4info import (
    DEFAULT_TABLE_SIZE,
    build_p4info,
    id_prefix_errors,
    program_shape,
    shape_differences,
)
from p4src.contract import DIGEST_FIELDS, PROGRAM_PATH, load_settings


@pytest.fixture(scope="module")
def info() -> p4i.P4Info:
    """The model's P4Info."""
    switch = Switch()
    return build_p4info(switch.tables(), switch.registers())


def table(info: p4i.P4Info, alias: str) -> p4i.Table:
    """The table with this alias."""
    found: list[p4i.Table] = [t for t in info.tables if t.preamble.alias == alias]
    assert len(found) == 1
    return found[0]


def test_every_id_carries_its_kind_prefix_and_is_unique(info: p4i.P4Info) -> None:
    assert id_prefix_errors(info) == []
    assert {t.preamble.id >> 24 for t in info.tables} == {0x02}
    assert {a.preamble.id >> 24 for a in info.actions} == {0x01}
    assert {d.preamble.id >> 24 for d in info.digests} == {0x17}


def test_conn_table_is_named_as_p4c_names_it(info: p4i.P4Info) -> None:
    conn = table(info, "conn_table")
    assert conn.preamble.name == "LbIngress.conn_table"
    assert [(m.id, m.name, m.bitwidth) for m in conn.match_fields] == [
        (1, "hdr.ipv4.src_addr", 32),
        (2, "hdr.ipv4.dst_addr", 32),
        (3, "meta.l4_sport", 16),
        (4, "meta.l4_dport", 16),
        (5, "hdr.ipv4.protocol", 8),
    ]
    assert conn.idle_timeout_behavior == p4i.Table.NOTIFY_CONTROL
    assert conn.size == load_settings().conn_table_size
    actions = {a.preamble.id: a.preamble.name for a in info.actions}
    assert sorted(actions[r.id] for r in conn.action_refs) == [
        "LbIngress.rewrite_dst",
        "NoAction",
    ]


def test_dip_table_has_its_lpm_field_last(info: p4i.P4Info) -> None:
    kinds = [m.match_type for m in table(info, "dip_table").match_fields]
    assert kinds == [p4i.MatchField.EXACT, p4i.MatchField.EXACT, p4i.MatchField.LPM]


@pytest.mark.parametrize("alias", ["version_config", "version_select"])
def test_a_table_without_a_declared_size_reports_the_default(info: p4i.P4Info, alias: str) -> None:
    assert table(info, alias).size == DEFAULT_TABLE_SIZE


def test_only_the_const_entries_table_is_const(info: p4i.P4Info) -> None:
    assert [t.preamble.alias for t in info.tables if t.is_const_table] == ["version_select"]


def test_directly_called_actions_are_listed_too(info: p4i.P4Info) -> None:
    names = {a.preamble.alias for a in info.actions}
    assert {"bloom_lookup", "bloom_insert_3", "digest_tuple", "NoAction"} <= names


def test_the_digest_struct_has_the_contract_layout(info: p4i.P4Info) -> None:
    (digest,) = info.digests
    assert digest.preamble.name == "digest_t"
    members = info.type_info.structs["digest_t"].members
    assert [m.type_spec.bitstring.bit.bitwidth for m in members] == [w for _, w in DIGEST_FIELDS]
    assert [m.name for m in members][:2] == ["kind", "src_addr"]


def test_the_shape_ignores_ids_and_annotations(info: p4i.P4Info) -> None:
    other = p4i.P4Info()
    other.CopyFrom(info)
    for t in other.tables:
        t.preamble.id += 7
        t.preamble.annotations.append("@hidden")
    ids = {a.preamble.id: a.preamble.id + 11 for a in other.actions}
    for a in other.actions:
        a.preamble.id = ids[a.preamble.id]
    for t in other.tables:
        for r in t.action_refs:
            r.id = ids[r.id]
    assert shape_differences(program_shape(info), program_shape(other)) == []


def test_the_shape_sees_a_changed_width_and_a_missing_table(info: p4i.P4Info) -> None:
    other = p4i.P4Info()
    other.CopyFrom(info)
    other.actions[2].params[0].bitwidth += 1
    del other.tables[0]
    diffs = shape_differences(program_shape(info), program_shape(other))
    assert len(diffs) == 2
    assert any("LbIngress.conn_table" in d and "missing" in d for d in diffs)


def test_digest_members_and_actions_are_the_programs(info: p4i.P4Info) -> None:
    """Without p4c: the struct and the action names as written in p4src/loadbalancer.p4."""
    program = PROGRAM_PATH.read_text(encoding="utf-8")
    struct = re.search(r"struct digest_t \{([^}]*)\}", program)
    assert struct is not None
    declared = [(name, int(width)) for width, name in re.findall(r"bit<(\d+)>\s+(\w+);", struct[1])]
    members = info.type_info.structs["digest_t"].members
    assert [(m.name, m.type_spec.bitstring.bit.bitwidth) for m in members] == declared
    actions = {f"LbIngress.{name}" for name in re.findall(r"\baction (\w+)\(", program)}
    assert {a.preamble.name for a in info.actions} == actions | {"NoAction"}
