"""LoadFeed over real ZeroMQ on loopback (ephemeral ports) inside a private Twisted reactor."""

from __future__ import annotations

import json
import random
import socket
import stat
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
from controller.shell.feed import BATCH_LIMIT, CurveServerKeys, FeedLimits, LoadFeed

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
        self.reactor: Any = EPollReactor()
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

    def send(self, pusher: ReportPusher, dip: str, live: bool = True) -> int:
        """Make the next report of `dip`; when `live`, pump until the pusher has a connection
        to hand it to (it refuses reports while none is up), else try once."""
        seq = self.seq.get(dip, -1) + 1
        self.seq[dip] = seq
        # ts advances slowly enough for the book's clock checks while the test clock stands.
        data = encode_report(LoadReport(dip, seq, 1000.0 + seq / 100, 0.5, 1))
        if live:
            self.pump_until(lambda: pusher.send(data))
        else:
            pusher.send(data)
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


def _sent(sock: zmq.Socket[Any], data: bytes) -> bool:
    try:
        sock.send(data, zmq.NOBLOCK)
    except zmq.Again:
        return False
    return True


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
        for seq in range(total):  # the feed's queue is bounded: pump while the sender waits
            data = encode_report(LoadReport(GOOD, seq, 1.0 + seq / 1000, 0.1, 0))
            harness.pump_until(lambda d=data: _sent(push, d))  # type: ignore[misc]
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
    before = pusher.dropped
    for _ in range(5):  # controller down: sends never block; the reports are dropped
        harness.send(pusher, GOOD, live=False)
    assert pusher.dropped == before + 5
    harness.feed(endpoint)  # same port, new socket
    harness.send(pusher, GOOD)
    harness.pump_until(lambda: harness.accepted() == 2)
    assert harness.book.snapshot(0.0)[GOOD].seq == 6  # nothing made while down arrives late
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
    garbage += [b"", b"x" * 4096, b'{"v":1}', b"\xff" * 10]
    try:
        for data in garbage:
            push.send(data)
        push.send_multipart([b"multi", encode_report(LoadReport(GOOD, 0, 1.0, 0.2, 0))])
        push.send(encode_report(LoadReport(GOOD, 1, 1.0, 0.2, 0)))
        harness.pump_until(lambda: harness.accepted() == 1)
    finally:
        push.close(linger=0)
        context.term()
    assert harness.book.counters["malformed"] == len(garbage)
    assert feed.counters["multipart"] == 1  # dropped whole, though its last frame is a report
    assert harness.book.snapshot(0.0)[GOOD].seq == 1


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
        Path(secret).chmod(0o600)
        paths[name], paths[name + "_secret"] = Path(public), Path(secret)
    return paths


def allow_list(tmp_path: Path, public_key_file: Path, dips: list[str]) -> Path:
    """An allow-list file binding the key in `public_key_file` to `dips`."""
    public, _ = zmq.auth.load_certificate(str(public_key_file))
    path = tmp_path / "agents.toml"
    path.write_text(f"[[agent]]\nkey = {public.decode()!r}\ndips = {dips!r}\n")
    return path


@pytest.mark.parametrize("authenticate_clients", [False, True], ids=["any-client", "allow-list"])
def test_with_curve_only_agents_holding_the_server_key_are_heard(
    harness: Harness, keys: dict[str, Path], authenticate_clients: bool, tmp_path: Path
) -> None:
    allowed = allow_list(tmp_path, keys["agent"], [GOOD]) if authenticate_clients else None
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
            harness.send(pusher, dip, live=False)
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
        harness.pump_until(lambda: feed.counters["handshakes_refused_key"] > 0)
    stranger.close()
    harness.pushers.remove(stranger)


def test_curve_keys_without_a_secret_are_rejected(keys: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        CurveServerKeys.from_files(keys["server"])
    with pytest.raises(ValueError, match="cannot read"):
        CurveServerKeys.from_files(keys["server_secret"], tmp_path / "missing")
    with pytest.raises(ValueError):
        CurveClientKeys.from_files(keys["server"], keys["agent"])


def test_curve_key_reports_only_for_its_own_dips(
    harness: Harness, keys: dict[str, Path], tmp_path: Path
) -> None:
    allowed = allow_list(tmp_path, keys["agent"], [GOOD])
    feed = harness.feed(curve=CurveServerKeys.from_files(keys["server_secret"], allowed))
    agent = harness.pusher(
        feed.bound_endpoint, CurveClientKeys.from_files(keys["server"], keys["agent_secret"])
    )
    harness.send(agent, PLAIN)  # spoofing another server's load: counted and dropped
    harness.pump_until(lambda: feed.counters["forbidden_dip"] == 1)
    harness.send(agent, GOOD)
    harness.pump_until(lambda: harness.accepted() == 1)
    assert harness.book.snapshot(0.0)[PLAIN].last_seen is None


def test_a_group_readable_curve_secret_is_refused(keys: dict[str, Path]) -> None:
    keys["server_secret"].chmod(0o640)
    with pytest.raises(ValueError, match="chmod 600"):
        CurveServerKeys.from_files(keys["server_secret"])


def test_a_unicode_digit_port_is_malformed_and_the_next_report_is_ingested(
    harness: Harness,
) -> None:
    feed = harness.feed()
    context: zmq.Context[Any] = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.connect(feed.bound_endpoint)
    bad = json.dumps(
        {"v": 1, "dip": "10.1.3.2:\u00b2", "seq": 1, "ts": 1.0, "cpu": 0.1, "conns": 1}
    )
    try:
        push.send(bad.encode())
        push.send(encode_report(LoadReport(GOOD, 0, 1.0, 0.2, 0)))
        harness.pump_until(lambda: harness.accepted() == 1)
    finally:
        push.close(linger=0)
        context.term()
    assert harness.book.counters["malformed_bad_dip"] == 1
    assert feed in harness.reactor.getReaders()


def test_any_exception_from_one_message_costs_only_that_message(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = harness.feed()
    real_ingest = harness.book.ingest
    failures = iter([MemoryError(), ValueError("bug")])

    def flaky(now: float, data: bytes) -> IngestResult:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_ingest(now, data)

    monkeypatch.setattr(harness.book, "ingest", flaky)
    context: zmq.Context[Any] = zmq.Context()
    push = context.socket(zmq.PUSH)  # not the agent's: CONFLATE could merge the three reports
    push.connect(feed.bound_endpoint)
    try:
        for seq in range(3):
            push.send(encode_report(LoadReport(GOOD, seq, 1.0 + seq / 100, 0.2, 0)))
        harness.pump_until(lambda: harness.accepted() == 1)
    finally:
        push.close(linger=0)
        context.term()
    assert feed.counters["errors"] == 2
    assert feed in harness.reactor.getReaders()


def test_an_oversize_frame_drops_its_sender_only(harness: Harness) -> None:
    feed = harness.feed()
    context: zmq.Context[Any] = zmq.Context()
    big, small = context.socket(zmq.PUSH), context.socket(zmq.PUSH)
    try:
        for sock in (big, small):
            sock.connect(feed.bound_endpoint)
        big.send(b"x" * 10_000_000)
        harness.pump_until(lambda: feed.connections == 1)  # ZeroMQ hung up on the big one
        small.send(encode_report(LoadReport(GOOD, 0, 1.0, 0.2, 0)))
        harness.pump_until(lambda: harness.accepted() == 1)
    finally:
        big.close(linger=0)
        small.close(linger=0)
        context.term()
    assert harness.book.counters["malformed"] == 0


def test_connections_beyond_the_cap_are_refused(harness: Harness) -> None:
    feed = harness.feed(limits=FeedLimits(max_connections=2))
    served = [harness.pusher(feed.bound_endpoint) for _ in range(2)]
    harness.pump_until(lambda: all(p.poll_events() is True for p in served))
    late = [harness.pusher(feed.bound_endpoint) for _ in range(2)]
    harness.pump_until(lambda: feed.counters["handshakes_refused_capacity"] >= 2)
    assert not any(p.poll_events() for p in late)
    for pusher, dip in zip(served, (GOOD, PLAIN), strict=True):
        harness.send(pusher, dip)
    harness.pump_until(lambda: harness.accepted() == 2)


# ZMTP 3.0 greeting and READY of a NULL-mechanism PUSH peer (RFC 23).
_GREETING = b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" + bytes(31)
_READY_BODY = b"\x05READY\x0bSocket-Type" + (4).to_bytes(4, "big") + b"PUSH"
_READY = b"\x04" + bytes([len(_READY_BODY)]) + _READY_BODY


@pytest.mark.parametrize("handshake", [False, True], ids=["never-greets", "greets-then-dies"])
def test_silent_peers_are_dropped(harness: Harness, handshake: bool) -> None:
    feed = harness.feed(limits=FeedLimits(peer_timeout=0.5, handshake_timeout=0.5))
    host, port = feed.bound_endpoint.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port))) as peer:
        if handshake:  # a peer that completes the handshake, then never answers a heartbeat
            peer.sendall(_GREETING + _READY)
        harness.pump_until(lambda: feed.connections == 1)
        harness.pump_until(lambda: feed.connections == 0)


def test_an_ipc_socket_is_private(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "private" / "load.sock"
    harness.feed(f"ipc://{path}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
