"""Start-up writes, pure: routes, VIPs and an empty affinity_table (version_config is the
rollouts' to write).

Written when the controller attaches to a switch, and again when the switch lost them.
affinity_table is cleared even on a warm switch: a previous controller's pins could never be
deleted (their handles are unknown), and dropping them moves no connection (each has its
conn_table entry, or is re-hashed with sport 0 into the slot that already holds its client).
Each write is retried a few times; an entry that already exists counts as written (a warm
switch kept it). The controller starts only when every one is settled; the first that keeps
failing fails start-up with its reason (while reprogramming a running controller, it is
recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.core.ops import (
    DefaultEntry,
    ErrorKind,
    Op,
    Outcome,
    Owner,
    ReadEntry,
    TableClear,
    TableInsert,
)
from controller.core.pools import BackendPool
from controller.core.records import RecordLog
from controller.routing import Route
from p4src.contract import (
    AFFINITY_CLIENT_IP,
    AFFINITY_OFF,
    AFFINITY_TABLE,
    FORWARD,
    ROUTE_TABLE,
    SET_POOL,
    VIP_TABLE,
)

ATTEMPTS = 5


@dataclass(frozen=True)
class SwitchView:
    """What the shell read from the switch before starting."""

    versions: DefaultEntry
    """version_config's default entry (controller.core.epochs reads it)."""
    conn_entries: int
    dip_entries: int
    vip_entries: tuple[ReadEntry, ...] = ()
    """vip_table as read back: the pool id each VIP had (a previous controller's may differ
    from this file's order after reloads)."""

    @property
    def cold(self) -> bool:
        """Whether the switch holds no connection and no version (nothing to adopt)."""
        return self.conn_entries == 0 and self.dip_entries == 0


def vip_insert(pool: BackendPool, owner: Owner = Owner.STARTUP) -> TableInsert:
    """The vip_table entry of a pool."""
    vip = pool.vip
    keys = (vip.ip, str(vip.port), str(vip.protocol_number))
    affinity = AFFINITY_CLIENT_IP if vip.pins_clients else AFFINITY_OFF
    return TableInsert(owner, VIP_TABLE, keys, SET_POOL, (str(pool.pool_id), str(affinity)))


class StartUp:
    """The start-up writes in flight and the first failure."""

    def __init__(self, records: RecordLog) -> None:
        self.failure: str | None = None
        """Why start-up failed (a failure while reprogramming a running controller is recorded
        as a fault instead)."""
        self.reprogramming = False
        self._records = records
        self._attempts: dict[Op, int] = {}

    def program(self, routes: Sequence[Route], pools: Sequence[BackendPool]) -> list[Op]:
        """Routes, every pool's VIP, and a clear of affinity_table."""
        ops: list[Op] = [TableClear(Owner.STARTUP, AFFINITY_TABLE)]
        ops.extend(
            TableInsert(Owner.STARTUP, ROUTE_TABLE, r.keys(), FORWARD, r.params()) for r in routes
        )
        ops.extend(vip_insert(pool) for pool in pools)
        for op in ops:
            self._attempts[op] = 1
        return ops

    @property
    def done(self) -> bool:
        """Every start-up write is settled (written, or failed for good)."""
        return not self._attempts

    def on_outcome(self, now: float, outcome: Outcome) -> list[Op]:
        """Settle a write, or retry it; the last failure fails start-up."""
        op = outcome.op
        attempts = self._attempts.pop(op, None)
        if attempts is None:
            return []
        if outcome.ok or outcome.error is ErrorKind.DUPLICATE:
            return []
        if attempts < ATTEMPTS:
            self._attempts[op] = attempts + 1
            return [op]
        if self.reprogramming:
            self._records.fault(now, "reprogram", outcome.detail)
        else:
            self.failure = self.failure or outcome.detail
        return []
