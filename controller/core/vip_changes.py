"""VIPs added or removed while the controller runs: when their vip_table entries go in and out
(pure).

An added VIP's entry is written only once every version the switch holds has weights for its
pool (the core rolls out until they do): before that, a packet of it could meet a version
without the pool and be dropped, whereas without the entry it is routed as any other traffic.
A removed VIP first drains every member (its pool's weights go to 0, so the next versions hold
no entry for it and it takes no new connection; existing ones carry on); once the last member
has left, the entry is deleted. Its handle is looked up by reading vip_table back, which also
finds entries a previous controller wrote. Each write is retried a few times; what keeps
failing is recorded, and tried again from the next tick.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from controller.core.ops import (
    ErrorKind,
    Op,
    Outcome,
    Owner,
    ReadEntry,
    TableDelete,
    TableInsert,
    TableModify,
    TableRead,
)
from controller.core.pools import BackendPool
from controller.core.records import RecordLog
from controller.core.startup import vip_insert
from p4src.contract import SET_POOL, VIP_TABLE

ATTEMPTS = 5


class VipChanges:
    """The VIPs waiting for their entry, and those leaving once drained."""

    def __init__(self, records: RecordLog) -> None:
        self._records = records
        self._waiting: dict[int, BackendPool] = {}
        self._leaving: dict[int, BackendPool] = {}
        self._in_flight: dict[Op, int] = {}
        self._deleted: list[int] = []

    def adopt(
        self, now: float, pools: Sequence[BackendPool], entries: Sequence[ReadEntry]
    ) -> list[Op]:
        """Give each pool the id its VIP has in the switch (a previous controller's, which
        reloads may have made differ from the file's order; the others get ids no entry uses)
        and return the writes that make vip_table match: the affinity mode where it differs, and
        deletes of VIPs no longer configured (their connections keep their conn_table entries)."""
        held = {e.match: e for e in entries if e.action == SET_POOL and len(e.params) == 2}
        taken = {e.params[0] for e in held.values()}
        ops: list[Op] = []
        for pool in pools:
            entry = held.pop(vip_key(pool), None)
            if entry is None:
                pool.pool_id = min(set(range(len(taken) + len(pools) + 1)) - taken)
                taken.add(pool.pool_id)
                continue
            pool.pool_id = entry.params[0]
            wanted = vip_insert(pool, Owner.VIPS)
            if entry.params[1] != int(wanted.params[1]):
                modify = TableModify(Owner.VIPS, VIP_TABLE, entry.handle, SET_POOL, wanted.params)
                ops.append(self._issue(modify))
        for entry in held.values():
            delete = TableDelete(Owner.VIPS, VIP_TABLE, entry.handle, str(entry.params[0]))
            ops.append(self._issue(delete))
            name = f"removing a VIP no longer configured: pool {entry.params[0]}"
            self._records.add(now, "phase", name=name)
        return ops

    def add(self, pool: BackendPool) -> None:
        """A new pool whose VIP goes into vip_table once every version holds its pool."""
        self._waiting[pool.pool_id] = pool

    def retire(self, pool: BackendPool) -> None:
        """A pool whose members are draining: its VIP leaves once the pool is empty."""
        self._leaving[pool.pool_id] = pool

    @property
    def waiting(self) -> tuple[int, ...]:
        """Pools whose VIP is not yet written."""
        return tuple(self._waiting)

    def leaving(self, pool_id: int) -> bool:
        """Whether a pool's VIP was removed and is waiting for its members to drain."""
        return pool_id in self._leaving

    @property
    def absent(self) -> int:
        """Pools of the core whose vip_table entry is not (or no longer) in the switch."""
        deleting = sum(isinstance(op, TableDelete) for op in self._in_flight)
        return len(self._waiting) + deleting + len(self._deleted)

    def due(self, served: Callable[[int], bool]) -> list[Op]:
        """Entries to write now: the VIPs of pools every version holds (`served`), and a read
        of vip_table when a leaving pool has emptied."""
        ops: list[Op] = []
        for pool_id, pool in list(self._waiting.items()):
            if pool_id in self._leaving and len(pool) == 0:
                del self._waiting[pool_id], self._leaving[pool_id]
                self._deleted.append(pool_id)  # never written: nothing to delete
            elif served(pool_id) and not self._writing(pool_id):
                ops.append(self._issue(vip_insert(pool, Owner.VIPS)))
        empty = [
            p for p_id, p in self._leaving.items() if len(p) == 0 and p_id not in self._waiting
        ]
        reading = any(isinstance(op, TableRead) for op in self._in_flight)
        if empty and not reading and not any(isinstance(op, TableDelete) for op in self._in_flight):
            ops.append(self._issue(TableRead(Owner.VIPS, VIP_TABLE)))
        return ops

    def take_deleted(self) -> list[int]:
        """Pools whose VIP left the switch since the last call (the core forgets them)."""
        out, self._deleted = self._deleted, []
        return out

    def switch_lost(self) -> None:
        """The switch restarted empty: start-up writes every VIP the core still has; what was
        in flight here is moot."""
        self._in_flight.clear()
        self._waiting.clear()

    def _writing(self, pool_id: int) -> bool:
        return any(
            isinstance(op, TableInsert) and op.params[0] == str(pool_id) for op in self._in_flight
        )

    def _issue(self, op: Op) -> Op:
        self._in_flight[op] = self._in_flight.get(op, 0) + 1
        return op

    def on_outcome(self, now: float, outcome: Outcome) -> list[Op]:
        """Settle a write or a read; retry a failure a few times."""
        op = outcome.op
        attempts = self._in_flight.pop(op, None)
        if attempts is None:
            return []
        if isinstance(op, TableRead):
            return self._delete_found(now, outcome) if outcome.ok else []
        gone = isinstance(op, TableDelete) and outcome.error is ErrorKind.NOT_FOUND
        if outcome.ok or outcome.error is ErrorKind.DUPLICATE or gone:
            if isinstance(op, TableInsert):
                pool = self._waiting.pop(int(op.params[0]), None)
                if pool is not None:
                    self._records.add(now, "phase", name=f"vip {pool.vip.name} in service")
            elif isinstance(op, TableDelete) and isinstance(op.tag, str):
                self._finish(now, op.tag)
            return []
        if attempts < ATTEMPTS:
            self._in_flight[op] = attempts
            return [op]
        self._records.fault(now, "vip", outcome.detail)
        return []

    def _delete_found(self, now: float, outcome: Outcome) -> list[Op]:
        ops: list[Op] = []
        for pool_id, pool in list(self._leaving.items()):
            if len(pool) or pool_id in self._waiting:
                continue
            entry = next((e for e in outcome.entries if e.match == vip_key(pool)), None)
            if entry is None:
                self._finish(now, str(pool_id))  # not in the switch (any more)
            else:
                ops.append(
                    self._issue(TableDelete(Owner.VIPS, VIP_TABLE, entry.handle, str(pool_id)))
                )
        return ops

    def _finish(self, now: float, pool_id: str) -> None:
        pool = self._leaving.pop(int(pool_id), None)
        if pool is not None:
            self._deleted.append(pool.pool_id)
            self._records.add(now, "phase", name=f"vip {pool.vip.name} removed")


def vip_key(pool: BackendPool) -> tuple[int, int, int]:
    """A pool's vip_table match as read back: (address, port, protocol)."""
    vip = pool.vip
    return (int(ipaddress.IPv4Address(vip.ip)), vip.port, vip.protocol_number)
