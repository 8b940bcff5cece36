"""The core's write operations as P4Runtime updates, batched, and their results as outcomes.

Pure: the client sends what `WriteBatch.request` builds and hands each update's error back to
`settle`. A batch never holds two updates of the same entry (or of one table's default): the
P4Runtime spec lets a server apply the updates of one Write in any order, so an update that
depends on an earlier one of the batch waits for the next Write.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Literal

from finsy.proto import p4r

from controller.core.ops import (
    DefaultActionSet,
    EntryTimeoutSet,
    ErrorKind,
    Outcome,
    TableDelete,
    TableInsert,
    TableModify,
    describe,
)
from controller.switch.api import SwitchError
from controller.switch.p4info_index import P4InfoIndex, TableInfo
from controller.switch.p4runtime_codec import (
    ActionValue,
    EntryKey,
    default_entry,
    encode_action,
    encode_key,
    fill_table_entry,
    invalid,
)
from controller.switch.p4runtime_handles import EntryState, HandleBook
from controller.switch.p4runtime_status import UNKNOWN, UpdateError

WriteOp = TableInsert | TableModify | TableDelete | EntryTimeoutSet | DefaultActionSet
WRITE_OPS = (TableInsert, TableModify, TableDelete, EntryTimeoutSet, DefaultActionSet)
UpdateKind = Literal["insert", "modify", "delete", "timeout", "default"]
NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class PlannedUpdate:
    """One operation as a P4Runtime update, with what `settle` needs to record its result."""

    op: WriteOp
    kind: UpdateKind
    update: p4r.Update
    target: Hashable
    """What the update changes (an entry's identity, or a table's default)."""
    handle: int | None = None
    state: EntryState | None = None
    """The entry as it stands once the update succeeds."""


def _update(
    kind: p4r.Update.Type.ValueType,
    table: TableInfo,
    key: EntryKey,
    action: ActionValue | None = None,
    timeout_ns: int = 0,
) -> p4r.Update:
    # Filled in place: an entry built apart and wrapped would be copied twice more.
    update = p4r.Update(type=kind)
    fill_table_entry(update.entity.table_entry, table, key, action, timeout_ns)
    return update


class WritePlanner:
    """Builds updates from operations against a P4Info and the handle book, and settles them."""

    def __init__(self, index: P4InfoIndex, book: HandleBook) -> None:
        self.index = index
        self.book = book

    def plan(self, op: WriteOp) -> PlannedUpdate:
        """The update carrying `op` out; SwitchError (INVALID, NOT_FOUND) if it cannot be sent."""
        table = self.index.table(op.table)
        if isinstance(op, TableInsert):
            action = encode_action(self.index.table_action(table, op.action), op.params)
            key = encode_key(table, op.keys)
            state = EntryState(key, action)
            update = _update(p4r.Update.INSERT, table, key, action)
            return PlannedUpdate(op, "insert", update, key, self.book.new_handle(), state)
        if isinstance(op, DefaultActionSet):
            action = encode_action(self.index.table_action(table, op.action), op.params)
            default = p4r.Update(type=p4r.Update.MODIFY)
            default.entity.table_entry.CopyFrom(default_entry(table, action))
            return PlannedUpdate(op, "default", default, ("default", table.id))
        known = self.book.entry(op.handle)
        if known is None or known.key.table_id != table.id:
            raise SwitchError(f"no entry #{op.handle} in {table.alias!r}", ErrorKind.NOT_FOUND)
        if isinstance(op, TableDelete):
            update = _update(p4r.Update.DELETE, table, known.key)
            return PlannedUpdate(op, "delete", update, known.key, op.handle)
        if isinstance(op, TableModify):
            action = encode_action(self.index.table_action(table, op.action), op.params)
            state = EntryState(known.key, action, known.timeout_ns)
            kind: UpdateKind = "modify"
        else:
            if not table.idle_timeout:
                raise invalid(f"table {table.alias!r} does not support idle timeouts")
            if op.timeout_ms <= 0:
                raise invalid(f"idle timeout {op.timeout_ms!r} ms is not positive")
            state = EntryState(known.key, known.action, op.timeout_ms * NS_PER_MS)
            kind = "timeout"
        # MODIFY replaces the action and the idle timeout: send both as they are to stand.
        update = _update(p4r.Update.MODIFY, table, state.key, state.action, state.timeout_ns)
        return PlannedUpdate(op, kind, update, known.key, op.handle, state)

    def settle(self, planned: PlannedUpdate, error: UpdateError | None) -> Outcome:
        """Record an update's result in the handle book; the operation's outcome."""
        op, handle = planned.op, planned.handle
        if error is None:
            if planned.kind == "insert":
                assert handle is not None and planned.state is not None
                self.book.bind(handle, planned.state)
                return Outcome.done(op, handle=handle)
            if planned.kind == "delete":
                assert handle is not None
                self.book.forget(handle)
            elif handle is not None and planned.state is not None:
                state = planned.state
                self.book.update(handle, action=state.action, timeout_ns=state.timeout_ns)
            return Outcome.done(op)
        if error.kind is ErrorKind.NOT_FOUND and handle is not None and planned.kind != "insert":
            self.book.forget(handle)  # the switch no longer has it (deleted, or it restarted)
        return Outcome.failed(op, error.kind, f"{describe(op)}: {error.message or error.code}")


def unexplained_inserts(updates: list[PlannedUpdate], errors: list[UpdateError | None]) -> set[int]:
    """Tables of inserts that failed with UNKNOWN: BMv2's server (PI) reports a full table
    that way, so the client checks those tables' fill against their P4Info size."""
    return {
        planned.state.key.table_id
        for planned, error in zip(updates, errors, strict=True)
        if planned.kind == "insert"
        and planned.state is not None
        and error is not None
        and error.code == UNKNOWN
    }


class FullTables:
    """Tables last seen full, with the entries they held: a full table is not read again for
    every refused insert. A delete that removed (or missed) one of its entries, or a clear,
    makes it unknown again; only the primary writes, so nothing else frees room."""

    def __init__(self) -> None:
        self.known: dict[int, int] = {}

    def note(self, table_id: int, held: int) -> None:
        """The table holds `held` entries, its size."""
        self.known[table_id] = held

    def after_write(self, updates: list[PlannedUpdate], errors: list[UpdateError | None]) -> None:
        """Forget tables that deletes of this Write may have made room in."""
        for planned, error in zip(updates, errors, strict=True):
            if planned.kind == "delete" and (error is None or error.kind is ErrorKind.NOT_FOUND):
                assert isinstance(planned.target, EntryKey)
                self.known.pop(planned.target.table_id, None)

    def forget(self, table_id: int | None = None) -> None:
        """A table was cleared (None: the program was loaded, every table is empty)."""
        if table_id is None:
            self.known.clear()
        else:
            self.known.pop(table_id, None)


def mark_full(
    updates: list[PlannedUpdate], errors: list[UpdateError | None], full: dict[int, int]
) -> list[UpdateError | None]:
    """`errors` with the unexplained insert failures into a full table (ID → entries held)
    read as TABLE_FULL."""
    out: list[UpdateError | None] = []
    for planned, error in zip(updates, errors, strict=True):
        state = planned.state
        if (
            planned.kind == "insert"
            and state is not None
            and error is not None
            and error.code == UNKNOWN
            and state.key.table_id in full
        ):
            held = full[state.key.table_id]
            message = f"{error.message} (the table holds {held} entries: full)"
            out.append(UpdateError(error.code, message, ErrorKind.TABLE_FULL))
        else:
            out.append(error)
    return out


@dataclass
class WriteBatch:
    """Updates for one WriteRequest, in order, at most one per target."""

    updates: list[tuple[int, PlannedUpdate]] = field(default_factory=list)
    _targets: set[Hashable] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.updates)

    def conflicts(self, planned: PlannedUpdate) -> bool:
        """Whether `planned` touches what an update already in the batch touches."""
        return planned.target in self._targets

    def add(self, position: int, planned: PlannedUpdate) -> None:
        """Append the update of the operation at `position` in the caller's list."""
        self.updates.append((position, planned))
        self._targets.add(planned.target)


def uint128(value: int) -> p4r.Uint128:
    """A P4Runtime Uint128 (election IDs)."""
    return p4r.Uint128(high=value >> 64, low=value & ((1 << 64) - 1))
