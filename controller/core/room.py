"""Room in dip_table for the next rollout, pure: the check, reclaiming idle slots, TABLE_FULL.

`DipRoom` is the stateful side of `controller.core.reclaim` (which has the plan, the protocol and
the
argument why a reclaimed slot serves no live connection): it decides whether a rollout must wait
for room, starts a reclaim (queueing its calls on the core's CallQueue and feeding the outcomes
back to the shadow), learns the real size when the switch refuses an add, and counts and
records all of it. `VersionSlots` says which slots may be reclaimed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from controller.core.core_support import CallQueue, FaultThrottle, Handler, StepCalls
from controller.core.reclaim import (
    Reclaim,
    ReclaimOutcome,
    ReclaimPlan,
    ReclaimStep,
    RoomCheck,
    choose_slots,
)
from controller.core.rollout import RolloutCounters
from controller.core.shadow import DipShadow, DipWrite, WriteKind

RECLAIM_RECORD_INTERVAL = 10.0
Record = Callable[..., None]


class DipRoom:
    """Keeps room in dip_table for rollouts, reclaiming idle slots under pressure only."""

    def __init__(
        self,
        size: int,
        min_interval: float,
        *,
        calls: CallQueue,
        record: Record,
        counters: RolloutCounters,
        done: Callable[[ReclaimOutcome], None],
    ) -> None:
        self.size = size
        self.min_interval = min_interval
        self.reclaim: Reclaim | None = None
        self._calls = calls
        self._record = record
        self._counters = counters
        self._done = done
        self._last = -math.inf
        self._check: RoomCheck | None = None
        self._records = FaultThrottle(RECLAIM_RECORD_INTERVAL)

    def check(self, shadow: DipShadow, active: int, slot: int, need: int) -> RoomCheck:
        """Whether a version of `need` entries fits in `slot` next to what the table holds."""
        return RoomCheck(
            slot,
            need,
            shadow.size(),
            len(shadow.entries(slot)),
            0 if slot == active else len(shadow.entries(active)),
            self.size,
        )

    def make_room(
        self, now: float, shadow: DipShadow, check: RoomCheck, reclaimable: Sequence[int]
    ) -> str | None:
        """None if the rollout may go now; else why it waits (maybe a reclaim was started).

        `reclaimable` are the slots `VersionSlots` may free, oldest deactivation first; slots
        are reclaimed only when the table lacks room for the rollout, at most once per
        `min_interval`.
        """
        shortfall = check.shortfall
        if shortfall == 0:
            return None
        candidates = [(s, len(shadow.entries(s))) for s in reclaimable]
        chosen = choose_slots(shortfall, candidates)
        if chosen and now - self._last >= self.min_interval:
            self._start(now, shadow, chosen, check)
            return f"reclaiming slots {', '.join(map(str, chosen))}"
        wait = "the reclaim rate limit" if chosen else "idle slots (quiet period, pending installs)"
        return f"dip_table full: {check.describe()}; waiting for {wait}"

    def too_small(self, now: float, check: RoomCheck, already_noted: bool) -> str:
        """The version can never fit: count, record with the numbers (once per episode)."""
        self._counters.table_too_small += 1
        reason = f"dip_table too small: {check.describe()}; keeping the active version"
        if not already_noted:
            self._record(now, "fault", what="dip_table_too_small", detail=reason)
        return reason

    def write_failed(self, now: float, shadow: DipShadow, write: DipWrite, error: str) -> None:
        """A rollout write failed; a TABLE_FULL on add teaches the table's real size.

        Every SwitchClient runs calls and reports their outcomes in the order issued, so when the
        refusal is handled the shadow holds exactly what the table held when it refused.
        """
        lowered = error.lower()
        full = "table_full" in lowered or "table full" in lowered
        if write.kind is WriteKind.ADD and full and shadow.size() < self.size:
            detail = (
                f"dip_table refused an add holding {shadow.size()} entries (size believed "
                f"{self.size}): taking {shadow.size()} as its size"
            )
            self.size = shadow.size()
            self._record(now, "fault", what="dip_table_full", detail=detail)

    def _start(self, now: float, shadow: DipShadow, slots: Sequence[int], check: RoomCheck) -> None:
        plan = ReclaimPlan({s: tuple(shadow.plan(s, {})) for s in slots}, now)
        self._last = now
        self._check = check
        self.reclaim = Reclaim(plan)
        self._issue(shadow, self.reclaim.begin(now))

    def _issue(self, shadow: DipShadow, steps: Sequence[ReclaimStep]) -> None:
        for step in steps:
            method, args = StepCalls.call_for(step)
            self._calls.call(method, args, self._handler(shadow, step))
        if self.reclaim is not None and self.reclaim.outcome is not None:
            self._finish(self.reclaim.outcome)

    def _handler(self, shadow: DipShadow, step: ReclaimStep) -> Handler:
        def handle(now: float, ok: bool, value: Any, error: str) -> None:
            reclaim = self.reclaim
            assert reclaim is not None
            if isinstance(step, DipWrite):
                if ok:
                    shadow.applied(step)
                else:
                    shadow.failed(step, error)
            steps = reclaim.step_done(now, step) if ok else reclaim.step_failed(now, step, error)
            self._issue(shadow, steps)

        return handle

    def _finish(self, outcome: ReclaimOutcome) -> None:
        now = outcome.finished_at
        self.reclaim = None
        self._counters.reclaims += 1
        self._counters.entries_reclaimed += outcome.deleted
        before = "" if self._check is None else f" (before: {self._check.describe()})"
        slots = ", ".join(map(str, outcome.plan.slots))
        detail = (
            f"slots {slots}: Bloom filters reset, {outcome.deleted} of {outcome.plan.entries} "
            f"entries deleted{before}"
        )
        if not outcome.complete:
            self._counters.reclaim_failures += 1
            detail += "; failed: " + "; ".join(outcome.failures)
        event = self._records.note(now, "dip_table_reclaim", detail)
        if event is not None:
            self._record(now, event.kind, **event.fields)
        self._done(outcome)
