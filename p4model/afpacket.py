"""AF_PACKET ports of p4lb-switch: a raw socket per interface, promiscuous, deaf to own sends."""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Protocol

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4  # sll_pkttype of frames this host sent
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
MAX_FRAME = 65536


class FramePort(Protocol):
    """What SwitchServer needs of a port: a PacketPort, or a stand-in in tests."""

    port: int
    iface: str

    def fileno(self) -> int:
        """A file descriptor that polls readable when frames are waiting."""
        ...

    def recv_batch(self, limit: int) -> list[bytes]:
        """Up to ``limit`` waiting frames, without blocking."""
        ...

    def send(self, frame: bytes) -> None:
        """Transmit one frame."""
        ...

    def close(self) -> None:
        """Release the port."""
        ...


class PacketPort:
    """An AF_PACKET socket bound to one interface, in promiscuous mode, blind to its own frames."""

    def __init__(self, port: int, iface: str, rcvbuf: int = 4 << 20) -> None:
        self.port = port
        self.iface = iface
        # Protocol 0 until bound: an unbound ETH_P_ALL socket would see every interface's frames.
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.sock.bind((iface, ETH_P_ALL))
            mreq = struct.pack("iHH8s", socket.if_nametoindex(iface), PACKET_MR_PROMISC, 0, b"")
            self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            # Kernels before 4.20 lack this option; recv_batch() filters on pkttype anyway.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            _set_rcvbuf(self.sock, rcvbuf)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        """The socket's file descriptor, for polling."""
        return self.sock.fileno()

    def recv_batch(self, limit: int) -> list[bytes]:
        """Up to ``limit`` received frames, without blocking; frames we sent are skipped."""
        frames: list[bytes] = []
        for _ in range(limit):
            try:
                frame, address = self.sock.recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ENETDOWN, reported once: keep what came before it
                if frames:
                    break
                raise
            if address[2] != PACKET_OUTGOING:
                frames.append(frame)
        return frames

    def send(self, frame: bytes) -> None:
        """Transmit one frame on the interface."""
        self.sock.send(frame)

    def close(self) -> None:
        """Close the socket (the kernel drops the promiscuous membership with it)."""
        self.sock.close()


def _set_rcvbuf(sock: socket.socket, size: int) -> None:
    try:  # as root, beyond net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
