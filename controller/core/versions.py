"""The version slots of dip_table, pure: shadow, slot ledger and the rollout in progress.

`VersionSlots` decides when to roll out (rate limit, dead-band, the slot reuse rules with the
learner's pending counts, a full conn_table) and drives `rollout.CommitProtocol`, queueing each
step as a SwitchCall and feeding outcomes back; with journaling on, the journal is written right
before each flip and after each commit. Under table pressure it first frees the entries of slots
nobody can reach any more (`controller.core.reclaim`, where the safety argument is).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.config import ControllerSettings
from controller.core.core_support import BootTracker, CallQueue, Handler, JournalState, StepCalls
from controller.core.learning import ConnectionLearner
from controller.core.pools import BackendPool
from controller.core.reclaim import ReclaimOutcome, RoomCheck
from controller.core.rollout import (
    CommitProtocol,
    FlipVersion,
    ReadActive,
    RolloutCounters,
    RolloutOutcome,
    RolloutPlan,
    SlotLedger,
    Step,
    skip_reason,
)
from controller.core.room import DipRoom
from controller.core.shadow import BucketKey, DipShadow, DipTarget, DipWrite
from controller.core.weighting import entry_budget, held_entries, pool_buckets

VERIFY_RETRY = 0.5
INITIAL_ATTEMPTS = 5
Record = Callable[..., None]
SlotWeights = dict[int, dict[str, int]]
Content = tuple[dict[BucketKey, DipTarget], SlotWeights]


class VersionSlots:
    """What each slot holds, which one is active, and the rollout being committed."""

    def __init__(
        self,
        settings: ControllerSettings,
        *,
        hash_bits: int,
        slots: int,
        pools: Sequence[BackendPool],
        desired: Callable[[], Mapping[int, Sequence[int]]],
        calls: CallQueue,
        record: Record,
        boot: BootTracker,
        journaling: bool = False,
        dip_table_size: int = 16384,
    ) -> None:
        self.settings = settings
        self.dip_table_size = dip_table_size
        self.hash_bits = hash_bits
        self.slots = slots
        self.journaling = journaling
        self.shadow = DipShadow(slots)
        self.slot_weights: list[SlotWeights | None] = [None] * slots
        self.ledger: SlotLedger | None = None
        self.commit: CommitProtocol | None = None
        self.counters = RolloutCounters()
        self.backpressure: str | None = None
        self.last_outcome: RolloutOutcome | None = None
        self._pools = pools
        self._desired = desired
        self._calls = calls
        self._record = record
        self._boot = boot
        self._staged: SlotWeights | None = None
        self._initial = False
        self._initial_attempts = 0
        self._last_rollout = -math.inf
        self._clear_at: float | None = None
        self._deferred: list[tuple[float, Step]] = []
        self._mark = (-1, 0)  # (active slot, its learned count when it became active)
        self.room = DipRoom(
            dip_table_size,
            settings.min_rollout_interval,
            calls=calls,
            record=record,
            counters=self.counters,
            done=self._reclaimed,
        )

    # -- attaching to a switch

    def attach_cold(self, now: float, active: int) -> None:
        """A clean switch: write the initial version into `active` and flip to it."""
        self.ledger = SlotLedger(self.slots, active, now)
        self._boot.expect()  # settled when the initial version commits
        self._start(now, active)

    def attach_warm(
        self, now: float, active: int, journal: JournalState | None, dip_entries: int
    ) -> None:
        """A switch that kept its state: adopt the journal or reclaim dip_table after the hold.

        The hold is `restart_hold`, shorter after a clean stop shortly before (the journal says
        when, and which connections were still being installed), and none for an empty dip_table.
        """
        hold = now + self.settings.restart_hold
        if journal is not None and journal.stopped_at is not None and now >= journal.stopped_at:
            downtime = now - journal.stopped_at
            hold = now + min(self.settings.restart_hold, self.settings.quiet_period + 2 * downtime)
        if not dip_entries:
            hold = now
        self.ledger = SlotLedger(self.slots, active, now, hold_until=hold)
        self.ledger.deactivated_at = [now] * self.slots
        if journal is not None:
            self.shadow = journal.shadow
            self.slot_weights = journal.slot_weights
        else:
            self._clear_at = hold

    # -- periodic work

    def step(self, now: float, learner: ConnectionLearner) -> None:
        """Retry deferred reads, reclaim after a warm start, or roll out if due and allowed."""
        due = [s for t, s in self._deferred if t <= now]
        self._deferred = [(t, s) for t, s in self._deferred if t > now]
        self._issue(due)
        if self.ledger is None or self.commit is not None or self.room.reclaim is not None:
            return
        slot = self.ledger.next_slot()
        if self._clear_at is not None:
            if now >= self._clear_at and self.blocker(now, slot, learner) is None:
                self._clear_table(now, slot)
            return
        pools, desired = self._pools, self._desired()
        if now - self._last_rollout < self.settings.min_rollout_interval:
            return
        current = self.slot_weights[self.ledger.active]
        if current is not None and not self._filter_full(learner):
            held = {
                p: tuple(current.get(p, {}).get(m.dip, 0) for m in pool)
                for p, pool in enumerate(pools)
            }
            total = 1 << self.settings.weight_bits
            if skip_reason(held, desired, total, self.settings.min_weight_change):
                self.backpressure = None
                return
        block = self.blocker(now, slot, learner)
        if block is None and learner.full:
            block = f"conn_table full ({learner.waiting} connections waiting)"
        if block is not None:
            self._hold(now, block)
            return
        prepared = self._content()
        if self._make_room(now, slot, prepared, learner):
            return
        self.backpressure = None
        self._start(now, slot, prepared)

    def _hold(self, now: float, reason: str) -> None:
        if self.backpressure is None:
            self._record(now, "fault", what="backpressure", detail=reason)
        self.backpressure = reason
        self.counters.backpressure += 1

    def _filter_full(self, learner: ConnectionLearner) -> bool:
        """Whether the active slot took enough connections that a fresh version is due."""
        assert self.ledger is not None
        active = self.ledger.active
        if self._mark[0] != active:
            self._mark = (active, learner.learned_in_slot[active])
        limit = self.settings.max_version_connections
        return limit > 0 and learner.learned_in_slot[active] - self._mark[1] >= limit

    def blocker(self, now: float, slot: int, learner: ConnectionLearner) -> str | None:
        """Why `slot` may not be reused now (None: it may)."""
        assert self.ledger is not None
        return self.ledger.blocker(
            slot,
            now,
            self.settings.quiet_period,
            learner.pending_count(slot),
            learner.last_digest(slot),
        )

    def referenced(self, now: float, learner: ConnectionLearner) -> set[str]:
        """DIPs with weight in a slot that connections may still use."""
        assert self.ledger is not None
        dips: set[str] = set()
        for slot, weights in enumerate(self.slot_weights):
            in_use = slot == self.ledger.active or self.blocker(now, slot, learner) is not None
            if weights is not None and in_use:
                dips.update(d for pool in weights.values() for d, w in pool.items() if w > 0)
        return dips

    def journal(self, pending: int | None) -> dict[str, Any]:
        """The state journal: enough to adopt dip_table after a restart."""
        assert self.ledger is not None
        weights = list(self.slot_weights)
        if pending is not None and self._staged is not None:
            weights[pending] = self._staged
        return {
            "active": self.ledger.active,
            "pending": pending,
            "shadow": self.shadow.to_json(),
            "slot_weights": [
                None if w is None else {str(p): d for p, d in w.items()} for w in weights
            ],
        }

    # -- the commit

    def _content(self) -> Content:
        """The dip_table content of a new version (all pools) and the weights behind it."""
        assert self.ledger is not None
        pools, desired = self._pools, self._desired()
        content: dict[BucketKey, DipTarget] = {}
        staged: SlotWeights = {}
        # Start from what the active version holds, so few flow hashes change member (fewer
        # connections depend on conn_table entries still being learned), with the slot's share
        # of the table as the entry budget.
        held = self.shadow.content(self.ledger.active)
        for p, pool in enumerate(pools):
            members = [DipTarget(m.ip, m.port) for m in pool]
            weights = list(desired[p])
            budget = entry_budget(weights, self.room.size, self.slots, len(pools))
            previous = held_entries(p, members, held)
            pool_content, _ = pool_buckets(
                p, members, weights, self.hash_bits, previous, max_entries=budget
            )
            content.update(pool_content)
            staged[p] = {m.dip: w for m, w in zip(pool, weights, strict=True)}
        return content, staged

    def _start(self, now: float, slot: int, prepared: Content | None = None) -> None:
        assert self.ledger is not None
        content, staged = prepared or self._content()
        check = self.room.check(self.shadow, self.ledger.active, slot, len(content))
        if check.too_small:
            self._too_small(now, check)
            if slot == self.ledger.active:  # the initial version
                self._boot.fail(f"initial version: {check.describe()}")
            return
        writes = tuple(self.shadow.plan(slot, content))
        weights_by_pool = {p: tuple(w.values()) for p, w in staged.items()}
        plan = RolloutPlan(slot, self.counters.rollouts + 1, writes, weights_by_pool, now)
        self._staged = staged
        self._initial = slot == self.ledger.active
        self.commit = CommitProtocol(plan, self.ledger.active)
        self._issue(self.commit.begin())

    def _issue(self, steps: list[Step]) -> None:
        for step in steps:
            if isinstance(step, FlipVersion) and self.journaling:
                self._calls.call(
                    "journal", (self.journal(pending=step.slot),), self._journaled(step)
                )
                continue
            method, args = StepCalls.call_for(step)
            self._calls.call(method, args, self._handler(step))

    def _journaled(self, step: Step) -> Handler:
        def handle(now: float, ok: bool, value: Any, error: str) -> None:
            if not ok:
                self._record(now, "fault", what="journal", detail=error)
            method, args = StepCalls.call_for(step)
            self._calls.call(method, args, self._handler(step))

        return handle

    def _handler(self, step: Step) -> Handler:
        def handle(now: float, ok: bool, value: Any, error: str) -> None:
            commit = self.commit
            assert commit is not None
            if isinstance(step, DipWrite):
                if ok:
                    self.shadow.applied(step, None if value is None else int(value))
                else:
                    self.shadow.failed(step, error)
                    self.room.write_failed(now, self.shadow, step, error)
            if ok:
                steps = commit.step_done(now, step, value)
            else:
                self.counters.write_failures += 1
                steps = commit.step_failed(now, step, error)
            if isinstance(step, ReadActive) and not ok:
                self._deferred.extend((now + VERIFY_RETRY, s) for s in steps)
                steps = []
            self._issue(steps)
            if commit.outcome is not None:
                self._finish(now, commit.outcome)

        return handle

    def _finish(self, now: float, outcome: RolloutOutcome) -> None:
        assert self.ledger is not None and self._staged is not None
        self.commit = None
        self.last_outcome = outcome
        self._last_rollout = now
        slot = outcome.plan.slot
        initial, self._initial = self._initial, False
        if not outcome.committed:
            self.counters.rollouts_aborted += 1
            self.slot_weights[slot] = None
            self._record(
                now, "fault", what="rollout_aborted", detail=f"slot {slot}: {outcome.reason}"
            )
            if (
                self.journaling
            ):  # the slot's partial writes are in the shadow: keep the journal true
                self._calls.call("journal", (self.journal(pending=None),), lambda *_: None)
            if initial:
                self._initial_attempts += 1
                if self._initial_attempts < INITIAL_ATTEMPTS:
                    self._start(now, slot)
                else:
                    self._boot.fail(f"initial version: {outcome.reason}")
            return
        if initial:
            self._boot.settle()
        self.counters.rollouts += 1
        self.ledger.flipped(slot, now)
        self.slot_weights[slot] = self._staged
        self._record(
            now,
            "rollout",
            slot=slot,
            version=outcome.plan.version,
            duration_ms=outcome.duration * 1000.0,
            entries_written=outcome.entries_written,
        )
        for p, pool in enumerate(self._pools):
            self._record(now, "weights", pool=pool.vip.name, weights=self._staged.get(p, {}))
        if self.journaling:
            self._calls.call("journal", (self.journal(pending=None),), lambda *_: None)

    def _clear_table(self, now: float, slot: int) -> None:
        """Warm start without a usable journal: clear dip_table, then roll out a known version."""
        self._clear_at = math.inf  # until the clear is acknowledged

        def cleared(now: float, ok: bool, value: Any, error: str) -> None:
            if not ok:
                self._record(now, "fault", what="reclaim", detail=error)
                self._clear_at = now + self.settings.min_rollout_interval
                return
            self._clear_at = None
            self.shadow.forget()
            self.slot_weights = [None] * self.slots
            self._start(now, slot)

        self._record(now, "phase", name="reclaim dip_table")
        self._calls.call("table_clear", ("dip_table",), cleared)

    # -- room in dip_table (controller.core.room, controller.core.reclaim)

    def reclaimable(self, now: float, target: int, learner: ConnectionLearner) -> list[int]:
        """Slots whose entries nobody can reach once their Bloom filter is reset, oldest first:
        neither active nor `target`, and free to reuse (nothing pending, quiet period over)."""
        assert self.ledger is not None
        ledger = self.ledger
        idle = [s for s in range(self.slots) if s not in (target, ledger.active)]
        idle.sort(key=lambda s: -math.inf if (t := ledger.deactivated_at[s]) is None else t)
        return [s for s in idle if self.blocker(now, s, learner) is None]

    def _make_room(
        self, now: float, slot: int, prepared: Content, learner: ConnectionLearner
    ) -> bool:
        """Under table pressure, reclaim or hold; True while the rollout must wait."""
        assert self.ledger is not None
        check = self.room.check(self.shadow, self.ledger.active, slot, len(prepared[0]))
        if check.too_small:
            self._too_small(now, check)
            return True
        wait = self.room.make_room(now, self.shadow, check, self.reclaimable(now, slot, learner))
        if wait is not None and self.room.reclaim is None:
            self._hold(now, wait)
        return wait is not None

    def _too_small(self, now: float, check: RoomCheck) -> None:
        noted = (self.backpressure or "").startswith("dip_table too small")
        self.backpressure = self.room.too_small(now, check, noted)
        self._last_rollout = now  # look again no more often than rollouts are tried

    def _reclaimed(self, outcome: ReclaimOutcome) -> None:
        for slot in outcome.plan.slots:
            self.slot_weights[slot] = None  # holds no version any more
        if not outcome.complete:
            self._last_rollout = outcome.finished_at  # retry after the interval, not at once
        if self.journaling:
            self._calls.call("journal", (self.journal(pending=None),), lambda *_: None)

    @property
    def staged_weights(self) -> SlotWeights | None:
        """Weights of the rollout in progress (or the last one)."""
        return self._staged
