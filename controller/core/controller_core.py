"""The controller's pure core: inputs and `now` in, switch calls and records out.

The shell (controller.shell.app) feeds digests, ageing notices, loads, clock ticks and the
outcome of
every call it made; the core answers with `SwitchCall`s (a SwitchClient method name and its
arguments, tagged with a token the shell hands back with the outcome). Nothing here does I/O.

Start-up (`bootstrap`) depends on what the switch already holds:
- cold (conn_table and dip_table empty): program VIPs, the return path, routes, reset every
  Bloom filter, write the initial version into slot `active_version` and flip to it;
- warm (the switch kept its state): keep every table (clearing conn_table would break each
  connection whose slot was rewritten since it started); re-add VIPs, return path and routes
  (duplicates are fine); adopt conn_table entries lazily (a duplicate on add counts as
  installed; idle notices for unknown handles are deleted after a grace); hold slot reuse for
  `restart_hold` seconds so connections that began while no controller listened re-raise
  digests and get installed. dip_table comes from the state journal when it matches the switch
  (active slot and entry count); otherwise the core clears dip_table after the hold and at once
  rolls out a fresh version. The cost of restarting without a journal: packets that reach
  dip_table between the clear and the flip are dropped (a new connection's first packet is
  retried by the client; a connection whose entry is still on its way keeps the DIP its digest
  reported once the entry lands). No packet is sent to a different DIP.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from controller.config import Config, DipConfig
from controller.core.core_support import (
    ActivityRecords,
    BootTracker,
    CallQueue,
    DigestLike,
    FaultThrottle,
    Handler,
    JournalError,
    JournalState,
    RecordEvent,
    RouteEntry,
    SwitchCall,
    SwitchView,
    digest_problem,
    learning_call,
    parse_journal,
)
from controller.core.learning import ConnectionLearner, ConnKey
from controller.core.pools import BackendPool, DrainFinished
from controller.core.shadow import DipTarget
from controller.core.versions import VersionSlots
from controller.core.weighting import MemberLoad, PoolAutoscaling, PoolWeighting

BOOT_ATTEMPTS = 5

__all__ = ["ControllerCore", "DigestLike", "RecordEvent", "RouteEntry", "SwitchCall", "SwitchView"]


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
        dip_table_size: int = 16384,
        routes: Sequence[RouteEntry] = (),
        journaling: bool = False,
    ) -> None:
        self.config = config
        self.settings = config.controller
        self.slots = slots
        self.routes = tuple(routes)
        name = policy_name or self.settings.policy
        self.pools = [BackendPool(i, vip) for i, vip in enumerate(config.vips)]
        self.weighting = [
            PoolWeighting(p, name, config.policy_params, self.settings.weight_bits)
            for p in self.pools
        ]
        self.autoscaling = (
            [PoolAutoscaling(p, config.autoscale) for p in self.pools]
            if config.autoscale.enabled
            else []
        )
        self.learner = ConnectionLearner(
            capacity=conn_capacity,
            tcp_idle_timeout=self.settings.tcp_idle_timeout,
            udp_idle_timeout=self.settings.udp_idle_timeout,
            teardown_linger=self.settings.teardown_linger,
        )
        self.boot = BootTracker()
        self._calls = CallQueue()
        self.versions = VersionSlots(
            self.settings,
            hash_bits=hash_bits,
            slots=slots,
            pools=self.pools,
            desired=self.desired,
            calls=self._calls,
            record=self._record,
            boot=self.boot,
            journaling=journaling,
            dip_table_size=dip_table_size,
        )
        self.removed: list[str] = []
        self.members_removed = 0
        self._records: list[RecordEvent] = []
        self._activity = ActivityRecords()
        self._next_policy = -math.inf
        self._reverse: dict[str, int | None] = {}
        self.digest_faults: Counter[str] = Counter()
        self._faults = FaultThrottle()
        self._vip_generations: tuple[int, ...] = ()
        self._vips: dict[tuple[str, int, int], frozenset[str]] = {}

    def desired(self) -> dict[int, tuple[int, ...]]:
        """The weights each pool's policy asks for now (member order)."""
        return {p: w.current() for p, w in enumerate(self.weighting)}

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
            keys = [vip.ip, str(vip.port), str(vip.protocol_number)]
            self._boot_call("table_add", ("vip_table", "set_pool", keys, [str(pool.pool_id)]))
            for member in pool:
                self._add_reverse(pool, member.ip, member.port, boot=True)
        if cold:
            for slot in range(self.slots):
                if slot != active:
                    self._boot_call("register_reset", (f"bloom_{slot}",))
            self.versions.attach_cold(now, active)
            return self._flush(now)
        assert view is not None
        self.learner.adopt_foreign(view.conn_entries)
        adopted = self._read_journal(now, journal, active, view.dip_entries)
        self.versions.attach_warm(now, active, adopted, view.dip_entries)
        for src, dst, sport, dport, proto, version, dip_ip, dip_port in (
            adopted.unsettled if adopted else ()
        ):
            key = ConnKey(src, dst, sport, dport, proto)
            self.learner.on_new_conn(now, key, version % self.slots, DipTarget(dip_ip, dip_port))
        used = "adopted" if adopted else "not used"
        self._record(now, "phase", name=f"warm start: active slot {active}, journal {used}")
        return self._flush(now)

    def _read_journal(
        self, now: float, journal: Mapping[str, Any] | None, active: int, dip_entries: int
    ) -> JournalState | None:
        if journal is None:
            return None
        try:
            state = parse_journal(journal, self.slots)
        except JournalError as exc:
            self._record(now, "fault", what="journal", detail=str(exc))
            return None
        if not state.matches(active, dip_entries):
            detail = (
                f"journal (active {state.active}, {state.shadow.size()} entries) does not match"
            )
            self._record(now, "fault", what="journal", detail=detail)
            return None
        return state

    def journal_at_stop(self, now: float) -> dict[str, Any] | None:
        """The journal a clean stop leaves (None while a rollout is in flight: keep the last)."""
        if self.versions.ledger is None or self.versions.commit is not None:
            return None
        data = self.versions.journal(pending=None)
        data["stopped_at"] = now
        data["unsettled"] = [
            [
                c.key.src,
                c.key.dst,
                c.key.sport,
                c.key.dport,
                c.key.protocol,
                c.version,
                c.dip.ip,
                c.dip.port,
            ]
            for c in self.learner.unsettled()
        ]
        return data

    @property
    def started(self) -> bool:
        """Whether start-up writes are all acknowledged (and the first version is live, if cold)."""
        return self.boot.done and self.boot.failure is None and self.versions.ledger is not None

    # -- inputs

    def tick(self, now: float, loads: Mapping[str, MemberLoad]) -> list[SwitchCall]:
        """Periodic work: policy, lifecycle, rollouts, retries and timers."""
        if self.versions.ledger is None or not self.boot.done:
            return self._flush(now)
        referenced = self.versions.referenced(now, self.learner)

        def connections(dip: str) -> int:
            return self.learner.dip_connections(dip) + (dip in referenced)

        for pool in self.pools:
            settle = self.settings.quiet_period
            for finished in pool.tick(now, connections, self.settings.drain_timeout, settle):
                self._drained(now, finished)
        if now >= self._next_policy:
            self._next_policy = now + self.settings.report_interval
            self._autoscale(now, loads)
            for weighting in self.weighting:
                weighting.update(now, loads)
        self.versions.step(now, self.learner)
        self._records.extend(self._activity.collect(now, self.learner.counters, self.pools))
        return self._flush(now)

    def on_digest(self, now: float, digest: DigestLike) -> list[SwitchCall]:
        """A digest from the data plane (malformed or impossible ones are counted and dropped)."""
        problem = digest_problem(digest, self.slots, self._vip_members())
        if problem is not None:
            reason, detail = problem
            self.digest_faults[reason] += 1
            record = self._faults.note(now, f"digest_{reason}", detail)
            if record is not None:
                self._records.append(record)
            if reason != "unknown_dip":
                return self._flush(now)
        key = ConnKey(
            digest.src_ip, digest.dst_ip, digest.src_port, digest.dst_port, digest.protocol
        )
        if digest.kind == "new_conn":
            dip = DipTarget(digest.dip_ip, digest.dip_port)
            self.learner.on_new_conn(now, key, digest.version, dip)
        elif digest.kind == "teardown":
            self.learner.on_teardown(now, key)
        return self._flush(now)

    def _vip_members(self) -> dict[tuple[str, int, int], frozenset[str]]:
        generations = tuple(pool.generation for pool in self.pools)
        if generations != self._vip_generations:
            self._vip_generations = generations
            self._vips = {
                (p.vip.ip, p.vip.port, p.vip.protocol_number): frozenset(m.dip for m in p)
                for p in self.pools
            }
        return self._vips

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

    def take_removed(self) -> list[str]:
        """DIPs that left their pool since the last call (the shell stops tracking their load)."""
        out, self.removed = self.removed, []
        return out

    # -- member lifecycle

    def _autoscale(self, now: float, loads: Mapping[str, MemberLoad]) -> None:
        for scaling in self.autoscaling:
            activate, drain = scaling.decide(now, loads)
            for dip in activate:
                scaling.pool.activate(now, dip)
                self._record(now, "phase", name=f"autoscale: activate {dip}")
            for dip in drain:
                scaling.pool.drain(now, dip, remove=False)
                self._record(now, "phase", name=f"autoscale: drain {dip}")

    def pool_of(self, dip: str) -> int:
        """The pool a DIP belongs to; KeyError if none."""
        for pool in self.pools:
            if any(m.dip == dip for m in pool):
                return pool.pool_id
        raise KeyError(dip)

    def drain_member(self, now: float, dip: str, *, remove: bool) -> None:
        """Drain a member (weight 0 from the next rollout); with `remove` it leaves once drained."""
        self.pools[self.pool_of(dip)].drain(now, dip, remove=remove)
        self._next_policy = now

    def activate_member(self, now: float, dip: str) -> None:
        """Let a member take new connections."""
        self.pools[self.pool_of(dip)].activate(now, dip)
        self._next_policy = now

    def add_member(self, now: float, pool: int, dip: DipConfig) -> list[SwitchCall]:
        """Add a member to a pool and program its return path."""
        member = self.pools[pool].add(now, dip)
        self._add_reverse(self.pools[pool], member.ip, member.port, boot=False)
        self._next_policy = now
        return self._flush(now)

    def _drained(self, now: float, finished: DrainFinished) -> None:
        dip = finished.member.dip
        note = " (timed out)" if finished.timed_out else ""
        self._record(now, "phase", name=f"{dip} drained{note}")
        if not finished.removed:
            return
        self.members_removed += 1
        self.removed.append(dip)
        # The member list changed: re-run the policy in this very tick (a fresh policy over the
        # remaining members) rather than up to report_interval later.
        self._next_policy = now
        handle = self._reverse.pop(dip, None)
        if handle is not None:
            self._calls.call("table_delete", ("dip_reverse", handle), lambda *_: None)

    def _add_reverse(self, pool: BackendPool, ip: str, port: int, *, boot: bool) -> None:
        dip = f"{ip}:{port}"
        vip = pool.vip
        keys = [ip, str(port), str(vip.protocol_number)]
        args = ("dip_reverse", "rewrite_src", keys, [vip.ip, str(vip.port)])

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
            self._calls.call("table_add", args, done)

    # -- plumbing

    def _boot_call(
        self, method: str, args: tuple[Any, ...], then: Handler | None = None, attempt: int = 1
    ) -> None:
        if attempt == 1:
            self.boot.expect()

        def handle(now: float, ok: bool, value: Any, error: str) -> None:
            if ok or "duplicate" in error.lower():
                if then is not None:
                    then(now, ok, value, error)
                self.boot.settle()
            elif attempt < BOOT_ATTEMPTS:
                self._boot_call(method, args, then, attempt + 1)
            else:
                self.boot.fail(f"{method}{args!r}: {error}")

        self._calls.call(method, args, handle)

    def _flush(self, now: float) -> list[SwitchCall]:
        for op in self.learner.due(now):
            learning_call(self._calls, self.learner, op)
        return self._calls.take()

    def _record(self, now: float, kind: str, **fields: Any) -> None:
        self._records.append(RecordEvent(now, kind, fields))
