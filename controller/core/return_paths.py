"""The return path of each pool member (dip_reverse entries), pure.

A member's entry rewrites its replies back to the VIP. It is written when the member joins
(at start-up for configured members, where a failure fails start-up) and deleted when the
member leaves its pool. An entry found already present counts as written (handle unknown: it
stays on the switch when the member leaves, which is harmless: the DIP:port belongs to this
VIP).
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.core.ops import ErrorKind, Op, Outcome, Owner, TableDelete, TableInsert
from controller.core.pools import BackendPool
from controller.core.records import RecordLog
from controller.core.startup import ATTEMPTS
from p4src.contract import DIP_REVERSE, REWRITE_SRC


class ReturnPaths:
    """dip_reverse entries by DIP name, and the writes still in flight."""

    def __init__(self, records: RecordLog) -> None:
        self.failure: str | None = None
        """Why a start-up write failed for good (start-up then fails)."""
        self._records = records
        self._handles: dict[str, int | None] = {}
        self._attempts: dict[Op, int] = {}
        self._boot: set[Op] = set()

    def add(self, pool: BackendPool, ip: str, port: int, *, boot: bool) -> Op:
        """The write that programs one member's return path."""
        vip = pool.vip
        keys = (ip, str(port), str(vip.protocol_number))
        op = TableInsert(
            Owner.RETURN_PATH,
            DIP_REVERSE,
            keys,
            REWRITE_SRC,
            (vip.ip, str(vip.port)),
            f"{ip}:{port}",
        )
        self._attempts[op] = 1
        if boot:
            self._boot.add(op)
        return op

    def reprogram(self, pools: Sequence[BackendPool]) -> list[Op]:
        """The switch lost its entries: write every member's again."""
        self._handles.clear()
        return [self.add(pool, m.ip, m.port, boot=False) for pool in pools for m in pool]

    def remove(self, dip: str) -> list[Op]:
        """The delete of a departed member's entry (none if its handle is unknown)."""
        handle = self._handles.pop(dip, None)
        if handle is None:
            return []
        return [TableDelete(Owner.RETURN_PATH, DIP_REVERSE, handle, dip)]

    @property
    def booted(self) -> bool:
        """Every start-up write is settled."""
        return not self._boot

    def on_outcome(self, now: float, outcome: Outcome) -> list[Op]:
        """Remember a handle, retry a failed add, record what failed for good."""
        op = outcome.op
        if not isinstance(op, TableInsert):
            if not outcome.ok and outcome.error is not ErrorKind.NOT_FOUND:
                self._records.fault(now, "dip_reverse", outcome.detail)
            return []
        attempts = self._attempts.pop(op, 1)
        assert isinstance(op.tag, str)
        if outcome.ok or outcome.error is ErrorKind.DUPLICATE:
            self._handles[op.tag] = outcome.handle
            self._boot.discard(op)
            return []
        if attempts < ATTEMPTS:
            self._attempts[op] = attempts + 1
            return [op]
        if op in self._boot:
            self._boot.discard(op)
            self.failure = self.failure or outcome.detail
        else:
            self._records.fault(now, "dip_reverse", outcome.detail)
        return []
