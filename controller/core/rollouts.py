"""Rollouts, pure: when to roll out, and driving each commit through its outcomes.

`Rollouts` owns the ROLLOUT operations: it decides (rate limit, dead-band, the slot reuse rules,
a full conn_table, room in dip_table) when the desired weights become a new version, builds the
version (`controller.core.layout`), runs `CommitProtocol` by emitting one operation per step and
reading each outcome back, and journals what dip_table holds: the intent before a rollout's
first write, right before each flip, and after each commit or abort. A warm start adopts
dip_table from a read-back, and a write that contradicts the shadow has the table read back
too; a switch found empty is written afresh as on a cold start. Under table pressure it lets
`DipRoom` (owner RECLAIM) free idle slots.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from controller.config import ControllerSettings
from controller.core.epochs import FlipVersion, ReadVersions, VersionConfig
from controller.core.journal import Journal, SlotWeights, UnsettledConnection
from controller.core.layout import Content, version_content
from controller.core.learning import ConnectionLearner
from controller.core.ops import (
    ErrorKind,
    JournalWrite,
    Op,
    Outcome,
    Owner,
    TableClear,
    TableRead,
)
from controller.core.pools import BackendPool
from controller.core.reclaim import RoomCheck
from controller.core.records import RecordLog
from controller.core.rollout import CommitProtocol, RolloutCounters, RolloutOutcome, RolloutPlan
from controller.core.room import DipRoom
from controller.core.shadow import DipWrite, WriteKind
from controller.core.slots import SlotLedger, SlotTable, skip_reason
from controller.core.steps import Step, op_step, step_op
from p4src.contract import DIP_TABLE

VERIFY_RETRY = 0.5
INITIAL_ATTEMPTS = 5


class Rollouts:
    """The version slots, the rollout being committed, and when the next one may start."""

    def __init__(
        self,
        settings: ControllerSettings,
        *,
        hash_bits: int,
        slots: int,
        table_size: int,
        pools: Sequence[BackendPool],
        records: RecordLog,
        journaling: bool,
    ) -> None:
        self.settings = settings
        self.hash_bits = hash_bits
        self.journaling = journaling
        self.table = SlotTable(slots, settings.quiet_period)
        self.counters = RolloutCounters()
        self.room = DipRoom(
            table_size,
            settings.min_rollout_interval,
            shadow=self.table.shadow,
            records=records,
            counters=self.counters,
        )
        self.commit: CommitProtocol | None = None
        self.backpressure: str | None = None
        self.last_outcome: RolloutOutcome | None = None
        self.failure: str | None = None
        """Why the initial version could not be written (start-up then fails)."""
        self.initial_done = False
        self._pools = pools
        self._records = records
        self._staged: SlotWeights | None = None
        self._initial = False
        self._initial_attempts = 0
        self._last_rollout = -math.inf
        self._clear_at: float | None = None
        self._deferred: list[tuple[float, Step]] = []
        self._flip_after_journal: FlipVersion | None = None
        self._mark = (-1, 0)  # (active slot, its learned count when it became active)
        self._desired: Mapping[int, Sequence[int]] = {}
        self._reattach = False
        self._reporters: frozenset[str] = frozenset()
        self._adopting: tuple[Journal, int, float] | None = None
        self._resync_due = False
        self._resyncing = False

    @property
    def ledger(self) -> SlotLedger | None:
        """The slot ledger once attached to a switch."""
        return self.table.ledger

    # -- attaching to a switch

    def attach_cold(
        self,
        now: float,
        config: VersionConfig,
        desired: Mapping[int, Sequence[int]],
        last_epoch: int,
    ) -> list[Op]:
        """A clean switch: fresh epochs for every slot, the initial version in the active slot,
        and version_config written with it (epochs above `last_epoch` and the switch's own)."""
        self.table.attach(SlotLedger(self.table.slots, config, now, last_epoch=last_epoch))
        return self._start(now, config.active, self._content(desired))

    def attach_warm(
        self,
        now: float,
        config: VersionConfig,
        journal: Journal | None,
        dip_entries: int,
        last_epoch: int,
    ) -> list[Op]:
        """A switch that kept its state: adopt what dip_table really holds, or reclaim it after
        the hold when there is no journal to say which weights are behind it.

        With a journal, dip_table is read back (`_adopted`): the switch is the truth for every
        entry and handle; the journal only says which weights fill a slot, and only for a slot
        whose content it describes exactly. The hold is `restart_hold`, shorter after a clean
        stop shortly before (the journal says when, and which connections were still being
        installed), and none for an empty dip_table.
        """
        hold = now + self.settings.restart_hold
        if journal is not None and journal.stopped_at is not None and now >= journal.stopped_at:
            downtime = now - journal.stopped_at
            hold = now + min(self.settings.restart_hold, self.settings.quiet_period + 2 * downtime)
        if not dip_entries:
            hold = now
        ledger = SlotLedger(self.table.slots, config, now, hold_until=hold, last_epoch=last_epoch)
        ledger.deactivated_at = [now] * self.table.slots
        self.table.attach(ledger)
        if journal is None:
            self.initial_done = True
            self._clear_at = hold
            return []
        self._adopting = (journal, dip_entries, hold)
        return [TableRead(Owner.ROLLOUT, DIP_TABLE)]

    def _adopted(self, now: float, outcome: Outcome) -> None:
        """dip_table read back at a warm start (or not: then the old count check decides)."""
        assert self._adopting is not None
        journal, dip_entries, hold = self._adopting
        self._adopting = None
        self.initial_done = True
        if outcome.ok:
            matching = self.table.take_read_back(outcome.entries, journal)
            self._records.add(
                now,
                "phase",
                name=f"dip_table read back: {self.table.shadow.size()} entries, "
                f"{matching} of {self.table.slots} slots as journaled",
            )
        elif journal.matches(self.table.ledger.active if self.table.ledger else 0, dip_entries):
            self._records.fault(
                now, "journal", f"read back failed ({outcome.detail}); counts match"
            )
            self.table.shadow.assign(journal.shadow)
            self.table.weights = list(journal.slot_weights)
        else:
            self._records.fault(now, "journal", f"read back failed ({outcome.detail})")
            self._clear_at = hold

    def note_reporters(self, reporters: frozenset[str]) -> list[Op]:
        """The DIPs whose agents report changed: journal them (now, unless a commit is in
        flight, whose own journal writes will carry them)."""
        changed = reporters != self._reporters
        self._reporters = reporters
        if changed and self.journaling and self.commit is None and self.table.ledger is not None:
            return [self._journal_op(pending=None)]
        return []

    def switch_lost(self) -> None:
        """The switch restarted empty: once no commit or reclaim is in flight, start over as on
        a cold start from the version_config a restarted switch holds (slot 0 active, every
        epoch 0, so no Bloom filter holds anything), with epochs above every one issued.

        Packets of the gap used slot 0 and marked nothing (epoch 0 never matches), so they and
        every later connection follow whatever version goes live.
        """
        self._reattach = True

    # -- periodic work

    def step(
        self,
        now: float,
        desired: Mapping[int, Sequence[int]],
        learner: ConnectionLearner,
        *,
        force: bool = False,
        ramping: bool = False,
    ) -> list[Op]:
        """Retry deferred reads, reclaim after a warm start, or roll out if due and allowed
        (with `force`, even if the weights have not changed; while `ramping`, a member is
        slow-starting and every change counts, however small)."""
        self._desired = desired
        due = [s for t, s in self._deferred if t <= now]
        self._deferred = [(t, s) for t, s in self._deferred if t > now]
        ops = self._issue(due)
        ledger = self.table.ledger
        busy = self.commit is not None or self.room.reclaim is not None
        if ledger is None or busy or self._adopting is not None or self._resyncing:
            return ops
        if self._reattach:
            self._reattach = False
            self._clear_at = None
            self.table.forget()
            restarted = VersionConfig(0, (0,) * self.table.slots)
            return ops + self.attach_cold(now, restarted, desired, ledger.epochs.last)
        slot = ledger.next_slot()
        if self._clear_at is not None:
            if now >= self._clear_at and self.table.blocker(now, slot, learner) is None:
                self._clear_at = math.inf  # until the clear is acknowledged
                self._records.add(now, "phase", name="reclaim dip_table")
                ops.append(TableClear(Owner.ROLLOUT, DIP_TABLE))
            return ops
        if now - self._last_rollout < self.settings.min_rollout_interval:
            return ops
        ops += self._decide(now, desired, learner, slot, force=force, ramping=ramping)
        if self.commit is None and self.room.reclaim is None:
            # Nothing else to write this step: retire idle slots (one version_config write).
            retirable = self.table.retirable(now, learner)
            if retirable:
                ops += self.room.retire(now, retirable, ledger)
        return ops

    def _decide(
        self,
        now: float,
        desired: Mapping[int, Sequence[int]],
        learner: ConnectionLearner,
        slot: int,
        *,
        force: bool,
        ramping: bool,
    ) -> list[Op]:
        """Roll out to `slot` if the weights moved enough and the slot and the table allow it;
        else note why not (backpressure) and maybe start a reclaim for room."""
        ledger = self.table.ledger
        assert ledger is not None
        held = self.table.held_weights(
            {pool.pool_id: [m.dip for m in pool] for pool in self._pools}
        )
        if held is not None and not force and not self._filter_full(learner):
            total = 1 << self.settings.weight_bits
            band = 0.0 if ramping else self.settings.min_weight_change
            if skip_reason(held, desired, total, band):
                self.backpressure = None
                return []
        block = self.table.blocker(now, slot, learner)
        if block is None and learner.full:
            block = f"conn_table full ({learner.waiting} connections waiting)"
        if block is not None:
            self._hold(now, block)
            return []
        prepared = self._content(desired)
        check = self.room.check(ledger.active, slot, len(prepared[0]))
        if check.too_small:
            self._too_small(now, check)
            return []
        wait, reclaiming = self.room.make_room(
            now, check, self.table.reclaimable(now, slot, learner), ledger
        )
        if wait is not None:
            if self.room.reclaim is None:
                self._hold(now, wait)
            return reclaiming
        self.backpressure = None
        return self._start(now, slot, prepared)

    def configure(self, settings: ControllerSettings) -> None:
        """Take a reload's settings (weight_bits never changes live): from the next step on."""
        self.settings = settings
        self.table.quiet_period = settings.quiet_period
        self.room.min_interval = settings.min_rollout_interval

    def _hold(self, now: float, reason: str) -> None:
        if self.backpressure is None:
            self._records.fault(now, "backpressure", reason)
        self.backpressure = reason
        self.counters.backpressure += 1

    def _filter_full(self, learner: ConnectionLearner) -> bool:
        """Whether the active slot took enough connections that a fresh version is due."""
        assert self.table.ledger is not None
        active = self.table.ledger.active
        if self._mark[0] != active:
            self._mark = (active, learner.learned_in_slot[active])
        limit = self.settings.max_version_connections
        return limit > 0 and learner.learned_in_slot[active] - self._mark[1] >= limit

    def _too_small(self, now: float, check: RoomCheck) -> None:
        noted = (self.backpressure or "").startswith("dip_table too small")
        self.backpressure = self.room.too_small(now, check, noted)
        self._last_rollout = now  # look again no more often than rollouts are tried

    # -- the commit

    def _content(self, desired: Mapping[int, Sequence[int]]) -> tuple[Content, SlotWeights]:
        ledger = self.table.ledger
        assert ledger is not None
        return version_content(
            self._pools,
            desired,
            self.table.shadow.content(ledger.active),
            hash_bits=self.hash_bits,
            table_size=self.room.size,
            slots=self.table.slots,
        )

    def _start(self, now: float, slot: int, prepared: tuple[Content, SlotWeights]) -> list[Op]:
        ledger = self.table.ledger
        assert ledger is not None
        content, staged = prepared
        initial = slot == ledger.active
        check = self.room.check(ledger.active, slot, len(content))
        if check.too_small:
            self._too_small(now, check)
            if initial:
                self.failure = self.failure or f"initial version: {check.describe()}"
            return []
        writes = tuple(self.table.shadow.plan(slot, content))
        weights_by_pool = {p: tuple(w.values()) for p, w in staged.items()}
        # The initial version of a cold switch empties every slot; a rollout only its target.
        fresh = ledger.epochs.fresh(range(self.table.slots) if initial else (slot,))
        plan = RolloutPlan(
            slot,
            self.counters.rollouts + 1,
            fresh,
            writes,
            ledger.epochs.flip(slot),
            weights_by_pool,
            now,
        )
        self._staged = staged
        self._initial = initial
        self.commit = CommitProtocol(plan, ledger.active)
        # The intent first: a controller killed while the slot is half written finds the slot
        # named pending in the journal (and reads the table back before trusting anything).
        intent: list[Op] = [self._journal_op(pending=slot)] if self.journaling else []
        return intent + self._issue(self.commit.begin())

    def _issue(self, steps: Sequence[Step]) -> list[Op]:
        ops: list[Op] = []
        for step in steps:
            if isinstance(step, FlipVersion) and self.journaling:
                # Journal the slot being filled before the flip makes it live.
                self._flip_after_journal = step
                ops.append(self._journal_op(pending=step.slot))
            else:
                ops.append(step_op(Owner.ROLLOUT, step))
        return ops

    def _journal_op(self, pending: int | None) -> JournalWrite:
        staged = self._staged if pending is not None else None
        return JournalWrite(Owner.ROLLOUT, self.table.journal(pending, staged, self._reporters))

    def on_outcome(self, now: float, outcome: Outcome) -> list[Op]:
        """Drive the commit (or the warm-start clear, or the journal) with one outcome."""
        op = outcome.op
        if isinstance(op, JournalWrite):
            if not outcome.ok:
                self._records.fault(now, "journal", outcome.detail)
            flip, self._flip_after_journal = self._flip_after_journal, None
            if op.journal.pending is not None and flip is not None:
                return [step_op(Owner.ROLLOUT, flip)]
            return []
        if isinstance(op, TableClear):
            return self._cleared(now, outcome)
        if isinstance(op, TableRead):
            if self._adopting is not None:
                self._adopted(now, outcome)
            else:
                self._resynced(now, outcome)
            return []
        step = op_step(op)
        commit = self.commit
        if step is None or commit is None:
            return []
        read = None
        if isinstance(step, ReadVersions) and outcome.ok:
            read = self._read_versions(now, outcome)
            if read is None:
                outcome = Outcome.failed(op, ErrorKind.INVALID, "unreadable version_config")
        if isinstance(step, DipWrite):
            if outcome.ok:
                self.table.shadow.applied(step, outcome.handle)
            else:
                self.table.shadow.failed(step, outcome.error is ErrorKind.NOT_FOUND)
                self.room.write_failed(now, step, outcome.error)
                # The switch holds an entry the shadow does not, or lacks one it has: read the
                # table back once this rollout ended, rather than abort every later one.
                contradicts = (outcome.error is ErrorKind.DUPLICATE) or (
                    outcome.error is ErrorKind.NOT_FOUND and step.kind is WriteKind.MODIFY
                )
                self._resync_due = self._resync_due or contradicts
        if outcome.ok:
            steps = commit.step_done(now, step, read)
        else:
            self.counters.write_failures += 1
            steps = commit.step_failed(now, step, outcome.detail)
        if isinstance(step, ReadVersions) and not outcome.ok:
            self._deferred.extend((now + VERIFY_RETRY, s) for s in steps)
            steps = []
        ops = self._issue(steps)
        if commit.outcome is not None:
            ops.extend(self._finish(now, commit.outcome))
        return ops

    def _resynced(self, now: float, outcome: Outcome) -> None:
        """dip_table read back after a write contradicted the shadow."""
        self._resyncing = False
        if not outcome.ok:
            self._resync_due = True  # read again after the next rollout attempt
            self._records.fault(now, "resync", outcome.detail)
            return
        before = self.table.shadow.size()
        matching = self.table.take_read_back(outcome.entries, None)
        self.counters.resyncs += 1
        self._records.fault(
            now,
            "resync",
            f"a write contradicted the dip_table shadow: read back {self.table.shadow.size()} "
            f"entries (shadow had {before}); {matching} of {self.table.slots} slots unchanged",
        )

    def _read_versions(self, now: float, outcome: Outcome) -> VersionConfig | None:
        """What a ReadVersions found, adopted as the switch's config (None if unreadable)."""
        ledger = self.table.ledger
        assert ledger is not None
        entry = outcome.entry
        try:
            if entry is None:
                raise ValueError("no entry in the outcome")
            read = VersionConfig.from_entry(entry.action, entry.params, self.table.slots)
        except ValueError as exc:
            self._records.fault(now, "version_config", str(exc))
            return None
        if read.active == ledger.active:
            ledger.epochs.confirm(read)  # a flip to the target is confirmed by `flipped` instead
        return read

    def _cleared(self, now: float, outcome: Outcome) -> list[Op]:
        """Warm start without a usable journal: dip_table cleared, roll out a known version."""
        if not outcome.ok:
            self._records.fault(now, "reclaim", outcome.detail)
            self._clear_at = now + self.settings.min_rollout_interval
            return []
        self._clear_at = None
        self.table.forget()
        ledger = self.table.ledger
        assert ledger is not None
        return self._start(now, ledger.next_slot(), self._content(self._desired))

    def _finish(self, now: float, outcome: RolloutOutcome) -> list[Op]:
        ledger = self.table.ledger
        assert ledger is not None and self._staged is not None
        self.commit = None
        self.last_outcome = outcome
        self._last_rollout = now
        slot = outcome.plan.slot
        initial, self._initial = self._initial, False
        journal: list[Op] = [self._journal_op(pending=None)] if self.journaling else []
        if self._resync_due:
            self._resync_due = False
            self._resyncing = True
            journal.append(TableRead(Owner.ROLLOUT, DIP_TABLE))
        if not outcome.committed:
            self.counters.rollouts_aborted += 1
            self.table.weights[slot] = None
            self._records.fault(now, "rollout_aborted", f"slot {slot}: {outcome.reason}")
            if not initial:
                return journal  # the slot's partial writes are in the shadow: keep it true
            self._initial_attempts += 1
            if self._initial_attempts < INITIAL_ATTEMPTS:
                return journal + self._start(now, slot, self._content(outcome.plan.weights))
            self.failure = self.failure or f"initial version: {outcome.reason}"
            return journal
        self.initial_done = self.initial_done or initial
        self.counters.rollouts += 1
        ledger.flipped(outcome.plan.flip.config, now)
        self.table.weights[slot] = self._staged
        self._records.add(
            now,
            "rollout",
            slot=slot,
            version=outcome.plan.version,
            duration_ms=outcome.duration * 1000.0,
            entries_written=outcome.entries_written,
        )
        for pool in self._pools:
            weights = self._staged.get(pool.pool_id, {})
            self._records.add(now, "weights", pool=pool.vip.name, weights=weights)
        return journal

    # -- reclaiming room in dip_table

    def on_reclaim_outcome(self, now: float, outcome: Outcome) -> list[Op]:
        """Hand a RECLAIM outcome to the room; a finished reclaim empties its slots here too."""
        ops = self.room.on_outcome(now, outcome)
        finished = self.room.take_finished()
        if finished is None:
            return ops
        for slot in finished.plan.slots:
            self.table.weights[slot] = None  # holds no version any more
        if self.table.ledger is not None:
            self.table.ledger.freshened(finished.freshened)
        if not finished.complete:
            self._last_rollout = finished.finished_at  # retry after the interval, not at once
        if self.journaling:
            ops.append(self._journal_op(pending=None))
        return ops

    # -- the journal at a clean stop

    def journal_at_stop(
        self, now: float, unsettled: Sequence[UnsettledConnection]
    ) -> Journal | None:
        """The journal a clean stop leaves (None while a rollout is in flight: keep the last)."""
        if self.table.ledger is None or self.commit is not None:
            return None
        journal = self.table.journal(None, None, self._reporters)
        return dataclasses.replace(journal, stopped_at=now, unsettled=tuple(unsettled))
