"""Translation between the runtime API's strings and P4Runtime's canonical bytestrings.

Pure. Keys and parameters arrive as p4-utils writes them ("10.0.0.1", "80", "0x1f",
"aa:bb:cc:dd:ee:ff", lpm "value/len"); P4Runtime wants each as the shortest big-endian
bytestring of the value (canonical form; a server may refuse or, worse, store another form), and
reads return that form. An entry's identity is its table, its match as numbers and its priority
(`EntryKey`): the same whatever bytes were sent, so written and read-back entries compare equal.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from finsy.proto import p4d, p4r

from controller.core.ops import DefaultEntry, MatchValue, ReadEntry
from controller.switch.api import Digest, ErrorKind, SwitchError
from controller.switch.notifications import decode_sample
from controller.switch.p4info_index import ActionInfo, DigestInfo, P4InfoIndex, TableInfo
from p4src.contract import DIGEST_FIELDS

FieldValue = tuple[int, int, int]
"""One match field as numbers: (field ID, value, prefix length; 0 for exact fields)."""


@dataclass(frozen=True, slots=True)
class EntryKey:
    """What identifies a table entry in P4Runtime: table, match (by field ID) and priority."""

    table_id: int
    match: tuple[FieldValue, ...]
    priority: int = 0


@dataclass(frozen=True, slots=True)
class ActionValue:
    """An action call as numbers: action ID and (parameter ID, value) in parameter order."""

    action_id: int
    params: tuple[tuple[int, int], ...]


def invalid(message: str) -> SwitchError:
    """A request the client refuses before sending it."""
    return SwitchError(message, ErrorKind.INVALID)


def parse_value(text: str, bitwidth: int, what: str) -> int:
    """A runtime-API string as a number that fits `bitwidth` bits (dotted quad, MAC, or any
    integer literal `int(s, 0)` reads)."""
    value: int
    try:
        if text.count(".") == 3:
            value = int(ipaddress.IPv4Address(text))
        elif text.count(":") == 5:
            value = int(text.replace(":", ""), 16)
        else:
            value = int(text, 0)
    except ValueError:
        raise invalid(f"{what}: cannot read {text!r} as a number") from None
    if not 0 <= value < 1 << bitwidth:
        raise invalid(f"{what}: {text!r} does not fit in {bitwidth} bits")
    return value


def to_bytes(value: int) -> bytes:
    """The canonical bytestring of a non-negative number (zero is one zero byte)."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def from_bytes(data: bytes) -> int:
    """A bytestring as a number (any leading zeros)."""
    return int.from_bytes(data, "big")


def encode_key(table: TableInfo, keys: Sequence[str], priority: int = 0) -> EntryKey:
    """The identity of the entry `keys` (contract order) names in `table`."""
    if len(keys) != len(table.fields):
        raise invalid(f"table {table.alias!r} takes {len(table.fields)} keys, got {len(keys)}")
    match: list[FieldValue] = []
    for field, text in zip(table.fields, keys, strict=True):
        what = f"{table.alias} key {field.name}"
        if field.kind == "exact":
            match.append((field.id, parse_value(text, field.bitwidth, what), 0))
        elif field.kind == "lpm":
            value_text, slash, length_text = text.partition("/")
            length = parse_value(length_text, 16, what) if slash else field.bitwidth
            if length > field.bitwidth:
                raise invalid(f"{what}: prefix length {length} over {field.bitwidth} bits")
            value = parse_value(value_text, field.bitwidth, what)
            # P4Runtime requires the bits past the prefix to be zero; BMv2 ignores them anyway.
            mask = ((1 << length) - 1) << (field.bitwidth - length)
            match.append((field.id, value & mask, length))
        else:
            raise invalid(f"{what}: {field.kind} match fields are not supported")
    return EntryKey(table.id, tuple(match), priority)


def key_of_entry(table: TableInfo, entry: p4r.TableEntry) -> EntryKey:
    """The identity of an entry read back (or named in a notification)."""
    given = {m.field_id: m for m in entry.match}
    match: list[FieldValue] = []
    for field in table.fields:
        found = given.get(field.id)
        if found is None:
            if field.kind != "lpm":
                raise SwitchError(f"{table.alias}: entry without match field {field.name!r}")
            match.append((field.id, 0, 0))  # a don't-care lpm field is omitted on the wire
        elif found.HasField("lpm"):
            match.append((field.id, from_bytes(found.lpm.value), found.lpm.prefix_len))
        elif found.HasField("exact"):
            match.append((field.id, from_bytes(found.exact.value), 0))
        else:
            raise SwitchError(f"{table.alias}: unsupported match on {field.name!r} read back")
    return EntryKey(table.id, tuple(match), entry.priority)


def fill_match(entry: p4r.TableEntry, table: TableInfo, key: EntryKey) -> None:
    """Write the wire form of a match into `entry`: canonical bytes, don't-care lpm fields left
    out. (Filled in place: building sub-messages and assigning them copies each one.)"""
    for field_id, value, length in key.match:
        if table.field(field_id).kind == "lpm":
            if length == 0:
                continue
            field = entry.match.add()
            field.field_id = field_id
            field.lpm.value = to_bytes(value)
            field.lpm.prefix_len = length
        else:
            field = entry.match.add()
            field.field_id = field_id
            field.exact.value = to_bytes(value)


def encode_action(action: ActionInfo, params: Sequence[str]) -> ActionValue:
    """An action call from the runtime API's parameter strings (declaration order)."""
    if len(params) != len(action.params):
        raise invalid(
            f"action {action.alias!r} takes {len(action.params)} parameters, got {len(params)}"
        )
    values = tuple(
        (p.id, parse_value(text, p.bitwidth, f"{action.alias} parameter {p.name}"))
        for p, text in zip(action.params, params, strict=True)
    )
    return ActionValue(action.id, values)


def fill_action(entry: p4r.TableEntry, action: ActionValue) -> None:
    """Write the wire form of an action call into `entry` (in place, as `fill_match`)."""
    call = entry.action.action
    call.action_id = action.action_id
    for param_id, value in action.params:
        param = call.params.add()
        param.param_id = param_id
        param.value = to_bytes(value)


def action_of_entry(entry: p4r.TableEntry) -> ActionValue:
    """The action call of an entry read back (a direct action; profiles are not used)."""
    if not entry.action.HasField("action"):
        raise SwitchError(f"entry of table {entry.table_id} has no direct action")
    call = entry.action.action
    return ActionValue(
        call.action_id, tuple((p.param_id, from_bytes(p.value)) for p in call.params)
    )


def fill_table_entry(
    entry: p4r.TableEntry,
    table: TableInfo,
    key: EntryKey,
    action: ActionValue | None = None,
    timeout_ns: int = 0,
) -> None:
    """Write the entry `key` names into `entry`, with its action and idle timeout when given."""
    entry.table_id = table.id
    fill_match(entry, table, key)
    entry.priority = key.priority
    if action is not None:
        fill_action(entry, action)
    if timeout_ns:
        entry.idle_timeout_ns = timeout_ns


def table_entry(
    table: TableInfo, key: EntryKey, action: ActionValue | None = None, timeout_ns: int = 0
) -> p4r.TableEntry:
    """A TableEntry message for `key`, with its action and idle timeout when given."""
    entry = p4r.TableEntry()
    fill_table_entry(entry, table, key, action, timeout_ns)
    return entry


def default_entry(table: TableInfo, action: ActionValue | None = None) -> p4r.TableEntry:
    """The TableEntry message for a table's default action (to set it, or to read it)."""
    entry = p4r.TableEntry(table_id=table.id, is_default_action=True)
    if action is not None:
        fill_action(entry, action)
    return entry


def _param_values(action: ActionInfo, call: ActionValue) -> tuple[int, ...]:
    given = dict(call.params)
    return tuple(given.get(p.id, 0) for p in action.params)


def read_entry(
    index: P4InfoIndex, table: TableInfo, handle: int, key: EntryKey, call: ActionValue
) -> ReadEntry:
    """An entry read back as the core sees it: match in key order, action alias, parameters."""
    match: list[MatchValue] = []
    for field, (_, value, length) in zip(table.fields, key.match, strict=True):
        match.append((value, length) if field.kind == "lpm" else value)
    action = index.action_by_id(call.action_id)
    return ReadEntry(handle, tuple(match), action.alias, _param_values(action, call))


def read_default(index: P4InfoIndex, entry: p4r.TableEntry) -> DefaultEntry:
    """A default entry read back, as the core sees it."""
    call = action_of_entry(entry)
    action = index.action_by_id(call.action_id)
    return DefaultEntry(action.alias, _param_values(action, call))


def decode_digest(
    info: DigestInfo, data: p4d.P4Data, widths: Sequence[tuple[str, int]] = DIGEST_FIELDS
) -> Digest:
    """One DigestList sample (a struct of bitstrings) as the controller's `Digest`."""
    if not data.HasField("struct"):
        raise SwitchError(f"digest {info.alias!r} sample is not a struct")
    members = data.struct.members
    if len(members) != len(widths):
        raise SwitchError(
            f"digest {info.alias!r} sample has {len(members)} members, expected {len(widths)}"
        )
    sample = bytearray()
    for member, (name, bits) in zip(members, widths, strict=True):
        if not member.HasField("bitstring"):
            raise SwitchError(f"digest {info.alias!r} member {name!r} is not a bitstring")
        try:
            sample += from_bytes(member.bitstring).to_bytes((bits + 7) // 8, "big")
        except OverflowError:
            raise SwitchError(
                f"digest {info.alias!r} member {name!r} = {member.bitstring!r} exceeds {bits} bits"
            ) from None
    return decode_sample(bytes(sample), widths)
