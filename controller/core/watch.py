"""Noticing that the switch lost what was written (it restarted empty), pure.

Every `interval` the watch counts the entries of vip_table: the controller wrote one per pool,
and nothing else removes them, so fewer means the switch restarted (or was reset) under a
running controller. A failed count says nothing (the switch may be down); the next one decides.
The core then reprograms everything it knows (controller.core.controller_core).
"""

from __future__ import annotations

from controller.core.ops import EntryCount, Op, Outcome, Owner
from p4src.contract import VIP_TABLE


class SwitchWatch:
    """The periodic count of vip_table and what it says."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.losses = 0
        """Times the switch was found to have lost its state."""
        self._next = 0.0
        self._outstanding = False

    def due(self, now: float) -> list[Op]:
        """The count to issue now, if one is due and none is in flight."""
        if self._outstanding or now < self._next or self.interval <= 0:
            return []
        self._outstanding = True
        return [EntryCount(Owner.WATCH, VIP_TABLE)]

    def on_outcome(self, now: float, outcome: Outcome, expected: int) -> bool:
        """Whether the count shows the switch lost its state (fewer than `expected` VIPs)."""
        self._outstanding = False
        self._next = now + self.interval
        if not outcome.ok or outcome.value is None or outcome.value >= expected:
            return False
        self.losses += 1
        return True
