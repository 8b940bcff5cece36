"""Shared switch helpers: digest conversion, error wrapping, the worker and polling threads."""

from __future__ import annotations

import threading

import pytest
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

import p4model
from controller.switch.api import (
    ErrorKind,
    PollingThread,
    SwitchError,
    WorkerThread,
    describe_call,
    guarded,
)
from controller.switch.model_client import model_error_kind
from controller.switch.testing import ThreadedClock

sync = SynchronousTestCase()


@pytest.mark.parametrize(
    ("exc", "expected", "kind"),
    [
        (
            p4model.SwitchError("full", p4model.errors.ErrorCode.TABLE_FULL),
            "op(): full",
            ErrorKind.TABLE_FULL,
        ),
        (
            p4model.SwitchError("dup", p4model.errors.ErrorCode.DUPLICATE_ENTRY),
            "op(): dup",
            ErrorKind.DUPLICATE,
        ),
        (
            p4model.SwitchError("gone", p4model.errors.ErrorCode.INVALID_HANDLE),
            "op(): gone",
            ErrorKind.NOT_FOUND,
        ),
        (KeyError("x"), "op(): KeyError: 'x'", ErrorKind.UNKNOWN),
        (SwitchError("lost", ErrorKind.UNAVAILABLE), "op(): lost", ErrorKind.UNAVAILABLE),
    ],
)
def test_guarded_names_the_call_keeps_the_cause_and_reads_the_kind(
    exc: Exception, expected: str, kind: ErrorKind
) -> None:
    def fail() -> None:
        raise exc

    with pytest.raises(SwitchError) as raised:
        guarded(lambda: "op()", fail, model_error_kind)
    assert str(raised.value) == expected
    assert raised.value.kind is kind
    assert raised.value.__cause__ is exc


def test_describe_call_shows_arguments_as_python_literals() -> None:
    assert describe_call("table_add", "t", "a", ("1", "2"), ["x"]) == (
        "table_add('t', 'a', ['1', '2'], ['x'])"
    )


def test_worker_runs_calls_in_order_on_one_other_thread_and_reports_errors() -> None:
    clock = ThreadedClock()
    worker = WorkerThread(clock, "test-worker")
    seen: list[tuple[int, str]] = []

    def record(n: int) -> int:
        seen.append((n, threading.current_thread().name))
        if n == 2:
            raise SwitchError("boom")
        return n * 10

    results = [worker.run(record, n) for n in range(5)]
    clock.run_from_threads(5)
    assert [n for n, _ in seen] == [0, 1, 2, 3, 4]
    assert len({name for _, name in seen}) == 1
    assert seen[0][1] != threading.current_thread().name
    assert sync.successResultOf(results[4]) == 40
    assert "boom" in str(sync.failureResultOf(results[2], SwitchError).value)
    worker.stop()
    assert "closed" in str(sync.failureResultOf(worker.run(record, 9), SwitchError).value)


def test_polling_thread_delivers_items_and_reports_a_failing_receive() -> None:
    clock = ThreadedClock()
    items = iter([None, [1], None, [2, 3]])
    delivered: list[list[int]] = []
    errors: list[BaseException] = []

    def receive() -> list[int] | None:
        try:
            return next(items)
        except StopIteration:
            raise OSError("socket gone") from None

    poller = PollingThread(clock, "test-poller", receive, delivered.append, errors.append)
    poller.start()
    clock.run_from_threads(3)
    poller.join(5.0)
    assert delivered == [[1], [2, 3]]
    assert [str(e) for e in errors] == ["socket gone"]


def test_deferreds_from_the_worker_can_be_awaited() -> None:
    clock = ThreadedClock()
    worker = WorkerThread(clock, "test-await")

    async def twice() -> int:
        first = await worker.run(lambda: 1)
        second = await worker.run(lambda: 2)
        return first + second

    total = defer.ensureDeferred(twice())
    clock.run_from_threads(1)
    clock.run_from_threads(1)
    assert sync.successResultOf(total) == 3
