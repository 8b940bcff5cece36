"""Translation between P4Runtime entities and the model's tables (pure; no I/O, no gRPC).

A `ProgramIndex` is built from the active P4Info (the client's IDs, since a client may push
p4c's P4Info and then write with p4c's IDs). `decode_table_entry` checks a `p4.v1.TableEntry`
against it the way the P4Runtime spec asks and gives the model's string form of keys and
parameters (`Table.add` parses them); `encode_record` and `encode_default` go the other way with
canonical (shortest) bytestrings (`encode_bits`). Every bad input raises `P4RuntimeError` with
the status code the spec names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from finsy.proto import p4i, p4r

from p4model.keys import prefix_mask
from p4model.tables import EntryRecord, MatchKind

MAX_PRIORITY = (1 << 31) - 1
"""Largest P4Runtime priority; the model (BMv2) priority of a ternary entry is MAX - p4rt's,
since P4Runtime's largest wins and BMv2's smallest."""


class Code(IntEnum):
    """google.rpc.Code values used here."""

    OK = 0
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13


class P4RuntimeError(Exception):
    """A request the server refuses: `code` is the status, the text says why."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FieldInfo:
    """A match field of a table in the active P4Info."""

    id: int
    name: str
    width: int
    kind: MatchKind


@dataclass(frozen=True)
class ActionInfo:
    """An action of the active P4Info: id, name and (param id, name, width) in order."""

    id: int
    name: str
    params: tuple[tuple[int, str, int], ...]


@dataclass(frozen=True)
class TableInfo:
    """A table of the active P4Info."""

    id: int
    name: str
    fields: tuple[FieldInfo, ...]
    action_ids: frozenset[int]
    const: bool
    idle_timeout: bool
    const_default: bool = False

    @property
    def ternary(self) -> bool:
        """Whether entries need a priority (a ternary field makes the table ternary)."""
        return any(f.kind is MatchKind.TERNARY for f in self.fields)


_KINDS = {
    p4i.MatchField.EXACT: MatchKind.EXACT,
    p4i.MatchField.LPM: MatchKind.LPM,
    p4i.MatchField.TERNARY: MatchKind.TERNARY,
}


class ProgramIndex:
    """IDs of the active P4Info resolved to names, widths and kinds."""

    def __init__(self, info: p4i.P4Info) -> None:
        """Index `info` (a P4Info of our program: every match kind is one the model has)."""
        self.tables: dict[int, TableInfo] = {}
        for t in info.tables:
            fields = tuple(
                FieldInfo(m.id, m.name, m.bitwidth, _KINDS[m.match_type]) for m in t.match_fields
            )
            self.tables[t.preamble.id] = TableInfo(
                t.preamble.id,
                t.preamble.name,
                fields,
                frozenset(r.id for r in t.action_refs),
                t.is_const_table,
                t.idle_timeout_behavior == p4i.Table.NOTIFY_CONTROL,
                t.const_default_action_id != 0,
            )
        self.table_ids = {t.name: t.id for t in self.tables.values()}
        self.actions = {
            a.preamble.id: ActionInfo(
                a.preamble.id, a.preamble.name, tuple((p.id, p.name, p.bitwidth) for p in a.params)
            )
            for a in info.actions
        }
        self.action_ids = {a.name: a.id for a in self.actions.values()}
        self.digest_ids = {d.preamble.name: d.preamble.id for d in info.digests}

    def table(self, table_id: int) -> TableInfo:
        """The table with this id; INVALID_ARGUMENT if none (the spec names no code; BMv2's)."""
        info = self.tables.get(table_id)
        if info is None:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"unknown table id {table_id}")
        return info


# ---- bytestrings ------------------------------------------------------------------------------


def decode_bits(data: bytes, width: int, what: str) -> int:
    """A `bit<width>` value from a P4Runtime bytestring (padded or canonical); OUT_OF_RANGE if
    empty or wider than `width`."""
    if not data:
        raise P4RuntimeError(Code.OUT_OF_RANGE, f"{what}: empty bytestring")
    value = int.from_bytes(data, "big")
    if value >> width:
        raise P4RuntimeError(
            Code.OUT_OF_RANGE, f"{what}: value 0x{data.hex()} does not fit in {width} bits"
        )
    return value


def encode_bits(value: int) -> bytes:
    """The canonical (shortest, at least one byte) bytestring of a non-negative value."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


# ---- table entries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """A TableEntry in the model's terms: keys and parameters in the runtime API's string form
    (`Table.add`), the model's priority, and what P4Runtime keeps beside the entry."""

    table: TableInfo
    keys: tuple[str, ...]
    priority: int
    action: str | None
    """Full action name; None when the entry has no action (a DELETE, or a default reset)."""
    params: tuple[str, ...]
    is_default: bool
    idle_timeout_ns: int
    controller_metadata: int
    metadata: bytes


def decode_table_entry(
    index: ProgramIndex, entry: p4r.TableEntry, *, with_action: bool
) -> ModelEntry:
    """Check `entry` against the P4Info and translate it; `with_action`: an action is required
    (INSERT, MODIFY of a non-default entry)."""
    if entry.table_id == 0:
        raise P4RuntimeError(
            Code.INVALID_ARGUMENT, "table_id 0 is not a table (wildcards are for reads)"
        )
    table = index.table(entry.table_id)
    if entry.HasField("time_since_last_hit"):
        raise P4RuntimeError(
            Code.INVALID_ARGUMENT, f"{table.name}: time_since_last_hit is read-only"
        )
    if (
        entry.HasField("meter_config")
        or entry.HasField("counter_data")
        or entry.HasField("meter_counter_data")
    ):
        raise P4RuntimeError(
            Code.INVALID_ARGUMENT, f"{table.name}: the table has no direct resources"
        )
    if entry.idle_timeout_ns and (entry.is_default_action or not table.idle_timeout):
        raise P4RuntimeError(
            Code.INVALID_ARGUMENT,
            f"{table.name}: idle_timeout_ns needs an idle-timeout table and a non-default entry",
        )
    if entry.is_default_action:
        if len(entry.match) or entry.priority:
            raise P4RuntimeError(
                Code.INVALID_ARGUMENT, f"{table.name}: a default entry has no match and no priority"
            )
        keys: tuple[str, ...] = ()
        priority = 0
    else:
        keys = _decode_match(table, entry.match)
        priority = _decode_priority(table, entry.priority)
    action, params = _decode_action(index, table, entry, required=with_action)
    return ModelEntry(
        table,
        keys,
        priority,
        action,
        params,
        entry.is_default_action,
        entry.idle_timeout_ns,
        entry.controller_metadata,
        entry.metadata,
    )


def _decode_priority(table: TableInfo, priority: int) -> int:
    if not table.ternary:
        if priority:
            raise P4RuntimeError(
                Code.INVALID_ARGUMENT,
                f"{table.name}: priority must be 0 (no ternary field), got {priority}",
            )
        return 0
    if not 0 < priority <= MAX_PRIORITY:
        raise P4RuntimeError(
            Code.INVALID_ARGUMENT,
            f"{table.name}: priority must be in 1..{MAX_PRIORITY}, got {priority}",
        )
    return MAX_PRIORITY - priority


def _decode_match(table: TableInfo, match: Iterable[p4r.FieldMatch]) -> tuple[str, ...]:
    given: dict[int, p4r.FieldMatch] = {}
    for m in match:
        if m.field_id in given:
            raise P4RuntimeError(
                Code.INVALID_ARGUMENT, f"{table.name}: field id {m.field_id} given twice"
            )
        given[m.field_id] = m
    known = {f.id for f in table.fields}
    extra = sorted(given.keys() - known)
    if extra:
        raise P4RuntimeError(
            Code.INVALID_ARGUMENT, f"{table.name}: unknown match field ids {extra}"
        )
    return tuple(_decode_field(table, f, given.get(f.id)) for f in table.fields)


def _decode_field(table: TableInfo, field: FieldInfo, m: p4r.FieldMatch | None) -> str:
    what = f"{table.name} field {field.name}"
    which = None if m is None else m.WhichOneof("field_match_type")
    if field.kind is MatchKind.EXACT:
        if m is None or which != "exact":
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"{what}: an exact match is required")
        return str(decode_bits(m.exact.value, field.width, what))
    if field.kind is MatchKind.LPM:
        if m is None:
            return "0/0"  # don't care: the field is omitted
        if which != "lpm":
            raise P4RuntimeError(
                Code.INVALID_ARGUMENT, f"{what}: expected an lpm match, got {which}"
            )
        length = m.lpm.prefix_len
        if not 0 < length <= field.width:
            raise P4RuntimeError(
                Code.INVALID_ARGUMENT,
                f"{what}: prefix_len must be in 1..{field.width}, got {length}",
            )
        value = decode_bits(m.lpm.value, field.width, what)
        if value & ~prefix_mask(length, field.width):
            raise P4RuntimeError(
                Code.INVALID_ARGUMENT, f"{what}: bits set beyond the /{length} prefix"
            )
        return f"{value}/{length}"
    if m is None:
        return "0&&&0"
    if which != "ternary":
        raise P4RuntimeError(
            Code.INVALID_ARGUMENT, f"{what}: expected a ternary match, got {which}"
        )
    value = decode_bits(m.ternary.value, field.width, what)
    mask = decode_bits(m.ternary.mask, field.width, what)
    if mask == 0 or value & ~mask:
        raise P4RuntimeError(
            Code.INVALID_ARGUMENT, f"{what}: mask must be non-zero and cover every value bit"
        )
    return f"{value}&&&{mask}"


def _decode_action(
    index: ProgramIndex, table: TableInfo, entry: p4r.TableEntry, *, required: bool
) -> tuple[str | None, tuple[str, ...]]:
    if not entry.HasField("action"):
        if required:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"{table.name}: the entry needs an action")
        return None, ()
    which = entry.action.WhichOneof("type")
    if which != "action":
        raise P4RuntimeError(
            Code.INVALID_ARGUMENT, f"{table.name}: only direct actions are supported, got {which}"
        )
    call = entry.action.action
    action = index.actions.get(call.action_id)
    if action is None or call.action_id not in table.action_ids:
        raise P4RuntimeError(
            Code.INVALID_ARGUMENT,
            f"{table.name}: action id {call.action_id} is not an action of the table",
        )
    given: dict[int, bytes] = {}
    for p in call.params:
        if p.param_id in given:
            raise P4RuntimeError(
                Code.INVALID_ARGUMENT, f"{action.name}: param id {p.param_id} given twice"
            )
        given[p.param_id] = p.value
    wanted = {pid for pid, _, _ in action.params}
    if given.keys() != wanted:
        raise P4RuntimeError(
            Code.INVALID_ARGUMENT,
            f"{action.name}: expected param ids {sorted(wanted)}, got {sorted(given)}",
        )
    params = tuple(
        str(decode_bits(given[pid], width, f"{action.name} param {name}"))
        for pid, name, width in action.params
    )
    return action.name, params


@dataclass(frozen=True)
class EntryExtras:
    """What P4Runtime keeps beside a model entry and returns on reads."""

    idle_timeout_ns: int = 0
    controller_metadata: int = 0
    metadata: bytes = b""


def encode_record(
    index: ProgramIndex, table: TableInfo, record: EntryRecord, extras: EntryExtras
) -> p4r.TableEntry:
    """A model entry as a P4Runtime TableEntry, with canonical bytestrings."""
    out = p4r.TableEntry(table_id=table.id)
    for i, field in enumerate(table.fields):
        value = record.values[i]
        if field.kind is MatchKind.EXACT:
            out.match.add(field_id=field.id).exact.value = encode_bits(value)
        elif field.kind is MatchKind.LPM:
            if record.prefix_len:  # a /0 prefix is don't care: omitted
                m = out.match.add(field_id=field.id)
                m.lpm.value = encode_bits(value)
                m.lpm.prefix_len = record.prefix_len
        elif record.masks[i]:
            m = out.match.add(field_id=field.id)
            m.ternary.value = encode_bits(value)
            m.ternary.mask = encode_bits(record.masks[i])
    if table.ternary:
        out.priority = MAX_PRIORITY - record.priority
    _encode_action(index, out, record.action, record.params)
    out.idle_timeout_ns = extras.idle_timeout_ns
    out.controller_metadata = extras.controller_metadata
    out.metadata = extras.metadata
    out.is_const = table.const
    return out


def encode_default(
    index: ProgramIndex, table: TableInfo, action: str, params: tuple[int, ...]
) -> p4r.TableEntry:
    """A table's default entry as a P4Runtime TableEntry."""
    out = p4r.TableEntry(table_id=table.id, is_default_action=True)
    _encode_action(index, out, action, params)
    return out


def _encode_action(
    index: ProgramIndex, out: p4r.TableEntry, action: str, params: tuple[int, ...]
) -> None:
    info = index.actions[index.action_ids[action]]
    call = out.action.action
    call.action_id = info.id
    for (pid, _, _), value in zip(info.params, params, strict=True):
        call.params.add(param_id=pid, value=encode_bits(value))
