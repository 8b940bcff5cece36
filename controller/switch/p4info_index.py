"""Names to P4Runtime IDs and back, from a P4Info: tables, their match fields, actions, digests.

Pure: built from a `p4.config.v1.P4Info` message, no I/O. The contract (p4src/contract.py) names
tables and actions as p4-utils does ("conn_table", "rewrite_dst"); p4c names them with their
control ("LbIngress.conn_table") and gives the short name as the alias. Either form, or a unique
`.suffix` of the full name, finds the object, so no ID is ever hard-coded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from finsy.proto import p4i

from controller.switch.api import ErrorKind, SwitchError

MatchKind = Literal["exact", "lpm", "ternary", "range", "optional", "other"]

_MATCH_KINDS: Mapping[int, MatchKind] = {
    p4i.MatchField.EXACT: "exact",
    p4i.MatchField.LPM: "lpm",
    p4i.MatchField.TERNARY: "ternary",
    p4i.MatchField.RANGE: "range",
    p4i.MatchField.OPTIONAL: "optional",
}


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One match field of a table."""

    id: int
    name: str
    bitwidth: int
    kind: MatchKind


@dataclass(frozen=True, slots=True)
class ParamInfo:
    """One parameter of an action."""

    id: int
    name: str
    bitwidth: int


@dataclass(frozen=True, slots=True)
class ActionInfo:
    """An action: its ID, full name, alias and parameters in declaration order."""

    id: int
    name: str
    alias: str
    params: tuple[ParamInfo, ...]


@dataclass(frozen=True, slots=True)
class TableInfo:
    """A table: its ID, names, match fields in key order and the actions it may use."""

    id: int
    name: str
    alias: str
    fields: tuple[FieldInfo, ...]
    action_ids: frozenset[int]
    size: int
    idle_timeout: bool
    """Whether entries may carry an idle timeout (`support_timeout = true`)."""
    const: bool

    def field(self, field_id: int) -> FieldInfo:
        """The match field with this ID (SwitchError if the table has none)."""
        for info in self.fields:
            if info.id == field_id:
                return info
        raise SwitchError(f"table {self.alias!r} has no match field {field_id}", ErrorKind.INVALID)


@dataclass(frozen=True, slots=True)
class DigestInfo:
    """A digest: its ID, names and the bit widths of its struct members (None if not bits)."""

    id: int
    name: str
    alias: str
    widths: tuple[int | None, ...]


_Named = TypeVar("_Named", TableInfo, ActionInfo, DigestInfo)


def _find(objects: Iterable[_Named], name: str, what: str) -> _Named:
    candidates = list(objects)
    for obj in candidates:
        if name in (obj.name, obj.alias):
            return obj
    found = [obj for obj in candidates if obj.name.endswith("." + name)]
    if len(found) != 1:
        problem = "ambiguous" if found else "unknown"
        raise SwitchError(f"{problem} {what} {name!r} in the P4Info", ErrorKind.INVALID)
    return found[0]


class P4InfoIndex:
    """Lookups by name and by ID over one P4Info."""

    def __init__(self, info: p4i.P4Info) -> None:
        self.info = info
        self._tables = {t.id: t for t in (_table(t) for t in info.tables)}
        self._actions = {a.id: a for a in (_action(a) for a in info.actions)}
        self._digests = {d.id: d for d in (_digest(d, info) for d in info.digests)}

    def table(self, name: str) -> TableInfo:
        """The table called `name` (full name, alias or unique suffix)."""
        return _find(self._tables.values(), name, "table")

    def table_by_id(self, table_id: int) -> TableInfo:
        """The table with this ID."""
        try:
            return self._tables[table_id]
        except KeyError:
            raise SwitchError(f"no table with ID {table_id} in the P4Info") from None

    def action(self, name: str) -> ActionInfo:
        """The action called `name` (full name, alias or unique suffix)."""
        return _find(self._actions.values(), name, "action")

    def action_by_id(self, action_id: int) -> ActionInfo:
        """The action with this ID."""
        try:
            return self._actions[action_id]
        except KeyError:
            raise SwitchError(f"no action with ID {action_id} in the P4Info") from None

    def table_action(self, table: TableInfo, name: str) -> ActionInfo:
        """The action `name`, which `table` must be allowed to use."""
        action = self.action(name)
        if action.id not in table.action_ids:
            raise SwitchError(f"table {table.alias!r} has no action {name!r}", ErrorKind.INVALID)
        return action

    def digest(self, name: str | None = None) -> DigestInfo:
        """The digest called `name`; with None, the program's only digest."""
        if name is not None:
            return _find(self._digests.values(), name, "digest")
        if len(self._digests) != 1:
            raise SwitchError(
                f"the P4Info has {len(self._digests)} digests, expected one", ErrorKind.INVALID
            )
        return next(iter(self._digests.values()))

    def digest_by_id(self, digest_id: int) -> DigestInfo:
        """The digest with this ID."""
        try:
            return self._digests[digest_id]
        except KeyError:
            raise SwitchError(f"no digest with ID {digest_id} in the P4Info") from None


def _table(table: p4i.Table) -> TableInfo:
    fields = tuple(
        FieldInfo(f.id, f.name, f.bitwidth, _MATCH_KINDS.get(f.match_type, "other"))
        for f in table.match_fields
    )
    return TableInfo(
        id=table.preamble.id,
        name=table.preamble.name,
        alias=table.preamble.alias or table.preamble.name,
        fields=fields,
        action_ids=frozenset(ref.id for ref in table.action_refs),
        size=table.size,
        idle_timeout=table.idle_timeout_behavior == p4i.Table.NOTIFY_CONTROL,
        const=table.is_const_table,
    )


def _action(action: p4i.Action) -> ActionInfo:
    params = tuple(ParamInfo(p.id, p.name, p.bitwidth) for p in action.params)
    preamble = action.preamble
    return ActionInfo(preamble.id, preamble.name, preamble.alias or preamble.name, params)


def _digest(digest: p4i.Digest, info: p4i.P4Info) -> DigestInfo:
    widths: tuple[int | None, ...] = ()
    spec = digest.type_spec
    if spec.HasField("struct"):
        struct = info.type_info.structs.get(spec.struct.name)
        if struct is not None:
            widths = tuple(
                m.type_spec.bitstring.bit.bitwidth
                if m.type_spec.bitstring.HasField("bit")
                else None
                for m in struct.members
            )
    preamble = digest.preamble
    return DigestInfo(preamble.id, preamble.name, preamble.alias or preamble.name, widths)
