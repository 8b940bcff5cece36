"""Carrying out the core's switch operations on a `SwitchClient` and reporting typed outcomes."""

from __future__ import annotations

from controller.core.ops import (
    DefaultActionRead,
    DefaultActionSet,
    EntryTimeoutSet,
    Outcome,
    SwitchOp,
    TableClear,
    TableDelete,
    TableInsert,
    TableModify,
)
from controller.switch.api import SwitchClient, SwitchError


async def execute(client: SwitchClient, op: SwitchOp) -> Outcome:
    """Run one operation; a refusal comes back as a failed Outcome with the client's error kind.

    Exceptions other than `SwitchError` are bugs and propagate to the caller.
    """
    try:
        if isinstance(op, TableInsert):
            handle = await client.table_add(op.table, op.action, op.keys, op.params)
            return Outcome.done(op, handle=handle)
        if isinstance(op, DefaultActionRead):
            entry = await client.table_get_default(op.table)
            return Outcome.done(op, entry=entry)
        if isinstance(op, TableModify):
            await client.table_modify(op.table, op.action, op.handle, op.params)
        elif isinstance(op, TableDelete):
            await client.table_delete(op.table, op.handle)
        elif isinstance(op, EntryTimeoutSet):
            await client.table_set_timeout(op.table, op.handle, op.timeout_ms)
        elif isinstance(op, TableClear):
            await client.table_clear(op.table)
        else:
            assert isinstance(op, DefaultActionSet)
            await client.table_set_default(op.table, op.action, op.params)
    except SwitchError as exc:
        return Outcome.failed(op, exc.kind, str(exc))
    return Outcome.done(op)
