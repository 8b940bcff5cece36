"""controller.switch.nanomsg: ctypes sockets on libnanomsg, over real ipc:// sockets (skipped
when libnanomsg cannot be loaded)."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.switch import nanomsg
from controller.switch.api import SwitchError

try:
    nanomsg.load_library()
except SwitchError as exc:
    pytest.skip(f"libnanomsg not loadable: {exc}", allow_module_level=True)


@pytest.fixture
def address() -> Iterator[str]:
    """A fresh ipc:// address (short path: unix socket paths are limited to ~107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="nn") as directory:
        yield f"ipc://{directory}/socket.ipc"


@pytest.fixture
def publisher(address: str) -> Iterator[nanomsg.NanomsgSocket]:
    """A bound PUB socket, as simple_switch's notifications socket."""
    pub = nanomsg.NanomsgSocket(nanomsg.PUB, address, bind=True)
    yield pub
    pub.close()


@pytest.mark.parametrize(
    "size",
    [0, 32, 4 + 28 + 4 * 65536],  # empty; a bare header; an AGE| listing 64 Ki handles
    ids=["empty", "header", "larger-than-any-fixed-buffer"],
)
def test_a_subscriber_receives_what_is_published_whole(
    publisher: nanomsg.NanomsgSocket, address: str, size: int
) -> None:
    message = bytes(i % 251 for i in range(size))
    sub = nanomsg.subscribe(address)
    publisher.wait_for_peer(5.0)
    publisher.send(message)
    assert sub.receive(5.0) == message
    sub.close()


def test_receive_returns_none_when_nothing_arrives(
    publisher: nanomsg.NanomsgSocket, address: str
) -> None:
    sub = nanomsg.subscribe(address, receive_timeout=0.01)
    assert sub.receive() is None
    assert sub.receive(0.01) is None
    sub.close()


def test_pair_sockets_carry_messages_both_ways(address: str) -> None:
    bound = nanomsg.NanomsgSocket(nanomsg.PAIR, address, bind=True)
    connected = nanomsg.NanomsgSocket(nanomsg.PAIR, address)
    connected.send(b"packet in")
    assert bound.receive(5.0) == b"packet in"
    bound.send(b"packet out")
    assert connected.receive(5.0) == b"packet out"
    connected.close()
    bound.close()


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("ipc:///nonexistent-p4lb-dir/notifications.ipc", "no connection"),
        ("nonsense://somewhere", "connect nonsense://somewhere"),
    ],
    ids=["nobody-listening", "bad-transport"],
)
def test_connecting_to_a_bad_address_is_a_switch_error_naming_it(target: str, needle: str) -> None:
    with pytest.raises(SwitchError, match=needle) as raised:
        nanomsg.subscribe(target, connect_timeout=0.05)
    assert target in str(raised.value)


def test_a_closed_socket_refuses_io_and_closes_once(
    publisher: nanomsg.NanomsgSocket, address: str
) -> None:
    sub = nanomsg.subscribe(address)
    sub.close()
    sub.close()
    with pytest.raises(SwitchError, match="closed"):
        sub.receive(0.01)
    with pytest.raises(SwitchError, match="closed"):
        sub.send(b"x")


def test_closing_ends_a_receive_blocked_in_another_thread(
    publisher: nanomsg.NanomsgSocket, address: str
) -> None:
    sub = nanomsg.subscribe(address)
    started = threading.Event()
    outcome: list[object] = []

    def receive() -> None:
        started.set()
        try:
            outcome.append(sub.receive(30.0))
        except SwitchError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=receive)
    thread.start()
    started.wait()
    sub.close()
    thread.join(10.0)
    assert not thread.is_alive()
    # The close may land before nn_recv starts (refused as closed) or during it (EBADF).
    assert len(outcome) == 1 and isinstance(outcome[0], SwitchError)


@pytest.mark.usefixtures("without_libnanomsg")
def test_a_missing_library_is_a_switch_error_saying_bmv2s_libnanomsg_is_needed() -> None:
    with pytest.raises(SwitchError, match="BMv2's libnanomsg") as raised:
        nanomsg.subscribe("ipc:///tmp/unused.ipc")
    assert "libnanomsg5" in str(raised.value)


def test_an_explicit_library_path_that_does_not_exist_is_reported() -> None:
    missing = str(Path("/nonexistent") / "libnanomsg.so.5")
    with pytest.raises(SwitchError, match="libnanomsg"):
        nanomsg.load_library(missing)
