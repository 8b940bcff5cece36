"""Carrying out the core's switch operations on a blocking runtime API, one typed outcome each.

The in-process model's and the Thrift client's `SwitchClient.apply` end here: the model
directly, BMv2's Thrift API on its worker thread (one hop for a whole batch, in order). The API
is the p4-utils runtime API shape (`table_add(table, action, keys, params) -> handle`, ...),
which `p4model.Switch` and the Thrift client's checked wrapper share. (The P4Runtime client
builds Write batches of its own, `p4runtime_writes`.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from controller.core.ops import (
    DefaultActionRead,
    DefaultActionSet,
    DefaultEntry,
    EntryCount,
    EntryTimeoutSet,
    ErrorKind,
    MatchValue,
    Outcome,
    ReadEntry,
    SwitchOp,
    TableClear,
    TableDelete,
    TableInsert,
    TableModify,
    TableRead,
    describe,
)
from controller.switch.api import SwitchError


class RuntimeApi(Protocol):
    """The blocking runtime calls the operations need (p4-utils' names and argument forms)."""

    def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> object:
        """Add an entry; return its handle."""
        ...

    def table_modify(self, table: str, action: str, handle: int, params: Sequence[str]) -> object:
        """Change an entry's action and parameters."""
        ...

    def table_delete(self, table: str, handle: int) -> object:
        """Delete an entry."""
        ...

    def table_clear(self, table: str) -> object:
        """Delete every entry of a table."""
        ...

    def table_set_default(self, table: str, action: str, params: Sequence[str]) -> object:
        """Set a table's default action."""
        ...

    def table_set_timeout(self, table: str, handle: int, ms: int) -> object:
        """Give an entry an idle timeout."""
        ...

    def table_get_default(self, table: str) -> tuple[str, Sequence[int]]:
        """A table's default action: its name (maybe control-qualified) and parameter values."""
        ...

    def table_num_entries(self, table: str) -> object:
        """Count a table's entries."""
        ...

    def table_entries(
        self, table: str
    ) -> Sequence[tuple[int, Sequence[object], str, Sequence[int]]]:
        """Every entry of a table: (handle, match, action, params), values as numbers (an lpm
        match field as [value, prefix length])."""
        ...


def perform(api: RuntimeApi, op: SwitchOp, kind_of: Callable[[Exception], ErrorKind]) -> Outcome:
    """Carry out one operation; a failure becomes a failed Outcome whose kind is the
    `SwitchError`'s, or `kind_of(exc)` for the target's own exceptions."""
    try:
        if isinstance(op, TableInsert):
            handle = api.table_add(op.table, op.action, list(op.keys), list(op.params))
            if not isinstance(handle, int):
                raise SwitchError(f"table_add returned {handle!r}, not a handle")
            return Outcome.done(op, handle=handle)
        if isinstance(op, TableModify):
            api.table_modify(op.table, op.action, op.handle, list(op.params))
        elif isinstance(op, TableDelete):
            api.table_delete(op.table, op.handle)
        elif isinstance(op, EntryTimeoutSet):
            api.table_set_timeout(op.table, op.handle, op.timeout_ms)
        elif isinstance(op, TableClear):
            api.table_clear(op.table)
        elif isinstance(op, DefaultActionSet):
            api.table_set_default(op.table, op.action, list(op.params))
        elif isinstance(op, DefaultActionRead):
            action, params = api.table_get_default(op.table)
            return Outcome.done(op, entry=DefaultEntry.read(action, params))
        elif isinstance(op, TableRead):
            rows = api.table_entries(op.table)
            return Outcome.done(op, entries=tuple(read_entry(row) for row in rows))
        else:
            assert isinstance(op, EntryCount)
            count = api.table_num_entries(op.table)
            if not isinstance(count, int):
                raise SwitchError(f"table_num_entries returned {count!r}, not a count")
            return Outcome.done(op, value=count)
    except SwitchError as exc:
        return Outcome.failed(op, exc.kind, f"{describe(op)}: {exc}")
    except Exception as exc:
        name = type(exc).__name__
        shown = str(exc) if name == "SwitchError" else f"{name}: {exc}"  # e.g. p4model's
        return Outcome.failed(op, kind_of(exc), f"{describe(op)}: {shown}")
    return Outcome.done(op)


def read_entry(row: tuple[int, Sequence[object], str, Sequence[int]]) -> ReadEntry:
    """One row of `table_entries` as a ReadEntry (raises SwitchError if malformed)."""
    handle, match, action, params = row
    fields: list[MatchValue] = []
    for field in match:
        if isinstance(field, int):
            fields.append(field)
        elif isinstance(field, list | tuple) and len(field) == 2:
            fields.append((int(field[0]), int(field[1])))
        else:
            raise SwitchError(f"bad match field {field!r} read back")
    return ReadEntry(int(handle), tuple(fields), action.rsplit(".", 1)[-1], tuple(params))


def perform_all(
    api: RuntimeApi, ops: Sequence[SwitchOp], kind_of: Callable[[Exception], ErrorKind]
) -> list[Outcome]:
    """Carry out operations in order, one outcome each."""
    return [perform(api, op, kind_of) for op in ops]
