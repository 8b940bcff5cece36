"""Room in dip_table for the next rollout, pure: the check, reclaiming idle slots, TABLE_FULL,
and retiring idle slots (a fresh epoch and no deletes, see `SlotTable.retirable`).

`DipRoom` is the stateful side of `controller.core.reclaim` (which has the plan, the protocol and
the argument why a reclaimed slot serves no live connection): it decides whether a rollout must
wait for room, starts a reclaim (its operations are owned by RECLAIM; it applies their outcomes
to the dip_table shadow it shares with the rollouts, the one record of what dip_table holds),
learns the real size when the switch refuses an add, and counts and records all of it. The
rollouts say which slots may be reclaimed, and take a finished reclaim with `take_finished`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from controller.core.epochs import FlipVersion, ReadVersions
from controller.core.ops import ErrorKind, Op, Outcome, Owner
from controller.core.reclaim import (
    Reclaim,
    ReclaimOutcome,
    ReclaimPlan,
    ReclaimStep,
    RoomCheck,
    choose_slots,
)
from controller.core.records import FaultThrottle, RecordLog
from controller.core.rollout import RolloutCounters
from controller.core.shadow import DipShadow, DipWrite, WriteKind
from controller.core.slots import SlotLedger
from controller.core.steps import op_step, step_op

RECLAIM_RECORD_INTERVAL = 10.0


class DipRoom:
    """Keeps room in dip_table for rollouts, reclaiming idle slots under pressure only; retires
    idle slots when asked."""

    def __init__(
        self,
        size: int,
        min_interval: float,
        *,
        shadow: DipShadow,
        records: RecordLog,
        counters: RolloutCounters,
    ) -> None:
        self.size = size
        self.min_interval = min_interval
        self.reclaim: Reclaim | None = None
        self.shadow = shadow
        self._records = records
        self._counters = counters
        self._finished: ReclaimOutcome | None = None
        self._last = -math.inf
        self._check: RoomCheck | None = None
        self._throttle = FaultThrottle(RECLAIM_RECORD_INTERVAL)

    def check(self, active: int, slot: int, need: int) -> RoomCheck:
        """Whether a version of `need` entries fits in `slot` next to what the table holds."""
        shadow = self.shadow
        return RoomCheck(
            slot,
            need,
            shadow.size(),
            len(shadow.entries(slot)),
            0 if slot == active else len(shadow.entries(active)),
            self.size,
        )

    def make_room(
        self, now: float, check: RoomCheck, reclaimable: Sequence[int], ledger: SlotLedger
    ) -> tuple[str | None, list[Op]]:
        """(None, []) if the rollout may go now; else why it waits, and the first operations of
        a reclaim if one was started.

        `reclaimable` are the slots that may be freed, oldest deactivation first; slots are
        reclaimed only when the table lacks room for the rollout, at most once per
        `min_interval`. The ledger issues the reclaimed slots' fresh epochs.
        """
        shortfall = check.shortfall
        if shortfall == 0:
            return None, []
        candidates = [(s, len(self.shadow.entries(s))) for s in reclaimable]
        chosen = choose_slots(shortfall, candidates)
        if chosen and now - self._last >= self.min_interval:
            ops = self._start(now, chosen, check, ledger)
            return f"reclaiming slots {', '.join(map(str, chosen))}", ops
        wait = "the reclaim rate limit" if chosen else "idle slots (quiet period, pending installs)"
        return f"dip_table full: {check.describe()}; waiting for {wait}", []

    def retire(self, now: float, slots: Sequence[int], ledger: SlotLedger) -> list[Op]:
        """Give idle `slots` fresh epochs and keep their entries (nothing can reach them then;
        a later rollout writes its diff over them): a reclaim that deletes nothing, not rate
        limited (a slot is retired once per time out of service)."""
        plan = ReclaimPlan(ledger.epochs.fresh(slots), {s: () for s in slots}, now)
        self.reclaim = Reclaim(plan)
        return self._issue(self.reclaim.begin(now))

    def too_small(self, now: float, check: RoomCheck, already_noted: bool) -> str:
        """The version can never fit: count, record with the numbers (once per episode)."""
        self._counters.table_too_small += 1
        reason = f"dip_table too small: {check.describe()}; keeping the active version"
        if not already_noted:
            self._records.fault(now, "dip_table_too_small", reason)
        return reason

    def write_failed(self, now: float, write: DipWrite, error: ErrorKind | None) -> None:
        """A rollout write failed; a TABLE_FULL on add teaches the table's real size.

        Every SwitchClient runs calls and reports their outcomes in the order issued, so when the
        refusal is handled the shadow holds exactly what the table held when it refused.
        """
        shadow = self.shadow
        full = error is ErrorKind.TABLE_FULL
        if write.kind is WriteKind.ADD and full and shadow.size() < self.size:
            detail = (
                f"dip_table refused an add holding {shadow.size()} entries (size believed "
                f"{self.size}): taking {shadow.size()} as its size"
            )
            self.size = shadow.size()
            self._records.fault(now, "dip_table_full", detail)

    def _start(
        self, now: float, slots: Sequence[int], check: RoomCheck, ledger: SlotLedger
    ) -> list[Op]:
        deletes = {s: tuple(self.shadow.plan(s, {})) for s in slots}
        plan = ReclaimPlan(ledger.epochs.fresh(slots), deletes, now)
        self._last = now
        self._check = check
        self.reclaim = Reclaim(plan)
        return self._issue(self.reclaim.begin(now))

    def _issue(self, steps: Sequence[ReclaimStep]) -> list[Op]:
        ops: list[Op] = [step_op(Owner.RECLAIM, step) for step in steps]
        if self.reclaim is not None and self.reclaim.outcome is not None:
            self._finish(self.reclaim.outcome)
        return ops

    def on_outcome(self, now: float, outcome: Outcome) -> list[Op]:
        """Apply a reclaim write's outcome to the shadow and drive the reclaim on."""
        reclaim = self.reclaim
        step = op_step(outcome.op)
        if reclaim is None or step is None or isinstance(step, FlipVersion | ReadVersions):
            return []
        if isinstance(step, DipWrite):
            if outcome.ok:
                self.shadow.applied(step)
            else:
                self.shadow.failed(step, outcome.error is ErrorKind.NOT_FOUND)
        if outcome.ok:
            steps = reclaim.step_done(now, step)
        else:
            steps = reclaim.step_failed(now, step, outcome.detail)
        return self._issue(steps)

    def take_finished(self) -> ReclaimOutcome | None:
        """The reclaim that finished since the last call, if one did."""
        out, self._finished = self._finished, None
        return out

    def _finish(self, outcome: ReclaimOutcome) -> None:
        now = outcome.finished_at
        self.reclaim = None
        self._finished = outcome
        if outcome.plan.entries == 0:  # a retire: routine, counted, recorded only if it failed
            self._counters.retires += len(outcome.freshened)
            if not outcome.complete:
                event = self._throttle.note(now, "slot_retire", "; ".join(outcome.failures))
                if event is not None:
                    self._records.extend([event])
            return
        self._counters.reclaims += 1
        self._counters.entries_reclaimed += outcome.deleted
        before = "" if self._check is None else f" (before: {self._check.describe()})"
        slots = ", ".join(map(str, outcome.plan.slots))
        detail = (
            f"slots {slots}: fresh epochs, {outcome.deleted} of {outcome.plan.entries} "
            f"entries deleted{before}"
        )
        if not outcome.complete:
            self._counters.reclaim_failures += 1
            detail += "; failed: " + "; ".join(outcome.failures)
        event = self._throttle.note(now, "dip_table_reclaim", detail)
        if event is not None:
            self._records.extend([event])
