"""A switch port for p4lb-switch tests whose wire is a socketpair, and the addressing they use."""

from __future__ import annotations

import socket

VIP, DIP, CLIENT = "10.0.0.100", "10.0.2.2", "10.0.1.2"
GW1, GW2 = "00:01:0a:00:01:01", "00:01:0a:00:02:01"
H1, H2 = "00:00:0a:00:01:02", "00:00:0a:00:02:02"


class SocketPairPort:
    """A switch port whose wire is a datagram socketpair; the test holds the far end."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.iface = f"pair{port}"
        self.near, self.far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.near.setblocking(False)

    def fileno(self) -> int:
        return self.near.fileno()

    def recv_batch(self, limit: int) -> list[bytes]:
        frames = []
        for _ in range(limit):
            try:
                frames.append(self.near.recv(65536))
            except BlockingIOError:
                break
        return frames

    def send(self, frame: bytes) -> None:
        self.near.send(frame)

    def close(self) -> None:
        self.near.close()
        self.far.close()
