"""RemoteSwitchClient: calls on one worker thread in order, notifications from a second thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

import p4model
from controller.switch.api import DefaultEntry, Digest, SwitchError
from controller.switch.remote_client import RemoteSwitchClient
from controller.switch.testing import ThreadedClock

sync = SynchronousTestCase()

RAW = p4model.Digest("teardown", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 2, "10.1.3.2", 8080)


class FakeRemoteSwitch:
    """`p4model.client.RemoteSwitch`'s blocking interface over an in-process model."""

    def __init__(self, control: str) -> None:
        self.control = control
        self.model = p4model.Switch()
        self.threads: set[str] = set()
        self.notifications: queue.Queue[tuple[list[p4model.Digest], list[int]]] = queue.Queue()
        self.closed = threading.Event()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.model, name)

        def call(*args: Any) -> Any:
            self.threads.add(threading.current_thread().name)
            return method(*args)

        return call

    def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        self.threads.add(threading.current_thread().name)
        return self.model.table_add(table, action, list(keys), list(params), prio)

    def recv_notifications(self, timeout: float) -> tuple[list[p4model.Digest], list[int]]:
        try:
            return self.notifications.get(timeout=min(timeout, 0.05))
        except queue.Empty:
            return [], []

    def close(self) -> None:
        self.closed.set()


def make_client() -> tuple[RemoteSwitchClient, FakeRemoteSwitch, ThreadedClock]:
    clock = ThreadedClock()
    remotes: list[FakeRemoteSwitch] = []

    def factory(control: str) -> FakeRemoteSwitch:
        remotes.append(FakeRemoteSwitch(control))
        return remotes[-1]

    client = RemoteSwitchClient(clock, "tcp://127.0.0.1:9559", remote_factory=factory)
    return client, remotes[0], clock


def test_calls_run_in_order_on_one_worker_thread() -> None:
    client, remote, clock = make_client()
    calls: list[defer.Deferred[int | None]] = [
        defer.ensureDeferred(
            client.table_set_default("version_config", "set_versions", [str(v), "1", "1", "1", "1"])
        )
        for v in (1, 2, 3)
    ]
    calls.append(defer.ensureDeferred(client.table_add("ipv4_lpm", "drop", ["10.9.0.0/16"], [])))
    read = defer.ensureDeferred(client.table_get_default("version_config"))
    count = defer.ensureDeferred(client.table_num_entries("ipv4_lpm"))
    clock.run_from_threads(6)
    assert [sync.successResultOf(c) for c in calls[:3]] == [None, None, None]
    assert sync.successResultOf(read) == DefaultEntry("set_versions", (3, 1, 1, 1, 1))
    assert sync.successResultOf(count) == 1
    assert len(remote.threads) == 1
    assert threading.current_thread().name not in remote.threads


def test_remote_errors_become_switch_errors_naming_the_switch_and_call() -> None:
    client, _, clock = make_client()
    failed = defer.ensureDeferred(client.table_delete("conn_table", 777))
    clock.run_from_threads(1)
    message = str(sync.failureResultOf(failed, SwitchError).value)
    assert "tcp://127.0.0.1:9559" in message
    assert "table_delete('conn_table', 777)" in message


def test_notifications_are_delivered_in_the_reactor_thread_as_controller_digests() -> None:
    client, remote, clock = make_client()
    digests: list[Digest] = []
    aged: list[list[int]] = []
    sync.successResultOf(
        defer.ensureDeferred(client.subscribe(digests.append, lambda h: aged.append(list(h))))
    )
    remote.notifications.put(([RAW], [7, 8]))
    clock.run_from_threads(1)
    assert digests == [
        Digest("teardown", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 2, "10.1.3.2", 8080)
    ]
    assert type(digests[0]) is Digest
    assert aged == [[7, 8]]


def test_close_stops_the_reader_closes_the_remote_and_refuses_calls() -> None:
    client, remote, clock = make_client()
    sync.successResultOf(defer.ensureDeferred(client.subscribe(lambda d: None, lambda h: None)))
    closing = defer.ensureDeferred(client.close())
    clock.run_from_threads(2)
    sync.successResultOf(closing)
    assert remote.closed.is_set()
    failure = sync.failureResultOf(
        defer.ensureDeferred(client.table_num_entries("ipv4_lpm")), SwitchError
    )
    assert "closed" in str(failure.value)


def test_a_bad_control_address_fails_at_construction() -> None:
    def refuse(control: str) -> FakeRemoteSwitch:
        raise p4model.SwitchError(f"bad address {control!r}")

    with pytest.raises(SwitchError, match="tcp://nowhere"):
        RemoteSwitchClient(ThreadedClock(), "tcp://nowhere", remote_factory=refuse)
