"""The controller's pure core: inputs and `now` in, switch calls and records out.

The shell (controller.app) feeds digests, ageing notices, loads, clock ticks and the outcome of
every call it made; the core answers with `SwitchCall`s (a SwitchClient method name and its
arguments, tagged with a token the shell hands back with the outcome). Nothing here does I/O.

Start-up (`bootstrap`) depends on what the switch already holds:
- cold (conn_table and dip_table empty): program VIPs, the return path, routes, every Bloom
  filter reset and the initial version in slot `active_version`, then flip to it;
- warm (the switch kept its state): keep every table (clearing conn_table would break each
  connection whose slot was rewritten since it started); re-add VIPs/return path/routes
  (duplicates are fine); adopt conn_table entries lazily (their idle notices are deleted after a
  grace, duplicates on add count as installed); hold slot reuse for `restart_hold` seconds, so
  connections that began while no controller listened re-raise digests and get installed. The
  dip_table contents come from the journal when it matches the switch (entry count and active
  slot); otherwise the core clears dip_table after the hold and rolls out a fresh version (new
  connections in their first round trip at that instant may be re-hashed — the documented cost
  of restarting without `--state`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.config import Config, DipConfig
from controller.core_support import (
    ActivityRecords,
    BootTracker,
    CallQueue,
    DigestLike,
    Handler,
    JournalError,
    RecordEvent,
    RouteEntry,
    StepCalls,
    SwitchCall,
    SwitchView,
    learning_call,
    parse_journal,
)
from controller.learning import ConnectionLearner, ConnKey
from controller.pools import BackendPool, DrainFinished
from controller.rollout import (
    CommitProtocol,
    FlipVersion,
    ReadActive,
    RolloutOutcome,
    RolloutPlan,
    SlotLedger,
    Step,
    skip_reason,
)
from controller.shadow import BucketKey, DipShadow, DipTarget, DipWrite
from controller.weighting import MemberLoad, PoolWeighting, pool_buckets
from policy.buckets import PrefixEntry

VERIFY_RETRY = 0.5

__all__ = ["ControllerCore", "DigestLike", "RecordEvent", "RouteEntry", "SwitchCall", "SwitchView"]


@dataclass
class _Staged:
    weights: dict[int, dict[str, int]]
    entries: dict[int, tuple[int, list[PrefixEntry]]]


@dataclass
class CoreCounters:
    """Rollout-side counters (learning has its own)."""

    rollouts: int = 0
    rollouts_aborted: int = 0
    rollouts_skipped: int = 0
    backpressure: int = 0
    write_failures: int = 0
    members_removed: int = 0


class ControllerCore:
    """Decides every write: learning, rollouts, member lifecycle."""

    def __init__(
        self,
        config: Config,
        *,
        policy_name: str | None = None,
        hash_bits: int = 16,
        slots: int = 4,
        conn_capacity: int = 65536,
        routes: Sequence[RouteEntry] = (),
        journaling: bool = False,
    ) -> None:
        self.config = config
        self.settings = config.controller
        self.hash_bits = hash_bits
        self.slots = slots
        self.routes = tuple(routes)
        self.journaling = journaling
        name = policy_name or self.settings.policy
        self.pools = [BackendPool(i, vip) for i, vip in enumerate(config.vips)]
        self.weighting = [
            PoolWeighting(p, name, config.policy_params, self.settings.weight_bits)
            for p in self.pools
        ]
        self.shadow = DipShadow(slots)
        self.slot_weights: list[dict[int, dict[str, int]] | None] = [None] * slots
        self._slot_entries: list[dict[int, tuple[int, list[PrefixEntry]]]] = [
            {} for _ in range(slots)
        ]
        self.learner = ConnectionLearner(
            capacity=conn_capacity,
            tcp_idle_timeout=self.settings.tcp_idle_timeout,
            udp_idle_timeout=self.settings.udp_idle_timeout,
            teardown_linger=self.settings.teardown_linger,
        )
        self.ledger: SlotLedger | None = None
        self.commit: CommitProtocol | None = None
        self.commit_initial = False
        self.counters = CoreCounters()
        self.backpressure: str | None = None
        self.last_outcome: RolloutOutcome | None = None
        self.boot = BootTracker()
        self.removed: list[str] = []
        self._records: list[RecordEvent] = []
        self._calls = CallQueue()
        self._activity = ActivityRecords()
        self._last_rollout = -math.inf
        self._next_policy = -math.inf
        self._loads: Mapping[str, MemberLoad] = {}
        self._reverse: dict[str, int | None] = {}
        self._staged: _Staged | None = None
        self._reclaim_at: float | None = None
        self._force = False
        self._deferred: list[tuple[float, Step]] = []

    # -- start-up

    def bootstrap(
        self, now: float, view: SwitchView | None, journal: Mapping[str, Any] | None = None
    ) -> list[SwitchCall]:
        """Program the switch (cold) or adopt it (warm); see the module docstring."""
        cold = view is None or (view.conn_entries == 0 and view.dip_entries == 0)
        active = 0 if view is None else view.active_version % self.slots
        for route in self.routes:
            self._boot_call("table_add", ("ipv4_lpm", "forward", route.keys, route.params))
        for pool in self.pools:
            vip = pool.vip
            self._boot_call(
                "table_add",
                (
                    "vip_table",
                    "set_pool",
                    [vip.ip, str(vip.port), str(vip.protocol_number)],
                    [str(pool.pool_id)],
                ),
            )
            for member in pool:
                self._add_reverse(pool, member.ip, member.port, boot=True)
        if cold:
            self.ledger = SlotLedger(self.slots, active, now)
            for slot in range(self.slots):
                if slot != active:
                    self._boot_call("register_reset", (f"bloom_{slot}",))
            self.boot.expect()  # the initial version: settled when its flip commits
            self._start_rollout(now, slot=active)
            return self._flush(now)
        assert view is not None
        hold = now + self.settings.restart_hold
        self.ledger = SlotLedger(self.slots, active, now, hold_until=hold)
        self.ledger.deactivated_at = [now] * self.slots
        self.learner.adopt_foreign(view.conn_entries)
        adopted = False
        if journal is not None:
            try:
                state = parse_journal(journal, self.slots)
            except JournalError as exc:
                self._record(now, "fault", what="journal", detail=str(exc))
            else:
                if state.matches(active, view.dip_entries):
                    self.shadow = state.shadow
                    self.slot_weights = state.slot_weights
                    adopted = True
                else:
                    self._record(
                        now, "fault", what="journal", detail="journal does not match the switch"
                    )
        if not adopted:
            self._reclaim_at = hold
        self._record(
            now,
            "phase",
            name=f"warm start: active slot {active}, journal {'adopted' if adopted else 'unused'}",
        )
        return self._flush(now)

    @property
    def started(self) -> bool:
        """Whether start-up writes are all acknowledged (and the first version is live, if cold)."""
        return self.boot.done and self.boot.failure is None and self.ledger is not None

    # -- inputs

    def tick(self, now: float, loads: Mapping[str, MemberLoad]) -> list[SwitchCall]:
        """Periodic work: policy, lifecycle, rollouts, retries and timers."""
        self._loads = loads
        if self.ledger is None or not self.boot.done:
            return self._flush(now)
        self._run_deferred(now)
        for pool in self.pools:
            for finished in pool.tick(
                now, self._drain_count(now), self.settings.drain_timeout, self.settings.quiet_period
            ):
                self._drained(now, finished)
        if now >= self._next_policy:
            self._next_policy = now + self.settings.report_interval
            for weighting in self.weighting:
                weighting.update(now, loads)
        if self._reclaim_at is not None and now >= self._reclaim_at and self.commit is None:
            self._reclaim(now)
        else:
            self._maybe_roll(now)
        self._records.extend(self._activity.collect(now, self.learner.counters, self.pools))
        return self._flush(now)

    def on_digest(self, now: float, digest: DigestLike) -> list[SwitchCall]:
        """A digest from the data plane."""
        key = ConnKey(
            digest.src_ip, digest.dst_ip, digest.src_port, digest.dst_port, digest.protocol
        )
        if digest.kind == "new_conn":
            self.learner.on_new_conn(
                now, key, digest.version % self.slots, DipTarget(digest.dip_ip, digest.dip_port)
            )
        elif digest.kind == "teardown":
            self.learner.on_teardown(now, key)
        return self._flush(now)

    def on_aged(self, now: float, handles: Sequence[int]) -> list[SwitchCall]:
        """conn_table handles the switch reports idle."""
        self.learner.on_aged(now, handles)
        return self._flush(now)

    def on_result(
        self, now: float, token: int, ok: bool, value: Any = None, error: str = ""
    ) -> list[SwitchCall]:
        """The outcome of a call this core asked for."""
        self._calls.resolve(now, token, ok, value, error)
        return self._flush(now)

    def take_records(self) -> list[RecordEvent]:
        """Records produced since the last call."""
        out, self._records = self._records, []
        return out

    # -- member lifecycle

    def drain_member(self, now: float, pool: int, dip: str, *, remove: bool) -> None:
        """Drain a member (weight 0 from the next rollout); with `remove` it leaves once drained."""
        self.pools[pool].drain(now, dip, remove=remove)
        self._next_policy = now

    def activate_member(self, now: float, pool: int, dip: str) -> None:
        """Let a member take new connections."""
        self.pools[pool].activate(now, dip)
        self._next_policy = now

    def add_member(self, now: float, pool: int, dip: DipConfig) -> list[SwitchCall]:
        """Add a member to a pool and program its return path."""
        member = self.pools[pool].add(now, dip)
        self._add_reverse(self.pools[pool], member.ip, member.port, boot=False)
        self._next_policy = now
        return self._flush(now)

    # -- rollouts

    def _maybe_roll(self, now: float) -> None:
        assert self.ledger is not None
        if self.commit is not None:
            return
        desired = {p: w.desired for p, w in enumerate(self.weighting)}
        current = self.slot_weights[self.ledger.active]
        if not self._force:
            if now - self._last_rollout < self.settings.min_rollout_interval:
                return
            if current is not None:
                held = {
                    p: tuple(current.get(p, {}).get(m.dip, 0) for m in pool)
                    for p, pool in enumerate(self.pools)
                }
                if skip_reason(
                    held, desired, 1 << self.settings.weight_bits, self.settings.min_weight_change
                ):
                    self.backpressure = None
                    return
        slot = self.ledger.next_slot()
        block = self.ledger.blocker(
            slot,
            now,
            self.settings.quiet_period,
            self.learner.pending_count(slot),
            self.learner.last_digest(slot),
        )
        if block is None and self.learner.full:
            block = f"conn_table full ({self.learner.waiting} connections waiting)"
        if block is not None:
            if self.backpressure is None:
                self._record(now, "fault", what="backpressure", detail=block)
            self.backpressure = block
            self.counters.backpressure += 1
            return
        self.backpressure = None
        self._start_rollout(now, slot=slot)

    def _start_rollout(self, now: float, slot: int) -> None:
        assert self.ledger is not None
        content: dict[BucketKey, DipTarget] = {}
        staged = _Staged({}, {})
        for p, pool in enumerate(self.pools):
            members = [DipTarget(m.ip, m.port) for m in pool]
            weights = self.weighting[p].desired
            previous = self._slot_entries[self.ledger.active].get(p)
            prev = previous[1] if previous and previous[0] == pool.generation else None
            pool_content, entries = pool_buckets(p, members, weights, self.hash_bits, prev)
            content.update(pool_content)
            staged.weights[p] = {m.dip: w for m, w in zip(pool, weights, strict=True)}
            staged.entries[p] = (pool.generation, entries)
        writes = tuple(self.shadow.plan(slot, content))
        plan = RolloutPlan(
            slot,
            self.counters.rollouts + 1,
            writes,
            {p: tuple(w.values()) for p, w in staged.weights.items()},
            now,
        )
        self._staged = staged
        self._force = False
        self.commit_initial = slot == self.ledger.active
        self.commit = CommitProtocol(plan, self.ledger.active)
        self._issue_steps(now, self.commit.begin())

    def _issue_steps(self, now: float, steps: list[Step]) -> None:
        for step in steps:
            if isinstance(step, FlipVersion) and self.journaling:
                self._call("journal", (self.journal(pending=step.slot),), self._journaled(step))
                continue
            method, args = StepCalls.call_for(step)
            self._call(method, args, self._step_handler(step))

    def _journaled(self, step: Step) -> Handler:
        def handle(now: float, ok: bool, value: Any, error: str) -> None:
            if not ok:
                self._record(now, "fault", what="journal", detail=error)
            method, args = StepCalls.call_for(step)
            self._call(method, args, self._step_handler(step))

        return handle

    def _step_handler(self, step: Step) -> Handler:
        def handle(now: float, ok: bool, value: Any, error: str) -> None:
            commit = self.commit
            assert commit is not None
            if isinstance(step, DipWrite):
                if ok:
                    self.shadow.applied(step, int(value) if value is not None else None)
                else:
                    self.shadow.failed(step, error)
            if ok:
                steps = commit.step_done(now, step, value)
            else:
                self.counters.write_failures += 1
                steps = commit.step_failed(now, step, error)
            if isinstance(step, ReadActive) and not ok:
                self._deferred.extend((now + VERIFY_RETRY, s) for s in steps)
                steps = []
            self._issue_steps(now, steps)
            if commit.outcome is not None:
                self._finish_rollout(now, commit.outcome)

        return handle

    def _finish_rollout(self, now: float, outcome: RolloutOutcome) -> None:
        assert self.ledger is not None and self._staged is not None
        self.commit = None
        self.last_outcome = outcome
        self._last_rollout = now
        slot = outcome.plan.slot
        plan_is_initial = self.commit_initial
        self.commit_initial = False
        if not outcome.committed:
            self.counters.rollouts_aborted += 1
            self.slot_weights[slot] = None
            self._slot_entries[slot] = {}
            self._record(
                now, "fault", what="rollout_aborted", detail=f"slot {slot}: {outcome.reason}"
            )
            if plan_is_initial:
                self.boot.fail(f"initial version: {outcome.reason}")
            return
        if plan_is_initial:
            self.boot.settle()
        self.counters.rollouts += 1
        self.ledger.flipped(slot, now)
        self.slot_weights[slot] = self._staged.weights
        self._slot_entries[slot] = self._staged.entries
        self._record(
            now,
            "rollout",
            slot=slot,
            version=outcome.plan.version,
            duration_ms=outcome.duration * 1000.0,
            entries_written=outcome.entries_written,
        )
        for p, pool in enumerate(self.pools):
            self._record(now, "weights", pool=pool.vip.name, weights=self._staged.weights[p])
        if self.journaling:
            self._call("journal", (self.journal(pending=None),), lambda *_: None)

    def _reclaim(self, now: float) -> None:
        """Warm start without a usable journal: clear dip_table and roll out a known version."""
        self._reclaim_at = None

        def cleared(now: float, ok: bool, value: Any, error: str) -> None:
            if not ok:
                self._record(now, "fault", what="reclaim", detail=error)
                self._reclaim_at = now + self.settings.min_rollout_interval
                return
            self.shadow.forget()
            self.slot_weights = [None] * self.slots
            self._slot_entries = [{} for _ in range(self.slots)]
            self._force = True

        self._record(now, "phase", name="reclaim dip_table")
        self._call("table_clear", ("dip_table",), cleared)

    def _run_deferred(self, now: float) -> None:
        due = [s for t, s in self._deferred if t <= now]
        self._deferred = [(t, s) for t, s in self._deferred if t > now]
        self._issue_steps(now, due)

    # -- lifecycle helpers

    def _drain_count(self, now: float) -> Callable[[str], int]:
        assert self.ledger is not None
        ledger = self.ledger
        referenced: set[str] = set()
        for slot, weights in enumerate(self.slot_weights):
            in_use = slot == ledger.active or ledger.blocker(
                slot,
                now,
                self.settings.quiet_period,
                self.learner.pending_count(slot),
                self.learner.last_digest(slot),
            )
            if weights is not None and in_use:
                referenced.update(d for pool in weights.values() for d, w in pool.items() if w > 0)
        return lambda dip: self.learner.dip_connections(dip) + (1 if dip in referenced else 0)

    def _drained(self, now: float, finished: DrainFinished) -> None:
        dip = finished.member.dip
        self._record(
            now, "phase", name=f"{dip} drained{' (timed out)' if finished.timed_out else ''}"
        )
        if not finished.removed:
            return
        self.counters.members_removed += 1
        self.removed.append(dip)
        handle = self._reverse.pop(dip, None)
        if handle is not None:
            self._call("table_delete", ("dip_reverse", handle), lambda *_: None)

    def _add_reverse(self, pool: BackendPool, ip: str, port: int, *, boot: bool) -> None:
        dip = f"{ip}:{port}"
        vip = pool.vip
        args = (
            "dip_reverse",
            "rewrite_src",
            [ip, str(port), str(vip.protocol_number)],
            [vip.ip, str(vip.port)],
        )

        def done(now: float, ok: bool, value: Any, error: str) -> None:
            if ok:
                self._reverse[dip] = int(value)
            elif "duplicate" in error.lower():
                self._reverse[dip] = None
            else:
                self._record(now, "fault", what="dip_reverse", detail=error)

        if boot:
            self._boot_call("table_add", args, done)
        else:
            self._call("table_add", args, done)

    # -- plumbing

    def _boot_call(self, method: str, args: tuple[Any, ...], then: Handler | None = None) -> None:
        self.boot.expect()

        def handle(now: float, ok: bool, value: Any, error: str) -> None:
            if then is not None:
                then(now, ok, value, error)
            if ok or "duplicate" in error.lower():
                self.boot.settle()
            else:
                self.boot.fail(f"{method}{args!r}: {error}")

        self._call(method, args, handle)

    def _call(self, method: str, args: tuple[Any, ...], handler: Handler) -> None:
        self._calls.call(method, args, handler)

    def _flush(self, now: float) -> list[SwitchCall]:
        for op in self.learner.due(now):
            learning_call(self._calls, self.learner, op)
        return self._calls.take()

    def _record(self, now: float, kind: str, **fields: Any) -> None:
        self._records.append(RecordEvent(now, kind, fields))

    def journal(self, pending: int | None) -> dict[str, Any]:
        """The state journal: enough to adopt dip_table after a restart."""
        assert self.ledger is not None
        weights = list(self.slot_weights)
        if pending is not None and self._staged is not None:
            weights[pending] = self._staged.weights
        return {
            "active": self.ledger.active,
            "pending": pending,
            "shadow": self.shadow.to_json(),
            "slot_weights": [
                None if w is None else {str(p): d for p, d in w.items()} for w in weights
            ],
        }
