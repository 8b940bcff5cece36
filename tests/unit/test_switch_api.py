"""Shared switch helpers: digest conversion, error wrapping, the worker and polling threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

import p4model
from controller.switch.api import (
    Digest,
    PollingThread,
    SwitchError,
    WorkerThread,
    describe_call,
    digest_from,
    guarded,
)
from controller.switch.testing import ThreadedClock

sync = SynchronousTestCase()


def test_model_digests_convert_to_controller_digests() -> None:
    raw = p4model.Digest("new_conn", "10.0.1.2", "10.0.0.100", 1, 80, 6, 3, "10.1.3.2", 8080)
    digest = digest_from(raw)
    assert type(digest) is Digest
    assert digest == Digest("new_conn", "10.0.1.2", "10.0.0.100", 1, 80, 6, 3, "10.1.3.2", 8080)


@dataclass
class Partial:
    kind: str = "new_conn"


@dataclass
class OddKind:
    kind: str = "hello"
    src_ip: str = ""
    dst_ip: str = ""
    src_port: int = 0
    dst_port: int = 0
    protocol: int = 0
    version: int = 0
    dip_ip: str = ""
    dip_port: int = 0


@pytest.mark.parametrize(
    ("raw", "needle"), [(Partial(), "not a digest"), (OddKind(), "unknown digest kind 'hello'")]
)
def test_non_digests_are_refused(raw: object, needle: str) -> None:
    with pytest.raises(SwitchError, match=needle):
        digest_from(raw)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (p4model.SwitchError("TABLE_FULL"), "op(): TABLE_FULL"),
        (KeyError("x"), "op(): KeyError: 'x'"),
        (SwitchError("lost"), "op(): lost"),
    ],
)
def test_guarded_names_the_call_and_keeps_the_cause(exc: Exception, expected: str) -> None:
    def fail() -> None:
        raise exc

    with pytest.raises(SwitchError) as raised:
        guarded("op()", fail)
    assert str(raised.value) == expected
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
