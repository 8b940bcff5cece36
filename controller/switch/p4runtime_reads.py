"""The core's reading operations over P4Runtime: counts, table reads, default reads, clears.

Blocking, on the client's worker thread. P4Runtime has no count and no clear: a count is a
wildcard read, and a clear is a wildcard read followed by a DELETE of each entry (batched).
Entries read back get handles from the book, so later operations can name them.
"""

from __future__ import annotations

from finsy.proto import p4r

from controller.core.ops import (
    DefaultActionRead,
    EntryCount,
    ErrorKind,
    Outcome,
    TableClear,
    TableRead,
    describe,
)
from controller.switch.api import SwitchError
from controller.switch.p4runtime_codec import (
    EntryKey,
    action_of_entry,
    default_entry,
    key_of_entry,
    read_default,
    read_entry,
    table_entry,
)
from controller.switch.p4runtime_connection import Connection
from controller.switch.p4runtime_handles import HandleBook

MAX_UPDATES = 8192
"""Updates per WriteRequest at most (keeps requests and error trailers well under limits)."""

ReadOp = DefaultActionRead | EntryCount | TableRead | TableClear


def perform_read(conn: Connection, book: HandleBook, op: ReadOp) -> Outcome:
    """Carry out one reading operation; failures become its outcome."""
    try:
        table = conn.index.table(op.table)
        if isinstance(op, DefaultActionRead):
            found = conn.read(default_entry(table), f"read {table.alias} default")
            if len(found) != 1:
                raise SwitchError(f"{table.alias!r}: {len(found)} default entries read")
            return Outcome.done(op, entry=read_default(conn.index, found[0]))
        entries = conn.read(p4r.TableEntry(table_id=table.id), f"read {table.alias}")
        if isinstance(op, EntryCount):
            return Outcome.done(op, value=len(entries))
        keys = [key_of_entry(table, e) for e in entries]
        if isinstance(op, TableClear):
            _clear(conn, book, table.id, keys)
            return Outcome.done(op)
        book.keep_only(table.id, set(keys))
        rows = []
        for key, entry in zip(keys, entries, strict=True):
            call = action_of_entry(entry)
            handle = book.adopt(key, call, entry.idle_timeout_ns)
            rows.append(read_entry(conn.index, table, handle, key, call))
        return Outcome.done(op, entries=tuple(rows))
    except SwitchError as exc:
        return Outcome.failed(op, exc.kind, f"{describe(op)}: {exc}")


def _clear(conn: Connection, book: HandleBook, table_id: int, keys: list[EntryKey]) -> None:
    if not conn.primary:
        raise SwitchError("not the primary controller", ErrorKind.NOT_PRIMARY)
    table = conn.index.table_by_id(table_id)
    deletes = [
        p4r.Update(type=p4r.Update.DELETE, entity=p4r.Entity(table_entry=table_entry(table, k)))
        for k in keys
    ]
    book.forget_table(table_id)
    for start in range(0, len(deletes), MAX_UPDATES):
        errors = conn.write(deletes[start : start + MAX_UPDATES])
        # An entry that vanished meanwhile (deleted by another controller) is cleared too.
        bad = [e for e in errors if e is not None and e.kind is not ErrorKind.NOT_FOUND]
        if bad:
            raise SwitchError(f"{len(bad)} deletes failed: {bad[0].message}", bad[0].kind)
