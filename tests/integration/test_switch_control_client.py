"""RemoteSwitch and NotificationSubscriber against bare ZeroMQ peers: timeouts, buffers, errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from p4model import Digest, Switch, SwitchError
from p4model.client import NotificationSubscriber, RemoteSwitch
from p4model.control_protocol import encode_aged, encode_digests, encode_ok
from p4model.server import SwitchServer

CLIENT, VIP, DIP = "10.0.1.2", "10.0.0.100", "10.0.2.2"


@pytest.fixture
def stream() -> Iterator[tuple[zmq.Socket[bytes], NotificationSubscriber]]:
    """A PUB socket and a subscriber that is known to receive from it."""
    pub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    subscriber = NotificationSubscriber(f"tcp://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 10.0
        while not subscriber.recv_aged(0.01):  # until the subscription has reached the PUB
            assert time.monotonic() < deadline
            pub.send(encode_aged([0]))
        while subscriber.recv_aged(0.05):
            pass
        yield pub, subscriber
    finally:
        subscriber.close()
        pub.close(0)


def _digest(sport: int) -> Digest:
    return Digest("teardown", CLIENT, VIP, sport, 80, 6, 1, DIP, 8080)


def test_recv_digests_keeps_aged_handles_for_recv_aged(
    stream: tuple[zmq.Socket[bytes], NotificationSubscriber],
) -> None:
    pub, subscriber = stream
    pub.send(encode_aged([7]))
    pub.send(encode_digests([_digest(1)]))
    assert subscriber.recv_digests(10.0) == [_digest(1)]
    assert subscriber.recv_aged(0.0) == [7]
    assert subscriber.recv_notifications(0.0) == ([], [])


def test_repeated_aged_handles_are_reported_once_per_read(
    stream: tuple[zmq.Socket[bytes], NotificationSubscriber],
) -> None:
    pub, subscriber = stream
    pub.send(encode_aged([7, 8]))
    pub.send(encode_aged([8, 7, 9]))
    pub.send(encode_digests([_digest(1)]))  # marks the end
    assert subscriber.recv_digests(10.0) == [_digest(1)]
    assert subscriber.recv_aged(0.0) == [7, 8, 9]


def test_malformed_notifications_are_counted_and_skipped(
    stream: tuple[zmq.Socket[bytes], NotificationSubscriber],
) -> None:
    pub, subscriber = stream
    pub.send(b"not json")
    pub.send(b'{"type": "stats"}')
    pub.send(encode_digests([_digest(1)]))
    assert subscriber.recv_digests(10.0) == [_digest(1)]
    assert subscriber.malformed == 2


def test_digests_kept_for_later_are_bounded(
    stream: tuple[zmq.Socket[bytes], NotificationSubscriber], monkeypatch: pytest.MonkeyPatch
) -> None:
    import p4model.client

    monkeypatch.setattr(p4model.client, "MAX_KEPT_DIGESTS", 3)
    pub, subscriber = stream
    for sport in range(5):
        pub.send(encode_digests([_digest(sport)]))
    pub.send(encode_aged([1]))
    assert subscriber.recv_aged(10.0) == [1]
    assert subscriber.recv_digests(0.0) == [_digest(2), _digest(3), _digest(4)]
    assert subscriber.dropped == 2


def test_timeout_raises_and_the_next_call_gets_its_own_reply() -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    rep = context.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    remote = RemoteSwitch(f"tcp://127.0.0.1:{port}", "tcp://127.0.0.1:9", timeout=10.0)
    got_slow_request, timed_out = threading.Event(), threading.Event()

    def slow_server() -> None:
        rep.recv()
        rep.send(encode_ok(1))  # warm-up: the connection is up
        rep.recv()  # answered only after the client gave up
        got_slow_request.set()
        timed_out.wait(10.0)
        rep.send(encode_ok(111))
        rep.recv()
        rep.send(encode_ok(222))

    thread = threading.Thread(target=slow_server, daemon=True)
    thread.start()
    try:
        assert remote.table_num_entries("conn_table") == 1
        remote.timeout = 0.5
        with pytest.raises(SwitchError, match="no reply"):
            remote.table_num_entries("conn_table")
        assert got_slow_request.wait(10.0)
        timed_out.set()
        remote.timeout = 10.0
        assert remote.table_num_entries("conn_table") == 222
    finally:
        timed_out.set()
        thread.join(10.0)
        remote.close()
        rep.close(0)


def test_requests_that_timed_out_while_the_switch_was_down_are_never_applied() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    remote = RemoteSwitch(f"tcp://127.0.0.1:{port}", "tcp://127.0.0.1:9", timeout=0.1)
    with pytest.raises(SwitchError, match="no reply"):
        remote.table_add("ipv4_lpm", "drop", ["10.9.0.0/16"], [])
    server = SwitchServer(Switch(), [], f"tcp://127.0.0.1:{port}", "tcp://127.0.0.1:*")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        remote.timeout = 10.0
        assert remote.table_num_entries("ipv4_lpm") == 0
    finally:
        remote.close()
        server.stop()
        thread.join(10.0)
        server.close()


def test_closed_client_refuses_calls() -> None:
    remote = RemoteSwitch("tcp://127.0.0.1:9", timeout=0.1)
    remote.close()
    with pytest.raises(SwitchError, match="closed"):
        remote.table_clear("conn_table")
    with pytest.raises(SwitchError, match="closed"):
        remote.recv_digests(0.0)


def test_client_rejects_bad_arguments_before_sending() -> None:
    with (
        RemoteSwitch("tcp://127.0.0.1:9", timeout=0.1) as remote,
        pytest.raises(SwitchError, match="must be int"),
    ):
        remote.table_delete("conn_table", "7")  # type: ignore[arg-type]


def test_client_finds_a_digest_port_the_switch_picked_at_random() -> None:
    server = SwitchServer(Switch(), [], "tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with RemoteSwitch(server.control_address) as remote:
            assert remote.digest_address == server.digest_address
    finally:
        server.stop()
        thread.join(10.0)
        server.close()
