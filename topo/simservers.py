"""Simulated servers for the in-process demo: a FIFO CPU queue per server (pure, ``now`` in).

A server may use ``cpu`` core-seconds per second (its quota) and each request needs ``work``
core-seconds; requests queue first-in first-out. Connections open, make requests and close
(the client decides when). What it reports mirrors the agent: utilisation of its allowance,
open connections, and new connections per second since the previous reading.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerReading:
    """One report's worth of a simulated server's load."""

    cpu: float
    conns: int
    conn_rate: float


class SimServer:
    """One simulated server with a CPU allowance and a FIFO queue of requests."""

    def __init__(self, dip: str, cpu: float, work: float) -> None:
        if cpu <= 0 or work <= 0:
            raise ValueError(f"cpu and work must be > 0, got {cpu!r} and {work!r}")
        self.dip = dip
        self.cpu = cpu
        self.work = work
        self.queue: deque[tuple[int, float]] = deque()
        self.open: set[int] = set()
        self._used = 0.0
        self._opened = 0
        self._since = 0.0

    def connect(self, conn: int) -> None:
        """A new connection is accepted."""
        self.open.add(conn)
        self._opened += 1

    def request(self, conn: int) -> None:
        """Connection ``conn`` sends a request (queued behind earlier ones)."""
        self.queue.append((conn, self.work))

    def close(self, conn: int) -> None:
        """Connection ``conn`` ends."""
        self.open.discard(conn)

    def advance(self, dt: float) -> list[int]:
        """Serve for ``dt`` seconds; returns the connections whose request finished, in order."""
        budget = self.cpu * dt
        done: list[int] = []
        while self.queue and budget > 0:
            conn, left = self.queue[0]
            spent = min(left, budget)
            budget -= spent
            self._used += spent
            if spent >= left - 1e-12:
                self.queue.popleft()
                done.append(conn)
            else:
                self.queue[0] = (conn, left - spent)
        return done

    def reading(self, now: float) -> ServerReading:
        """Load since the previous reading (utilisation of the allowance, 0..1)."""
        elapsed = now - self._since
        cpu = self._used / (self.cpu * elapsed) if elapsed > 0 else 0.0
        rate = self._opened / elapsed if elapsed > 0 else 0.0
        self._used, self._opened, self._since = 0.0, 0, now
        return ServerReading(min(1.0, cpu), len(self.open), rate)
