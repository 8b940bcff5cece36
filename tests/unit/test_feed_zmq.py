"""LoadFeed over real ZeroMQ on loopback (ephemeral ports) inside a private Twisted reactor."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth
from twisted.internet.epollreactor import EPollReactor

from agent.pusher import CurveClientKeys, ReportPusher
from agent.wire import LoadReport, encode_report
from controller.core.loadbook import IngestResult, LoadBook
from controller.shell.feed import BATCH_LIMIT, CurveServerKeys, LoadFeed

GOOD = "10.0.0.1:80"
PLAIN = "10.0.0.2:80"
WRONG = "10.0.0.3:80"
INTERVAL = 0.5


class FakeClock:
    """The controller's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A private reactor, a book over three DIPs, and helpers to start feeds and pump events."""

    def __init__(self) -> None:
        self.reactor: Any = EPollReactor()  # type: ignore[no-untyped-call]
        self.clock = FakeClock()
        self.book = LoadBook([GOOD, PLAIN, WRONG], INTERVAL)
        self.feeds: list[LoadFeed] = []
        self.pushers: list[ReportPusher] = []
        self.seq: dict[str, int] = {}

    def feed(self, endpoint: str = "tcp://127.0.0.1:*", **kwargs: Any) -> LoadFeed:
        feed = LoadFeed(self.reactor, endpoint, self.book, self.clock, **kwargs)
        feed.start()
        self.feeds.append(feed)
        return feed

    def pusher(self, endpoint: str, curve: CurveClientKeys | None = None) -> ReportPusher:
        pusher = ReportPusher(endpoint, curve)
        self.pushers.append(pusher)
        return pusher

    def send(self, pusher: ReportPusher, dip: str) -> int:
        seq = self.seq.get(dip, -1) + 1
        self.seq[dip] = seq
        pusher.send(encode_report(LoadReport(dip, seq, 1000.0 + seq, 0.5, 1)))
        return seq

    def pump_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met before the deadline"
            self.reactor.iterate(0.01)

    def accepted(self) -> int:
        return self.book.counters["accepted"]

    def close(self) -> None:
        for pusher in self.pushers:
            pusher.close()
        for feed in self.feeds:
            feed.stop()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def test_reports_arrive_and_are_ingested(harness: Harness) -> None:
    feed = harness.feed()
    assert feed.bound_endpoint.startswith("tcp://127.0.0.1:") and not feed.bound_endpoint.endswith(
        "*"
    )
    pusher = harness.pusher(feed.bound_endpoint)
    harness.clock.now = 3.0
    harness.send(pusher, GOOD)
    harness.pump_until(lambda: harness.accepted() == 1)
    load = harness.book.snapshot(3.0)[GOOD]
    assert (load.state, load.last_seen, load.seq) == ("up", 3.0, 0)
    harness.pump_until(lambda: pusher.poll_events() is True)


def test_a_burst_larger_than_one_batch_is_drained_completely(harness: Harness) -> None:
    feed = harness.feed()
    context: zmq.Context[Any] = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.connect(feed.bound_endpoint)
    total = BATCH_LIMIT + 1000
    try:
        for seq in range(total):
            push.send(encode_report(LoadReport(GOOD, seq, 1.0 + seq, 0.1, 0)))
        harness.pump_until(lambda: harness.accepted() == total)
    finally:
        push.close(linger=0)
        context.term()
    assert feed.received == total


def test_reports_resume_after_the_controller_restarts(harness: Harness) -> None:
    first = harness.feed()
    endpoint = first.bound_endpoint
    pusher = harness.pusher(endpoint)
    harness.send(pusher, GOOD)
    harness.pump_until(lambda: harness.accepted() == 1)
    first.stop()
    harness.pump_until(lambda: pusher.poll_events() is False)
    before = pusher.superseded
    for _ in range(5):  # controller down: sends never block; only the newest report is kept
        harness.send(pusher, GOOD)
    assert pusher.superseded == before + 5
    harness.feed(endpoint)  # same port, new socket
    harness.pump_until(lambda: harness.accepted() == 2)
    assert harness.book.snapshot(0.0)[GOOD].seq == 5  # seq 1-4 were replaced while down
    harness.send(pusher, GOOD)
    harness.pump_until(lambda: harness.accepted() == 3)
    assert harness.book.counters["stale"] == 0


def test_a_silent_agent_goes_down_and_comes_back_up(harness: Harness) -> None:
    feed = harness.feed()
    pusher = harness.pusher(feed.bound_endpoint)

    def report_at(now: float) -> None:
        harness.clock.now = now
        expected = harness.accepted() + 1
        harness.send(pusher, GOOD)
        harness.pump_until(lambda: harness.accepted() == expected)

    for i in range(3):
        report_at(i * INTERVAL)
    silent_since = 2 * INTERVAL
    assert harness.book.state(silent_since + 3 * INTERVAL - 0.001, GOOD) == "up"
    assert harness.book.state(silent_since + 3 * INTERVAL, GOOD) == "down"
    for i in range(4):
        report_at(10.0 + i * INTERVAL)
    assert harness.book.state(10.0 + INTERVAL, GOOD) == "blackout"
    assert harness.book.state(10.0 + 3 * INTERVAL, GOOD) == "up"


def test_garbage_on_the_wire_is_counted_and_the_feed_keeps_working(harness: Harness) -> None:
    feed = harness.feed()
    context: zmq.Context[Any] = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.connect(feed.bound_endpoint)
    rng = random.Random(4)
    garbage = [rng.randbytes(rng.randrange(0, 300)) for _ in range(200)]
    garbage += [b"", b"x" * 70_000, b'{"v":1}', b"\xff" * 10]
    try:
        for data in garbage:
            push.send(data)
        push.send_multipart([b"multi", b"part"])
        push.send(encode_report(LoadReport(GOOD, 0, 1.0, 0.2, 0)))
        harness.pump_until(lambda: harness.accepted() == 1)
    finally:
        push.close(linger=0)
        context.term()
    assert harness.book.counters["malformed"] == len(garbage) + 2  # each frame of the multipart


def test_a_failing_observer_does_not_stop_the_feed(harness: Harness) -> None:
    seen: list[IngestResult] = []

    def observer(now: float, result: IngestResult) -> None:
        seen.append(result)
        raise RuntimeError("observer bug")

    feed = harness.feed(on_report=observer)
    pusher = harness.pusher(feed.bound_endpoint)
    for _ in range(2):
        harness.send(pusher, GOOD)
        expected = len(seen) + 1
        harness.pump_until(lambda n=expected: len(seen) >= n)  # type: ignore[misc]
    assert harness.accepted() == 2 and all(r.accepted for r in seen)


def test_stop_unregisters_and_closes(harness: Harness) -> None:
    feed = harness.feed()
    assert feed in harness.reactor.getReaders()
    feed.stop()
    feed.stop()
    assert feed not in harness.reactor.getReaders()
    assert feed.fileno() == -1


def test_binding_a_taken_endpoint_fails_without_registering(harness: Harness) -> None:
    first = harness.feed()
    second = LoadFeed(harness.reactor, first.bound_endpoint, harness.book, harness.clock)
    with pytest.raises(zmq.ZMQError):
        second.start()
    assert second not in harness.reactor.getReaders()
    with pytest.raises(RuntimeError):
        _ = second.bound_endpoint
    second.stop()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for name, folder in [("server", "server"), ("agent", "allowed"), ("stranger", "other")]:
        (tmp_path / folder).mkdir()
        public, secret = zmq.auth.create_certificates(tmp_path / folder, name)
        paths[name], paths[name + "_secret"] = Path(public), Path(secret)
    return paths


@pytest.mark.parametrize("authenticate_clients", [False, True], ids=["any-client", "allow-list"])
def test_with_curve_only_agents_holding_the_server_key_are_heard(
    harness: Harness, keys: dict[str, Path], authenticate_clients: bool
) -> None:
    allowed = keys["agent"].parent if authenticate_clients else None
    feed = harness.feed(curve=CurveServerKeys.from_files(keys["server_secret"], allowed))
    good = harness.pusher(
        feed.bound_endpoint, CurveClientKeys.from_files(keys["server"], keys["agent_secret"])
    )
    plain = harness.pusher(feed.bound_endpoint)
    # "stranger" knows the real server key but its own key is not on the allow-list (if any);
    # with the stranger's key posing as the server key, the handshake cannot succeed.
    wrong_server = harness.pusher(
        feed.bound_endpoint, CurveClientKeys.from_files(keys["stranger"], keys["agent_secret"])
    )
    stranger = harness.pusher(
        feed.bound_endpoint, CurveClientKeys.from_files(keys["server"], keys["stranger_secret"])
    )

    def heard_three() -> bool:
        for pusher, dip in [(good, GOOD), (plain, PLAIN), (wrong_server, WRONG)]:
            harness.send(pusher, dip)
        harness.reactor.iterate(0.05)
        return (harness.book.snapshot(0.0)[GOOD].seq or 0) >= 3

    harness.pump_until(heard_three)
    loads = harness.book.snapshot(0.0)
    assert loads[PLAIN].last_seen is None and loads[WRONG].last_seen is None
    assert harness.book.counters["malformed"] == 0
    good.poll_events()
    assert good.reachable is True and plain.reachable is not True
    if authenticate_clients:
        harness.pump_until(lambda: stranger.poll_events() is False)
    stranger.close()
    harness.pushers.remove(stranger)


def test_curve_keys_without_a_secret_are_rejected(keys: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        CurveServerKeys.from_files(keys["server"])
    with pytest.raises(ValueError):
        CurveServerKeys.from_files(keys["server_secret"], tmp_path / "missing")
    with pytest.raises(ValueError):
        CurveClientKeys.from_files(keys["server"], keys["agent"])
