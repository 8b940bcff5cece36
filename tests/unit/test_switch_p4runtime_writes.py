"""P4Runtime writes: planning updates from operations, handles, batching, per-update errors."""

from __future__ import annotations

import pytest
from finsy.proto import p4i, p4r, rpc_status

from controller.core.ops import (
    DefaultActionSet,
    EntryTimeoutSet,
    ErrorKind,
    Owner,
    TableDelete,
    TableInsert,
    TableModify,
)
from controller.switch.api import SwitchError
from controller.switch.p4info_index import P4InfoIndex
from controller.switch.p4runtime_codec import encode_action, encode_key
from controller.switch.p4runtime_handles import EntryState, HandleBook
from controller.switch.p4runtime_status import (
    ALREADY_EXISTS,
    NOT_FOUND,
    OK,
    PERMISSION_DENIED,
    RESOURCE_EXHAUSTED,
    UNKNOWN,
    UpdateError,
    kind_of_code,
    kind_of_rpc_code,
    update_errors,
)
from controller.switch.p4runtime_writes import (
    FullTables,
    WriteBatch,
    WritePlanner,
    mark_full,
    unexplained_inserts,
)

OWNER = Owner.LEARNING
CONN_KEYS = ("10.0.1.2", "10.0.0.100", "40000", "80", "6")


def conn_insert(sport: int = 40000) -> TableInsert:
    keys = (*CONN_KEYS[:2], str(sport), *CONN_KEYS[3:])
    return TableInsert(OWNER, "conn_table", keys, "rewrite_dst", ("10.0.2.3", "8080"))


@pytest.fixture
def planner(sample_p4info: p4i.P4Info) -> WritePlanner:
    return WritePlanner(P4InfoIndex(sample_p4info), HandleBook())


def inserted(planner: WritePlanner, op: TableInsert) -> int:
    """Plan and settle a successful insert; its handle."""
    outcome = planner.settle(planner.plan(op), None)
    assert outcome.ok and outcome.handle is not None
    return outcome.handle


def test_an_insert_is_an_insert_update_and_its_handle_names_the_entry(
    planner: WritePlanner,
) -> None:
    planned = planner.plan(conn_insert())
    assert planned.update.type == p4r.Update.INSERT
    entry = planned.update.entity.table_entry
    assert entry.table_id == 102
    assert [p.value for p in entry.action.action.params] == [b"\n\x00\x02\x03", b"\x1f\x90"]
    outcome = planner.settle(planned, None)
    assert outcome.handle == planned.handle
    known = planner.book.entry(planned.handle or 0)
    assert known is not None and known.key.table_id == 102


def test_a_failed_insert_binds_no_handle(planner: WritePlanner) -> None:
    planned = planner.plan(conn_insert())
    outcome = planner.settle(planned, UpdateError.of(ALREADY_EXISTS, "exists"))
    assert (outcome.ok, outcome.error) == (False, ErrorKind.DUPLICATE)
    assert len(planner.book) == 0


def test_delete_and_modify_name_the_entry_by_its_match(planner: WritePlanner) -> None:
    handle = inserted(planner, conn_insert())
    delete = planner.plan(TableDelete(OWNER, "conn_table", handle))
    assert delete.update.type == p4r.Update.DELETE
    insert = planner.plan(conn_insert())
    assert delete.update.entity.table_entry.match == insert.update.entity.table_entry.match
    assert planner.settle(delete, None).ok
    with pytest.raises(SwitchError) as raised:
        planner.plan(TableDelete(OWNER, "conn_table", handle))
    assert raised.value.kind is ErrorKind.NOT_FOUND


def test_a_handle_of_another_table_is_not_found(planner: WritePlanner) -> None:
    handle = inserted(planner, conn_insert())
    with pytest.raises(SwitchError) as raised:
        planner.plan(TableDelete(OWNER, "vip_table", handle))
    assert raised.value.kind is ErrorKind.NOT_FOUND


def test_a_timeout_keeps_the_action_and_a_modify_keeps_the_timeout(planner: WritePlanner) -> None:
    handle = inserted(planner, conn_insert())
    timeout = planner.plan(EntryTimeoutSet(OWNER, "conn_table", handle, 250))
    entry = timeout.update.entity.table_entry
    assert (timeout.update.type, entry.idle_timeout_ns) == (p4r.Update.MODIFY, 250_000_000)
    assert entry.action.action.action_id == 202
    planner.settle(timeout, None)
    modify = planner.plan(TableModify(OWNER, "conn_table", handle, "rewrite_dst", ("1", "2")))
    assert modify.update.entity.table_entry.idle_timeout_ns == 250_000_000
    planner.settle(modify, None)
    state = planner.book.entry(handle)
    assert state is not None and state.action.params == ((1, 1), (2, 2))


def test_a_timeout_on_a_table_without_ageing_is_invalid(planner: WritePlanner) -> None:
    op = TableInsert(OWNER, "vip_table", ("10.0.0.1", "80", "6"), "set_pool", ("1", "0"))
    handle = inserted(planner, op)
    with pytest.raises(SwitchError) as raised:
        planner.plan(EntryTimeoutSet(OWNER, "vip_table", handle, 100))
    assert raised.value.kind is ErrorKind.INVALID


def test_a_modify_the_switch_does_not_find_forgets_the_handle(planner: WritePlanner) -> None:
    handle = inserted(planner, conn_insert())
    modify = planner.plan(TableModify(OWNER, "conn_table", handle, "rewrite_dst", ("1", "2")))
    outcome = planner.settle(modify, UpdateError.of(NOT_FOUND, "gone"))
    assert outcome.error is ErrorKind.NOT_FOUND
    assert planner.book.entry(handle) is None


def test_a_default_action_set_is_a_default_modify(planner: WritePlanner) -> None:
    op = DefaultActionSet(OWNER, "version_config", "set_versions", ("1", "2", "3", "4", "5"))
    planned = planner.plan(op)
    entry = planned.update.entity.table_entry
    assert (planned.update.type, entry.is_default_action, entry.table_id) == (
        p4r.Update.MODIFY,
        True,
        103,
    )


def test_a_batch_holds_one_update_per_entry(planner: WritePlanner) -> None:
    batch = WriteBatch()
    first = planner.plan(conn_insert(1))
    batch.add(0, first)
    assert not batch.conflicts(planner.plan(conn_insert(2)))
    assert batch.conflicts(planner.plan(conn_insert(1)))
    default = planner.plan(DefaultActionSet(OWNER, "version_config", "set_versions", ("0",) * 5))
    batch.add(1, default)
    assert batch.conflicts(default)


def test_handles_of_entries_read_back_are_stable_and_vanished_ones_forgotten(
    sample_p4info: p4i.P4Info,
) -> None:
    index = P4InfoIndex(sample_p4info)
    book = HandleBook()
    table = index.table("vip_table")
    action = encode_action(index.action("set_pool"), ("1", "0"))
    one, two = (encode_key(table, (f"10.0.0.{n}", "80", "6")) for n in (1, 2))
    first = book.adopt(one, action)
    second = book.adopt(two, action)
    assert book.adopt(one, action) == first != second
    book.keep_only(table.id, {two})
    assert book.entry(first) is None and book.handle_of(two) == second
    book.bind(99, EntryState(two, action))  # re-inserted after the switch lost it
    assert book.entry(second) is None and book.handle_of(two) == 99
    book.forget_all()  # a program was loaded: the switch holds nothing
    assert len(book) == 0 and book.handle_of(two) is None
    assert book.adopt(one, action) not in (first, second)  # handles are never given twice


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (ALREADY_EXISTS, ErrorKind.DUPLICATE),
        (NOT_FOUND, ErrorKind.NOT_FOUND),
        (RESOURCE_EXHAUSTED, ErrorKind.TABLE_FULL),
        (3, ErrorKind.INVALID),
        (12, ErrorKind.INVALID),
        (14, ErrorKind.UNAVAILABLE),
        (4, ErrorKind.UNAVAILABLE),
        (PERMISSION_DENIED, ErrorKind.NOT_PRIMARY),
        (UNKNOWN, ErrorKind.UNKNOWN),
    ],
)
def test_update_codes_map_to_error_kinds(code: int, kind: ErrorKind) -> None:
    assert kind_of_code(code) is kind


def test_an_rpc_over_a_size_limit_is_not_a_full_table() -> None:
    assert kind_of_rpc_code(RESOURCE_EXHAUSTED) is ErrorKind.UNKNOWN
    assert kind_of_rpc_code(PERMISSION_DENIED) is ErrorKind.NOT_PRIMARY


def _details(*codes: int) -> bytes:
    status = rpc_status.Status(code=UNKNOWN)
    for code in codes:
        status.details.add().Pack(p4r.Error(canonical_code=code, message=f"code {code}"))
    data: bytes = status.SerializeToString()
    return data


def test_per_update_errors_are_read_from_the_status_details() -> None:
    errors = update_errors(_details(OK, ALREADY_EXISTS, OK), 3)
    assert errors is not None
    assert [e.kind if e else None for e in errors] == [None, ErrorKind.DUPLICATE, None]


@pytest.mark.parametrize("details", [None, b"", b"\xff\xff", _details(OK, OK)])
def test_absent_garbled_or_miscounted_details_give_no_per_update_errors(
    details: bytes | None,
) -> None:
    assert update_errors(details, 3) is None


def test_an_unexplained_insert_failure_into_a_full_table_reads_as_table_full(
    planner: WritePlanner,
) -> None:
    updates = [planner.plan(conn_insert(1)), planner.plan(conn_insert(2))]
    errors: list[UpdateError | None] = [None, UpdateError.of(UNKNOWN, "target error")]
    assert unexplained_inserts(updates, errors) == {102}
    marked = mark_full(updates, errors, {102: 65536})
    assert marked[0] is None
    assert marked[1] is not None and marked[1].kind is ErrorKind.TABLE_FULL
    assert mark_full(updates, errors, {}) == errors


def test_a_table_seen_full_stays_full_until_a_delete_or_clear_makes_room(
    planner: WritePlanner,
) -> None:
    full = FullTables()
    full.note(102, 65536)
    handle = inserted(planner, conn_insert(1))
    delete = planner.plan(TableDelete(OWNER, "conn_table", handle))
    full.after_write([delete], [UpdateError.of(UNKNOWN, "target error")])
    assert full.known == {102: 65536}  # a failed delete made no room
    full.after_write([delete], [None])
    assert full.known == {}
    full.note(102, 65536)
    full.forget(102)
    assert full.known == {}
