"""A remote switch that sends a malformed digest: it is skipped and counted, the stream goes on."""

from __future__ import annotations

import dataclasses
import queue
from typing import Any, cast

from twisted.internet import defer

import p4model
from controller.switch.api import Digest
from controller.switch.remote_client import RemoteSwitchClient, RemoteSwitchLike
from controller.switch.testing import ThreadedClock

GOOD = p4model.Digest("new_conn", "10.0.1.2", "10.0.0.100", 40000, 80, 6, 1, "10.1.3.2", 8080)


class NotifyingRemote:
    """Only the notification side of `p4model.client.RemoteSwitch`, fed by the test."""

    def __init__(self, control: str) -> None:
        self.batches: queue.Queue[tuple[list[Any], list[Any]]] = queue.Queue()

    def recv_notifications(self, timeout: float) -> tuple[list[Any], list[Any]]:
        try:
            return self.batches.get(timeout=min(timeout, 0.05))
        except queue.Empty:
            return [], []

    def close(self) -> None:
        """Nothing to release."""


def test_a_malformed_digest_is_skipped_and_later_digests_still_arrive() -> None:
    clock = ThreadedClock()
    remotes: list[NotifyingRemote] = []

    def factory(control: str) -> RemoteSwitchLike:
        remotes.append(NotifyingRemote(control))
        # Only subscribe() and close() run in this test: the runtime calls are never made.
        return cast(RemoteSwitchLike, remotes[-1])

    client = RemoteSwitchClient(clock, "tcp://127.0.0.1:9559", remote_factory=factory)
    digests: list[Digest] = []
    aged: list[list[int]] = []
    subscribed = defer.ensureDeferred(
        client.subscribe(digests.append, lambda h: aged.append(list(h)))
    )
    assert subscribed.called
    remote = remotes[0]
    bad_kind = dataclasses.replace(GOOD, kind=cast(Any, "hello"))
    remote.batches.put(([bad_kind, GOOD, object()], [7, "junk"]))
    clock.run_from_threads(1)
    remote.batches.put(([GOOD], []))
    clock.run_from_threads(1)
    assert [d.kind for d in digests] == ["new_conn", "new_conn"]
    assert aged == [[7]]
    assert client.malformed_digests == 2
    closing = defer.ensureDeferred(client.close())
    clock.run_from_threads(2)
    assert closing.called
