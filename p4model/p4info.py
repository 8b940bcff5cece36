"""The P4Info of p4src/loadbalancer.p4, built from the model's own tables (pure; no I/O).

Names follow p4c: tables and actions by control-qualified name (`LbIngress.conn_table`) with the
last component as alias, match fields by P4 expression (`hdr.ipv4.src_addr`), parameters and
match fields numbered from 1 in declaration order. IDs are ours (P4Runtime's prefix in the top
byte, then a counter), not p4c's name hashes: clients must take IDs from the P4Info, never
hard-code them. `program_shape` reduces any P4Info to what identifies the program (names,
widths, kinds, sizes) so two P4Infos can be compared regardless of IDs and annotations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from finsy.proto import p4i, p4t

from p4model.program import DIGEST_MEMBERS, DIGEST_NAME, DIRECT_ACTIONS
from p4model.registers import Register
from p4model.tables import ActionSpec, MatchKind, Table

ARCH = "v1model"
DEFAULT_TABLE_SIZE = 1024
"""The size p4c reports for a table whose program declares none (BMv2's default)."""

_PREFIX = p4i.P4Ids.Prefix
_MATCH_TYPES = {
    MatchKind.EXACT: p4i.MatchField.EXACT,
    MatchKind.LPM: p4i.MatchField.LPM,
    MatchKind.TERNARY: p4i.MatchField.TERNARY,
}


def object_id(prefix: int, index: int) -> int:
    """The `index`-th (from 0) ID of a kind of P4 object: its prefix in the top byte."""
    return prefix << 24 | (index + 1)


def alias_of(name: str) -> str:
    """p4c's alias for a control-qualified name: its last component (all ours are unique)."""
    return name.rsplit(".", 1)[-1]


def build_p4info(tables: Sequence[Table], registers: Sequence[Register]) -> p4i.P4Info:
    """The P4Info of the program whose tables and registers these are."""
    info = p4i.P4Info()
    info.pkg_info.arch = ARCH
    actions = _all_actions(tables)
    action_ids = {a.name: object_id(_PREFIX.ACTION, i) for i, a in enumerate(actions)}
    for i, table in enumerate(tables):
        t = info.tables.add()
        _preamble(t.preamble, object_id(_PREFIX.TABLE, i), table.name)
        for field_id, key in enumerate(table.keys, start=1):
            t.match_fields.add(
                id=field_id, name=key.name, bitwidth=key.width, match_type=_MATCH_TYPES[key.kind]
            )
        for spec in table.actions:
            t.action_refs.add(id=action_ids[spec.name])
        t.size = table.size if table.size_declared else DEFAULT_TABLE_SIZE
        if table.support_timeout:
            t.idle_timeout_behavior = p4i.Table.NOTIFY_CONTROL
        t.is_const_table = table.const
    for spec in actions:
        a = info.actions.add()
        _preamble(a.preamble, action_ids[spec.name], spec.name)
        for param_id, (pname, width) in enumerate(spec.params, start=1):
            a.params.add(id=param_id, name=pname, bitwidth=width)
    for i, register in enumerate(registers):
        r = info.registers.add()
        _preamble(r.preamble, object_id(_PREFIX.REGISTER, i), register.name)
        r.type_spec.bitstring.bit.bitwidth = register.width
        r.size = register.size
    d = info.digests.add()
    _preamble(d.preamble, object_id(_PREFIX.DIGEST, 0), DIGEST_NAME)
    d.type_spec.struct.name = DIGEST_NAME
    struct = info.type_info.structs[DIGEST_NAME]
    for member, width in DIGEST_MEMBERS:
        struct.members.add(name=member).type_spec.bitstring.bit.bitwidth = width
    return info


def _all_actions(tables: Iterable[Table]) -> list[ActionSpec]:
    """Every action once: those of the tables in order of first use, then the direct ones."""
    seen: dict[str, ActionSpec] = {}
    for table in tables:
        for spec in table.actions:
            seen.setdefault(spec.name, spec)
    for spec in DIRECT_ACTIONS:
        seen.setdefault(spec.name, spec)
    return list(seen.values())


def _preamble(preamble: p4i.Preamble, id_: int, name: str) -> None:
    preamble.id = id_
    preamble.name = name
    preamble.alias = alias_of(name)


# ---- comparing P4Infos ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramShape:
    """What identifies a program in a P4Info, keyed by name: everything but IDs, annotations and
    documentation. Equal shapes mean the same tables, actions, digests and registers."""

    arch: str
    tables: dict[str, tuple[object, ...]]
    actions: dict[str, tuple[object, ...]]
    digests: dict[str, tuple[object, ...]]
    registers: dict[str, tuple[object, ...]]
    others: dict[str, tuple[str, ...]]
    """Names of the objects of every other kind (counters, meters, packet metadata, …)."""


def program_shape(info: p4i.P4Info) -> ProgramShape:
    """The shape of `info` (see ProgramShape); unknown action ids show as `?<id>`."""
    action_names = {a.preamble.id: a.preamble.name for a in info.actions}

    def action_name(id_: int) -> str:
        return str(action_names.get(id_, f"?{id_}"))

    tables: dict[str, tuple[object, ...]] = {
        t.preamble.name: (
            t.preamble.alias,
            tuple(
                (m.id, m.name, m.bitwidth, m.match_type, m.other_match_type) for m in t.match_fields
            ),
            tuple(sorted((action_name(r.id), r.scope) for r in t.action_refs)),
            action_name(t.const_default_action_id) if t.const_default_action_id else "",
            t.size,
            t.idle_timeout_behavior,
            t.is_const_table,
            t.implementation_id != 0,
            len(t.direct_resource_ids),
        )
        for t in info.tables
    }
    actions: dict[str, tuple[object, ...]] = {
        a.preamble.name: (a.preamble.alias, tuple((p.id, p.name, p.bitwidth) for p in a.params))
        for a in info.actions
    }
    digests: dict[str, tuple[object, ...]] = {
        d.preamble.name: (d.preamble.alias, _type_shape(d.type_spec, info.type_info))
        for d in info.digests
    }
    registers: dict[str, tuple[object, ...]] = {
        r.preamble.name: (r.preamble.alias, _type_shape(r.type_spec, info.type_info), r.size)
        for r in info.registers
    }
    others = {
        "counters": tuple(sorted(x.preamble.name for x in info.counters)),
        "direct_counters": tuple(sorted(x.preamble.name for x in info.direct_counters)),
        "meters": tuple(sorted(x.preamble.name for x in info.meters)),
        "direct_meters": tuple(sorted(x.preamble.name for x in info.direct_meters)),
        "action_profiles": tuple(sorted(x.preamble.name for x in info.action_profiles)),
        "controller_packet_metadata": tuple(
            sorted(x.preamble.name for x in info.controller_packet_metadata)
        ),
        "value_sets": tuple(sorted(x.preamble.name for x in info.value_sets)),
        "externs": tuple(sorted(str(x.extern_type_name) for x in info.externs)),
    }
    return ProgramShape(info.pkg_info.arch, tables, actions, digests, registers, others)


def _type_shape(spec: p4t.P4DataTypeSpec, types: p4t.P4TypeInfo) -> tuple[object, ...]:
    """A bitstring as ("bit", width); a struct as ("struct", name, its members' shapes)."""
    kind = spec.WhichOneof("type_spec")
    if kind == "bitstring":
        bits = spec.bitstring
        which = bits.WhichOneof("type_spec") or ""
        width = getattr(bits, which).bitwidth if which in ("bit", "int", "varbit") else 0
        return (which, width)
    if kind == "struct":
        name = spec.struct.name
        members = types.structs[name].members if name in types.structs else []
        return ("struct", name, tuple((m.name, _type_shape(m.type_spec, types)) for m in members))
    return (kind or "",)


def shape_differences(ours: ProgramShape, theirs: ProgramShape) -> list[str]:
    """What differs between two shapes, one line per object, empty when they agree."""
    out: list[str] = []
    if ours.arch != theirs.arch:
        out.append(f"arch: {ours.arch!r} != {theirs.arch!r}")
    for kind in ("tables", "actions", "digests", "registers"):
        mine: dict[str, tuple[object, ...]] = getattr(ours, kind)
        other: dict[str, tuple[object, ...]] = getattr(theirs, kind)
        for name in sorted(mine.keys() | other.keys()):
            if name not in other:
                out.append(f"{kind}: {name!r} missing")
            elif name not in mine:
                out.append(f"{kind}: unexpected {name!r}")
            elif mine[name] != other[name]:
                out.append(f"{kind}: {name!r} differs: {mine[name]!r} != {other[name]!r}")
    for kind in sorted(ours.others.keys() | theirs.others.keys()):
        if ours.others.get(kind, ()) != theirs.others.get(kind, ()):
            out.append(f"{kind}: {ours.others.get(kind)!r} != {theirs.others.get(kind)!r}")
    return out


def id_prefix_errors(info: p4i.P4Info) -> list[str]:
    """IDs that break P4Runtime's rules: wrong top-byte prefix, or used twice."""
    out: list[str] = []
    seen: set[int] = set()
    groups = (
        (_PREFIX.TABLE, [t.preamble for t in info.tables]),
        (_PREFIX.ACTION, [a.preamble for a in info.actions]),
        (_PREFIX.DIGEST, [d.preamble for d in info.digests]),
        (_PREFIX.REGISTER, [r.preamble for r in info.registers]),
    )
    for prefix, preambles in groups:
        for p in preambles:
            if p.id >> 24 != prefix:
                out.append(f"{p.name}: id {p.id:#010x} lacks prefix {prefix:#04x}")
            if p.id in seen:
                out.append(f"{p.name}: id {p.id:#010x} used twice")
            seen.add(p.id)
    return out
