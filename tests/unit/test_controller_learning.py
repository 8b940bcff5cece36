"""Learning: digests become conn_table entries once; slots stay pending until acknowledged;
entries expire after teardown or idleness; a full table holds connections instead of losing them.
"""

from __future__ import annotations

import pytest

from controller.core.learning import ConnectionLearner, ConnKey, ConnState
from controller.core.ops import (
    EntryTimeoutSet,
    ErrorKind,
    Op,
    Outcome,
    Owner,
    TableDelete,
    TableInsert,
)
from controller.core.shadow import DipTarget

DIP = DipTarget("10.1.0.1", 8080)
OTHER = DipTarget("10.1.0.2", 8080)


def key(n: int, protocol: int = 6) -> ConnKey:
    return ConnKey("10.0.1.2", "10.0.0.100", 1000 + n, 80, protocol)


def learner(capacity: int = 100) -> ConnectionLearner:
    return ConnectionLearner(
        capacity=capacity, tcp_idle_timeout=120.0, udp_idle_timeout=30.0, teardown_linger=2.0
    )


def kind(op: Op) -> str:
    """What a learning operation does: insert, timeout, delete or delete_foreign."""
    if isinstance(op, TableInsert):
        return "insert"
    if isinstance(op, EntryTimeoutSet):
        return "timeout"
    assert isinstance(op, TableDelete)
    return "delete" if isinstance(op.tag, ConnKey) else "delete_foreign"


def kinds(ops: list[Op]) -> list[str]:
    return [kind(op) for op in ops]


def params_of(op: Op) -> tuple[str, ...]:
    """The action parameters of an insert."""
    assert isinstance(op, TableInsert)
    return op.params


def handle_of(op: Op) -> int:
    """The entry a timeout or delete operation targets."""
    assert isinstance(op, EntryTimeoutSet | TableDelete)
    return op.handle


def insert_op(book: ConnectionLearner, k: ConnKey) -> TableInsert:
    """The insert the learner issued for a connection (rebuilt the way it builds it)."""
    conn = book.connection(k)
    assert conn is not None
    params = (conn.dip.ip, str(conn.dip.port))
    return TableInsert(Owner.LEARNING, "conn_table", k.match_keys(), "rewrite_dst", params, k)


def add_done(book: ConnectionLearner, now: float, k: ConnKey, handle: int) -> None:
    book.on_outcome(now, Outcome.done(insert_op(book, k), handle=handle))


def add_failed(book: ConnectionLearner, now: float, k: ConnKey, error: ErrorKind) -> None:
    book.on_outcome(now, Outcome.failed(insert_op(book, k), error, "refused"))


def delete_done(book: ConnectionLearner, now: float, k: ConnKey) -> None:
    conn = book.connection(k)
    assert conn is not None and conn.handle is not None
    book.on_outcome(now, Outcome.done(TableDelete(Owner.LEARNING, "conn_table", conn.handle, k)))


def foreign_deleted(book: ConnectionLearner, handle: int) -> None:
    book.on_outcome(0.0, Outcome.done(TableDelete(Owner.LEARNING, "conn_table", handle)))


def test_duplicate_digests_make_one_add_and_the_slot_is_pending_until_acknowledged() -> None:
    book = learner()
    for t in (0.0, 0.01, 0.02):
        book.on_new_conn(t, key(1), 2, DIP)
    ops = book.due(0.03)
    assert kinds(ops) == ["insert"] and params_of(ops[0]) == (DIP.ip, str(DIP.port))
    assert book.pending_count(2) == 1 and book.last_digest(2) == 0.02
    book.on_new_conn(0.04, key(1), 2, DIP)
    assert book.due(0.05) == []
    add_done(book, 0.1, key(1), 7)
    assert book.pending_count(2) == 0
    (timeout,) = book.due(0.1)
    assert isinstance(timeout, EntryTimeoutSet)
    assert (kind(timeout), timeout.handle, timeout.timeout_ms) == ("timeout", 7, 120000)
    assert book.counters.learned == 1 and book.counters.duplicate_digests == 3


@pytest.mark.parametrize(
    ("error", "retried"), [(ErrorKind.UNAVAILABLE, True), (ErrorKind.INVALID, False)]
)
def test_a_failed_entry_timeout_is_retried_unless_the_target_refuses_ageing(
    error: ErrorKind, retried: bool
) -> None:
    book = learner()
    book.on_new_conn(0.0, key(1, 17), 2, DIP)
    book.due(0.0)
    add_done(book, 0.1, key(1, 17), 7)
    (timeout,) = book.due(0.1)
    book.on_outcome(0.2, Outcome.failed(timeout, error, "refused"))
    again = book.due(2.0)
    assert again == ([timeout] if retried else [])
    assert book.counters.timeout_failures == 1


def test_conflicting_late_digest_is_counted_and_never_changes_the_entry() -> None:
    book = learner()
    book.on_new_conn(0.0, key(1), 1, DIP)
    book.due(0.0)
    add_done(book, 0.1, key(1), 3)
    book.on_new_conn(0.2, key(1), 2, OTHER)
    conn = book.connection(key(1))
    assert conn is not None and conn.dip == DIP and conn.version == 1
    assert book.counters.conflicting_digests == 1


def test_failed_add_is_retried_and_keeps_the_slot_pending() -> None:
    book = learner()
    book.on_new_conn(0.0, key(1), 0, DIP)
    book.due(0.0)
    add_failed(book, 0.1, key(1), ErrorKind.UNAVAILABLE)
    assert book.pending_count(0) == 1
    assert book.due(0.11) == []
    assert kinds(book.due(0.2)) == ["insert"]


def test_full_table_holds_new_connections_until_room_frees() -> None:
    book = learner(capacity=2)
    for n in range(3):
        book.on_new_conn(0.0, key(n), 0, DIP)
    assert kinds(book.due(0.0)) == ["insert", "insert"]
    assert book.full and book.pending_count(0) == 3
    add_done(book, 0.1, key(0), 1)
    add_done(book, 0.1, key(1), 2)
    assert kinds(book.due(0.1)) == ["timeout", "timeout"]
    assert book.full and book.pending_count(0) == 1
    book.on_teardown(0.2, key(0))
    (delete,) = book.due(2.3)
    assert (kind(delete), handle_of(delete)) == ("delete", 1)
    delete_done(book, 2.4, key(0))
    assert kinds(book.due(2.4)) == ["insert"]
    assert not book.full


def test_switch_reported_full_counts_and_retries() -> None:
    book = learner()
    book.on_new_conn(0.0, key(1), 0, DIP)
    book.due(0.0)
    add_failed(book, 0.1, key(1), ErrorKind.TABLE_FULL)
    assert book.full and book.counters.table_full == 1 and book.pending_count(0) == 1


def test_teardown_deletes_after_the_linger_and_a_new_connection_on_the_tuple_is_relearned() -> None:
    book = learner()
    book.on_new_conn(0.0, key(1), 0, DIP)
    book.due(0.0)
    add_done(book, 0.1, key(1), 5)
    book.due(0.1)
    book.on_teardown(1.0, key(1))
    assert book.due(2.9) == []
    (delete,) = book.due(3.0)
    assert kind(delete) == "delete"
    book.on_new_conn(3.05, key(1), 1, OTHER)  # arrives while the delete is in flight
    delete_done(book, 3.1, key(1))
    conn = book.connection(key(1))
    assert conn is not None and conn.state is ConnState.PENDING and conn.dip == OTHER
    assert book.counters.expired_teardown == 1


def test_teardown_before_install_deletes_after_install_plus_linger() -> None:
    book = learner()
    book.on_new_conn(0.0, key(1), 0, DIP)
    book.due(0.0)
    book.on_teardown(0.05, key(1))
    add_done(book, 0.1, key(1), 5)
    assert kinds(book.due(0.1)) == ["timeout"]
    assert kinds(book.due(2.1)) == ["delete"]


def test_ageing_expires_idle_entries_but_ignores_young_handles() -> None:
    book = learner()
    book.on_new_conn(0.0, key(1, protocol=17), 0, DIP)
    book.due(0.0)
    add_done(book, 0.1, key(1, protocol=17), 9)
    book.due(0.1)
    book.on_aged(10.0, [9])  # stale notice for a reused handle: too young to be idle 30 s
    assert book.due(10.0) == []
    book.on_aged(31.0, [9, 12345])
    assert [(kind(op), handle_of(op)) for op in book.due(31.0)] == [("delete", 9)]
    assert book.counters.expired_idle == 1


def test_pending_connection_that_goes_silent_is_forgotten_and_frees_its_slot() -> None:
    book = learner(capacity=0)
    book.on_new_conn(0.0, key(1, protocol=17), 3, DIP)
    book.due(0.0)
    book.on_new_conn(20.0, key(1, protocol=17), 3, DIP)
    book.due(31.0)
    assert book.pending_count(3) == 1
    book.due(50.1)
    assert book.pending_count(3) == 0 and len(book) == 0
    assert book.counters.forgotten_pending == 1


def test_foreign_entries_are_adopted_and_their_idle_notices_deleted_after_a_grace() -> None:
    book = learner()
    book.adopt_foreign(10)
    assert book.in_use == 10
    book.on_new_conn(0.0, key(1), 0, DIP)
    book.due(0.0)
    add_failed(book, 0.1, key(1), ErrorKind.DUPLICATE)
    assert book.pending_count(0) == 0 and book.counters.foreign_adopted == 1
    book.on_aged(1.0, [4])
    assert book.due(1.5) == []
    (op,) = book.due(2.0)
    assert (kind(op), handle_of(op)) == ("delete_foreign", 4)
    foreign_deleted(book, 4)
    assert book.in_use == 10


def test_unknown_idle_handles_are_ignored_on_a_cold_start() -> None:
    book = learner()
    book.on_aged(1.0, [4])
    assert book.due(5.0) == []


def test_no_old_handle_is_used_between_a_switch_loss_and_the_read_back() -> None:
    book = learner()
    book.on_new_conn(0.0, key(1), 0, DIP)
    book.on_new_conn(0.0, key(2), 0, OTHER)
    book.due(0.0)
    add_done(book, 0.1, key(1), 5)
    add_done(book, 0.1, key(2), 6)
    book.due(0.1)
    book.on_teardown(0.2, key(1))  # its delete (handle 5) falls due while the switch is lost
    (read,) = book.switch_lost()
    assert book.due(2.3) == []  # handle 5 may name another entry on the new switch
    book.on_aged(2.4, [6])  # and so may an idle notice
    assert book.due(2.4) == []
    book.on_outcome(2.5, Outcome.done(read))  # the restarted switch holds neither entry
    adds = book.due(2.5)
    assert kinds(adds) == ["insert", "insert"] and book.counters.reinstalled == 2
    add_done(book, 2.6, key(1), 5)  # the new switch hands out handles from 0 again
    add_done(book, 2.6, key(2), 7)
    book.due(2.6)
    deletes = [op for op in book.due(4.7) if isinstance(op, TableDelete)]
    assert [(op.tag, op.handle) for op in deletes] == [(key(1), 5)]  # after a fresh linger
