"""The controller's pure core: inputs and `now` in, typed operations and records out.

The shell (controller.shell.app) feeds digests, ageing notices, loads, clock ticks and the
`Outcome` of every operation it executed; the core answers with operations (controller.core.ops)
tagged with the component that owns them, and routes each outcome back to that component:
start-up writes (`StartUp`), return paths (`ReturnPaths`), learning (`ConnectionLearner`),
client pins of affinity VIPs (`ClientAffinity`), rollouts and reclaims (`Rollouts`). Nothing here
does I/O.

Start-up (`bootstrap`) depends on what the switch already holds:
- cold (conn_table and dip_table empty): program VIPs, the return path, routes; give every
  slot a fresh epoch (one version_config write), write the initial version into the active slot
  and write version_config again with it (controller.core.epochs: epochs continue above what
  the switch and the journal have seen, so none is reused);
- warm (the switch kept its state): keep every table (clearing conn_table would break each
  connection whose slot was rewritten since it started); re-add VIPs, return path and routes
  (duplicates are fine); adopt conn_table entries lazily (a duplicate on add counts as
  installed; idle notices for unknown handles are deleted after a grace); hold slot reuse for
  `restart_hold` seconds so connections that began while no controller listened re-raise
  digests and get installed. dip_table comes from the state journal when it matches the switch
  (active slot and entry count); either way the epoch counter continues above the epochs the
  switch's version_config and the journal show. Without a matching journal the core clears
  dip_table after the hold and at once
  rolls out a fresh version. The cost of restarting without a journal: packets that reach
  dip_table between the clear and the flip are dropped (a new connection's first packet is
  retried by the client; a connection whose entry is still on its way keeps the DIP its digest
  reported once the entry lands). No packet is sent to a different DIP.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence

from controller.config import (
    Config,
    ConfigError,
    DipConfig,
    policy_problem,
)
from controller.core.affinity import ClientAffinity
from controller.core.digests import VipKey, digest_problem
from controller.core.epochs import VersionConfig
from controller.core.journal import Journal, JournalError, UnsettledConnection
from controller.core.learning import ConnectionLearner, ConnKey
from controller.core.loadbook import DipLoad
from controller.core.membership import Membership
from controller.core.ops import Op, Outcome, Owner, TableRead
from controller.core.pools import BackendPool, DrainFinished
from controller.core.records import ActivityRecords, FaultThrottle, RecordEvent, RecordLog
from controller.core.reload import ReloadPlan
from controller.core.return_paths import ReturnPaths
from controller.core.rollouts import Rollouts
from controller.core.shadow import DipTarget
from controller.core.startup import StartUp, SwitchView
from controller.core.view import CoreView, MemberView, PoolView
from controller.core.watch import SwitchWatch
from controller.routing import Route
from p4src.contract import Digest, Settings
from policy import PolicyError
from policy.autoscale import MemberState

__all__ = ["ControllerCore", "RecordEvent", "SwitchView"]


class ControllerCore:
    """Decides every write: learning, rollouts, member lifecycle."""

    def __init__(
        self,
        config: Config,
        dataplane: Settings,
        *,
        policy_name: str | None = None,
        routes: Sequence[Route] = (),
        journaling: bool = False,
    ) -> None:
        self.config = config
        self.settings = config.controller
        self.slots = dataplane.version_slots
        self.routes = tuple(routes)
        name = policy_name or self.settings.policy
        self._records = RecordLog()
        self.membership = Membership(config, name, self._records)
        self.pools = self.membership.pools
        self.learner = ConnectionLearner(
            capacity=dataplane.conn_table_size,
            tcp_idle_timeout=self.settings.tcp_idle_timeout,
            udp_idle_timeout=self.settings.udp_idle_timeout,
            teardown_linger=self.settings.teardown_linger,
        )
        self.startup = StartUp(self._records)
        self.watch = SwitchWatch(self.settings.switch_check_interval)
        self.affinity = ClientAffinity(
            dataplane.affinity_table_size,
            {
                (v.ip, v.port, v.protocol_number): v.affinity_timeout
                for v in config.vips
                if v.pins_clients
            },
            self._records,
        )
        self.return_paths = ReturnPaths(self._records)
        self.rollouts = Rollouts(
            self.settings,
            hash_bits=dataplane.hash_bits,
            slots=self.slots,
            table_size=dataplane.dip_table_size,
            pools=self.pools,
            records=self._records,
            journaling=journaling,
        )
        self.removed: list[str] = []
        self.members_removed = 0
        self._activity = ActivityRecords()
        self._next_policy = -math.inf
        self.digest_faults: Counter[str] = Counter()
        self._faults = FaultThrottle()
        self._vip_generations: tuple[int, ...] = ()
        self._vips: dict[VipKey, frozenset[str]] = {}
        self._running = False
        self.expected_reporters: frozenset[str] = frozenset()
        """DIPs whose agents reported to the previous controller (from its journal): the load
        book holds them down until they report again."""
        self._reporters: set[str] = set()

    def desired(self) -> dict[int, tuple[int, ...]]:
        """The weights each pool's policy asks for now, by pool id (member order)."""
        return self.membership.desired()

    # -- start-up

    def bootstrap(self, now: float, view: SwitchView, journal: object | None = None) -> list[Op]:
        """Program the switch (cold) or adopt it (warm); see the module docstring.

        `journal` is the state journal's JSON document, if the shell found one.
        """
        entry = view.versions
        try:
            config = VersionConfig.from_entry(entry.action, entry.params, self.slots)
        except ValueError as exc:
            self.startup.failure = f"not our program? {exc}"
            return []
        active = config.active
        ops = self.membership.adopt(now, view.vip_entries)
        ops.extend(self.startup.program(self.routes, self.pools))
        ops.extend(
            self.return_paths.add(pool, m.ip, m.port, boot=True)
            for pool in self.pools
            for m in pool
        )
        last_epoch = self._journaled_epoch(journal)
        if view.cold:
            ops.extend(self.rollouts.attach_cold(now, config, self.desired(), last_epoch))
            return ops + self._flush(now)
        self.learner.adopt_foreign(view.conn_entries)
        adopted = self._read_journal(now, journal)
        ops.extend(self.rollouts.attach_warm(now, config, adopted, view.dip_entries, last_epoch))
        for conn in adopted.unsettled if adopted else ():
            self.learner.on_new_conn(now, conn.key, conn.version, conn.dip)
        used = "read" if adopted else "not used"
        self._records.add(now, "phase", name=f"warm start: active slot {active}, journal {used}")
        return ops + self._flush(now)

    def _journaled_epoch(self, document: object | None) -> int:
        """The last epoch a journal records, even one not adopted (0 without a readable one)."""
        if document is None:
            return 0
        try:
            return Journal.from_json(document, self.slots).last_epoch
        except JournalError:
            return 0

    def _read_journal(self, now: float, document: object | None) -> Journal | None:
        if document is None:
            return None
        try:
            journal = Journal.from_json(document, self.slots)
        except JournalError as exc:
            self._records.fault(now, "journal", str(exc))
            return None
        # Liveness holds whatever the switch holds: a DIP that had an agent stays down until
        # the agent reports to this controller.
        self.expected_reporters = frozenset(journal.reporters)
        self._reporters.update(journal.reporters)
        return journal

    def journal_at_stop(self, now: float) -> Journal | None:
        """The journal a clean stop leaves (None while a rollout is in flight: keep the last)."""
        unsettled = [UnsettledConnection(c.key, c.version, c.dip) for c in self.learner.unsettled()]
        return self.rollouts.journal_at_stop(now, unsettled)

    @property
    def boot_settled(self) -> bool:
        """Whether every start-up write is settled (written, or failed for good)."""
        return self.boot_failure is not None or (
            self.startup.done and self.return_paths.booted and self.rollouts.initial_done
        )

    @property
    def boot_failure(self) -> str | None:
        """Why start-up failed, if it did."""
        return self.startup.failure or self.return_paths.failure or self.rollouts.failure

    @property
    def started(self) -> bool:
        """Whether start-up writes were all acknowledged (and the first version went live, if
        cold); once true it stays true, through any later reprogramming."""
        if not self._running:
            self._running = self.boot_settled and self.boot_failure is None
        return self._running

    # -- inputs

    def policy_due(self, now: float) -> bool:
        """Whether a tick at `now` runs the policy (and so reads the loads)."""
        return now >= self._next_policy

    def tick(self, now: float, loads: Mapping[str, DipLoad]) -> list[Op]:
        """Periodic work: policy, lifecycle, rollouts, retries and timers."""
        if self.rollouts.ledger is None or not self.started:
            return self._flush(now)
        referenced = self.rollouts.table.referenced(now, self.learner)

        def connections(dip: str) -> int:
            return self.learner.dip_connections(dip) + (dip in referenced)

        ops: list[Op] = []
        for pool in self.pools:
            settle = self.settings.quiet_period
            for finished in pool.tick(now, connections, self.settings.drain_timeout, settle):
                ops.extend(self._drained(now, finished))
        if now >= self._next_policy:
            self._next_policy = now + self.settings.report_interval
            # Pins follow the DIPs that may take new connections: not drained, standby or down.
            self.affinity.retire(
                m.dip
                for pool in self.pools
                for m in pool
                if m.state is not MemberState.ACTIVE
                or ((load := loads.get(m.dip)) is not None and not load.live)
            )
            self.membership.update(now, loads)
            self._reporters.update(dip for dip, load in loads.items() if load.reported)
            ops.extend(self.rollouts.note_reporters(frozenset(self._reporters)))
        # A VIP waits for every version to hold its pool: roll out until they all do.
        force = any(not self._served(p) for p in self.membership.vip_changes.waiting)
        ramping = self.membership.ramping(now)
        ops.extend(
            self.rollouts.step(now, self.desired(), self.learner, force=force, ramping=ramping)
        )
        if self.startup.done:  # not while reprogramming: a partial vip_table is expected then
            ops.extend(self.membership.vip_changes.due(self._served))
            ops.extend(self.watch.due(now))
        self._forget_pools()
        self._records.extend(self._activity.collect(now, self.learner.counters, self.pools))
        return ops + self._flush(now)

    def on_digest(self, now: float, digest: Digest) -> list[Op]:
        """A digest from the data plane (malformed or impossible ones are counted and dropped)."""
        problem = digest_problem(digest, self.slots, self._vip_members())
        if problem is not None:
            reason, detail = problem
            self.digest_faults[reason] += 1
            record = self._faults.note(now, f"digest_{reason}", detail)
            if record is not None:
                self._records.extend([record])
            if reason != "unknown_dip":
                return self._flush(now)
        key = ConnKey(
            digest.src_ip, digest.dst_ip, digest.src_port, digest.dst_port, digest.protocol
        )
        if digest.kind == "new_conn":
            dip = DipTarget(digest.dip_ip, digest.dip_port)
            self.learner.on_new_conn(now, key, digest.version, dip)
            if self.affinity.serves((key.dst, key.dport, key.protocol)):
                self.affinity.on_new_conn(now, key, dip, self.membership.takes_new(dip.name))
        else:
            self.learner.on_teardown(now, key)
        return self._flush(now)

    def _vip_members(self) -> dict[VipKey, frozenset[str]]:
        generations = tuple(pool.generation for pool in self.pools)
        if generations != self._vip_generations:
            self._vip_generations = generations
            self._vips = {
                (p.vip.ip, p.vip.port, p.vip.protocol_number): frozenset(m.dip for m in p)
                for p in self.pools
            }
        return self._vips

    def on_aged(self, now: float, handles: Sequence[int]) -> list[Op]:
        """conn_table handles the switch reports idle."""
        self.learner.on_aged(now, handles)
        return self._flush(now)

    def on_outcome(self, now: float, outcome: Outcome) -> list[Op]:
        """The outcome of an operation this core emitted, handled by the component that owns it."""
        owner = outcome.op.owner
        ops: list[Op]
        if owner is Owner.LEARNING:
            self.learner.on_outcome(now, outcome)
            ops = self._refill(now) if isinstance(outcome.op, TableRead) else []
        elif owner is Owner.ROLLOUT:
            ops = self.rollouts.on_outcome(now, outcome)
        elif owner is Owner.RECLAIM:
            ops = self.rollouts.on_reclaim_outcome(now, outcome)
        elif owner is Owner.AFFINITY:
            self.affinity.on_outcome(now, outcome)
            ops = []
        elif owner is Owner.RETURN_PATH:
            ops = self.return_paths.on_outcome(now, outcome)
        elif owner is Owner.VIPS:
            ops = self.membership.vip_changes.on_outcome(now, outcome)
            self._forget_pools()
        elif owner is Owner.WATCH:
            expected = len(self.pools) - self.membership.vip_changes.absent
            lost = self.watch.on_outcome(now, outcome, expected=expected)
            ops = self._reprogram(now) if lost else []
        else:
            ops = self.startup.on_outcome(now, outcome)
        return ops + self._flush(now)

    def _reprogram(self, now: float) -> list[Op]:
        """The switch lost its state: write everything this controller knows again. First
        conn_table is read back (`_refill` follows its outcome)."""
        known = len(self.learner)
        self._records.add(
            now, "phase", name=f"switch lost its state: reprogramming ({known} connections known)"
        )
        self.startup.reprogramming = True
        self.rollouts.switch_lost()
        self.membership.vip_changes.switch_lost()
        return self.learner.switch_lost()

    def _refill(self, now: float) -> list[Op]:
        """conn_table is known: every connection's entry goes in before the VIPs do (a switch
        applies writes in order), so no packet of a known connection can meet a VIP without
        its entry and be hashed afresh. Then routes, VIPs and return paths."""
        ops = self.learner.due(now)
        self.affinity.switch_lost()  # start-up clears affinity_table below
        ops.extend(self.startup.program(self.routes, self.pools))
        ops.extend(self.return_paths.reprogram(self.pools))
        return ops

    def take_records(self) -> list[RecordEvent]:
        """Records produced since the last call."""
        return self._records.take()

    def take_removed(self) -> list[str]:
        """DIPs that left their pool since the last call (the shell stops tracking their load)."""
        out, self.removed = self.removed, []
        return out

    def view(self) -> CoreView:
        """A read-only picture of the core now."""
        ledger = self.rollouts.ledger
        held = self.rollouts.table.weights[ledger.active] if ledger is not None else None
        weighting = self.membership.weighting
        learning = dataclasses.replace(self.learner.counters)
        learning.by_dip = Counter(learning.by_dip)
        return CoreView(
            policy=weighting[0].policy_name if weighting else "",
            policy_params=dict(weighting[0].params) if weighting else {},
            started=self.started,
            active_slot=None if ledger is None else ledger.active,
            backpressure=self.rollouts.backpressure,
            learning=learning,
            rollouts=dataclasses.replace(self.rollouts.counters),
            affinity=dataclasses.replace(self.affinity.counters),
            affinity_entries=self.affinity.entries,
            digest_faults=dict(self.digest_faults),
            conn_entries=self.learner.in_use,
            conn_table_full=self.learner.full,
            members_removed=self.members_removed,
            switch_losses=self.watch.losses,
            pools=tuple(
                PoolView(
                    pool.vip.name,
                    tuple(
                        MemberView(
                            m.dip, m.state, w, (held or {}).get(pool.pool_id, {}).get(m.dip, 0)
                        )
                        for m, w in zip(pool, weighting.current(), strict=False)
                    ),
                )
                for pool, weighting in zip(self.pools, self.membership.weighting, strict=True)
            ),
        )

    # -- member lifecycle

    def pool_of(self, dip: str) -> int:
        """The pool a DIP belongs to; KeyError if none."""
        return self.membership.pool_of(dip)

    def pool_named(self, vip: str) -> int:
        """The pool of the VIP called `vip` in the configuration; KeyError if none."""
        return self.membership.pool_named(vip)

    def pool_by_id(self, pool_id: int) -> BackendPool:
        """The pool with id `pool_id`; KeyError if none."""
        return self.membership.pool_by_id(pool_id)

    def drain_member(self, now: float, dip: str, *, remove: bool, pool: int | None = None) -> None:
        """Drain a member (weight 0 from the next rollout); with `remove` it leaves once drained."""
        self.membership.member_pool(dip, pool).drain(now, dip, remove=remove)
        self._next_policy = now

    def standby_member(self, now: float, dip: str, *, pool: int | None = None) -> None:
        """Put a member on standby (draining first if it is active)."""
        self.membership.member_pool(dip, pool).standby(now, dip)
        self._next_policy = now

    def undrain_member(self, now: float, dip: str, *, pool: int | None = None) -> None:
        """Return a draining or standby member to service."""
        self.membership.member_pool(dip, pool).undrain(now, dip)
        self._next_policy = now

    def activate_member(self, now: float, dip: str, *, pool: int | None = None) -> None:
        """Let a member take new connections."""
        self.membership.member_pool(dip, pool).activate(now, dip)
        self._next_policy = now

    def set_policy(self, now: float, name: str, params: Mapping[str, float]) -> None:
        """Switch every pool to policy `name` in place, each seeded with its current weights (no
        slot is reset; weights move at the next rollouts, rate-limited and dead-banded as ever).
        PolicyError, with nothing changed, for an unknown name or bad parameters."""
        problem = policy_problem(name, params)
        if problem is not None:
            raise PolicyError(problem)
        self.membership.switch_policy(name, params)
        self._records.add(now, "phase", name=f"policy {name}")
        self._next_policy = now

    def add_member(self, now: float, pool: int, dip: DipConfig) -> list[Op]:
        """Add a member to a pool and program its return path."""
        member = self.membership.add_member(now, pool, dip)
        self._next_policy = now
        return [self.return_paths.add(self.pool_by_id(pool), member.ip, member.port, boot=False)]

    # -- declarative reload

    def reload(self, now: float, plan: ReloadPlan) -> list[Op]:
        """Apply a reload (controller.core.reload) in one step: settings and policy at once,
        new VIPs and members into service (slow start), removed ones drained and then gone.
        ConfigError, with nothing applied, if the running state refuses part of it."""
        problems = self.membership.problems(plan)
        if plan.policy is not None and (problem := policy_problem(*plan.policy)) is not None:
            problems.append(f"policy: {problem}")
        if problems:
            raise ConfigError(problems)
        config = plan.config
        self.config, self.settings = config, config.controller
        self.rollouts.configure(config.controller)
        self.learner.tcp_idle_timeout = config.controller.tcp_idle_timeout
        self.learner.udp_idle_timeout = config.controller.udp_idle_timeout
        self.learner.teardown_linger = config.controller.teardown_linger
        self.watch.interval = config.controller.switch_check_interval
        self.membership.configure(config.controller)
        joined = self.membership.reload(now, plan)
        for vip in (*plan.added_vips, *plan.retimed_vips):
            if vip.pins_clients:
                key = (vip.ip, vip.port, vip.protocol_number)
                self.affinity.timeouts[key] = vip.affinity_timeout
        for line in plan.summary():
            self._records.add(now, "phase", name=f"reload: {line}")
        self._next_policy = now
        ops: list[Op] = [
            self.return_paths.add(pool, m.ip, m.port, boot=False) for pool, m in joined
        ]
        return ops + self._flush(now)

    def _served(self, pool_id: int) -> bool:
        """Whether every version the switch holds has weights for a pool. Only then may its VIP
        go in: a new connection whose flow hash is a Bloom false positive of an older slot
        takes that slot's version, which must not lack the pool (its packets would be dropped
        until the slot is rewritten)."""
        held = [w for w in self.rollouts.table.weights if w is not None]
        return bool(held) and all(any(w.get(pool_id, {}).values()) for w in held)

    def _forget_pools(self) -> None:
        """Pools whose VIP left the switch: nothing of them stays."""
        for pool in self.membership.forget(self.membership.vip_changes.take_deleted()):
            vip = pool.vip
            self.affinity.timeouts.pop((vip.ip, vip.port, vip.protocol_number), None)

    def _drained(self, now: float, finished: DrainFinished) -> list[Op]:
        dip = finished.member.dip
        note = " (timed out)" if finished.timed_out else ""
        self._records.add(now, "phase", name=f"{dip} drained{note}")
        if not finished.removed:
            return []
        self.members_removed += 1
        self.removed.append(dip)
        # The member list changed: re-run the policy in this very tick (a fresh policy over the
        # remaining members) rather than up to report_interval later.
        self._next_policy = now
        return self.return_paths.remove(dip)

    def _flush(self, now: float) -> list[Op]:
        ops = self.learner.due(now)
        self.affinity.on_ended(now, self.learner.take_ended())
        return ops + self.affinity.due(now)
