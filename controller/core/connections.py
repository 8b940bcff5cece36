"""Value types of connection learning: 5-tuples, clients of affinity VIPs, connection records,
counters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from controller.core.shadow import DipTarget


@dataclass(frozen=True, order=True)
class ConnKey:
    """A connection's 5-tuple as the client sent it (dst = the VIP)."""

    src: str
    dst: str
    sport: int
    dport: int
    protocol: int

    def match_keys(self) -> tuple[str, ...]:
        """conn_table keys in contract order."""
        return (self.src, self.dst, str(self.sport), str(self.dport), str(self.protocol))


@dataclass(frozen=True, order=True)
class AffinityKey:
    """A client of one VIP: affinity_table's key."""

    client: str
    vip: str
    port: int
    protocol: int

    @classmethod
    def of(cls, conn: ConnKey) -> AffinityKey:
        """The pin a connection belongs to."""
        return cls(conn.src, conn.dst, conn.dport, conn.protocol)

    @property
    def vip_key(self) -> tuple[str, int, int]:
        """The VIP (ip, port, protocol)."""
        return (self.vip, self.port, self.protocol)

    def match_keys(self) -> tuple[str, ...]:
        """affinity_table keys in contract order."""
        return (self.client, self.vip, str(self.port), str(self.protocol))


class ConnState(Enum):
    """Where a connection's conn_table entry is."""

    PENDING = "pending"  # known from a digest, table_add not yet issued (or to be retried)
    ADDING = "adding"  # table_add in flight
    INSTALLED = "installed"  # acknowledged
    DELETING = "deleting"  # table_delete in flight


@dataclass
class Connection:
    """The controller's record of one connection."""

    key: ConnKey
    version: int
    dip: DipTarget
    state: ConnState
    last_digest: float
    handle: int | None = None
    installed_at: float | None = None
    add_issued_at: float | None = None
    delete_at: float | None = None
    teardown_seen: bool = False
    attempts: int = 0
    relearn: tuple[int, DipTarget, float] | None = None


@dataclass
class LearningCounters:
    """Monotonic counters (exported as metrics)."""

    learned: int = 0
    installed: int = 0
    duplicate_digests: int = 0
    conflicting_digests: int = 0
    add_failures: int = 0
    table_full: int = 0
    expired_idle: int = 0
    expired_teardown: int = 0
    forgotten_pending: int = 0
    foreign_adopted: int = 0
    foreign_deleted: int = 0
    unknown_teardown: int = 0
    delete_failures: int = 0
    timeout_failures: int = 0
    reinstalled: int = 0
    """Entries written again after the switch lost its state."""
    by_dip: Counter[str] = field(default_factory=Counter)
