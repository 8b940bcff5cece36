"""The controller's Twisted shell: wires the switch client, load book, core, timers and outputs.

`ControllerService` carries out every operation the pure core (controller.core) emits, on the
`SwitchClient` (controller.switch.execute) or, for the state journal, on its file; hands each
`Outcome` back to the core; delivers digests and ageing notices; ticks the core on the
reactor's clock; and writes records (Recorder) and counters (Metrics) from the core's read-only
view. Load reports arrive through a LoadFeed (ZeroMQ) or in-process with `ingest_report`, which
the demo's simulation uses with a `task.Clock`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from twisted.internet import defer, task
from twisted.python.failure import Failure

from controller.config import Config, ConfigError, DipConfig
from controller.core.controller_core import ControllerCore, RecordEvent, SwitchView
from controller.core.loadbook import IngestResult, LoadBook
from controller.core.ops import ErrorKind, JournalWrite, Op, Outcome, Owner, SwitchOp, TableRead
from controller.core.records import FaultThrottle
from controller.core.reload import ReloadPlan, plan_reload
from controller.core.view import CoreView
from controller.routing import Route
from controller.shell.exports import declare, member_samples
from controller.shell.metrics import Metrics
from controller.shell.record import Recorder
from controller.switch.api import Digest, SwitchClient, SwitchError, TimeReactor
from p4src.contract import (
    CONN_TABLE,
    DIP_TABLE,
    VERSION_CONFIG,
    VIP_TABLE,
    Settings,
    load_settings,
)

log = logging.getLogger("controller")
METRICS_INTERVAL = 1.0
SWITCH_RETRY_FIRST = 0.5
"""Seconds before the first retry of an unreachable switch at start (doubling up to the max)."""
SWITCH_RETRY_MAX = 8.0
PRIMARY_POLL = 0.25
"""Seconds between two looks of a backup at whether the switch made it primary."""


class ControllerError(Exception):
    """The controller could not start (the switch refused its start-up writes)."""


class ControllerService:
    """One running controller bound to one switch."""

    def __init__(  # noqa: PLR0917 - signature fixed by the contracts
        self,
        reactor: TimeReactor,
        config: Config,
        switch: SwitchClient,
        clock: Callable[[], float] | None = None,
        recorder: Recorder | None = None,
        metrics: Metrics | None = None,
        *,
        policy_name: str | None = None,
        routes: Sequence[Route] = (),
        dataplane: Settings | None = None,
        state_path: Path | None = None,
        tick_interval: float = 0.05,
        switch_timeout: float = 0.0,
        config_source: Callable[[], Config] | None = None,
    ) -> None:
        self.reactor = reactor
        self.switch_timeout = switch_timeout
        self.config = config
        self.config_source = config_source
        """Reads and validates the configuration file again (for `reload`)."""
        self.switch = switch
        self.clock = clock or reactor.seconds
        self.recorder = recorder or Recorder(None)
        self.metrics = metrics or Metrics()
        self.dataplane = dataplane or load_settings()
        self.state_path = state_path
        self.tick_interval = tick_interval
        self.routes = tuple(routes)
        self.core = self._new_core(policy_name)
        dips = [m.dip for pool in self.core.pools for m in pool]
        self.book = LoadBook(dips, config.controller.report_interval)
        self._ticker: task.LoopingCall | None = None
        self._exporter: task.LoopingCall | None = None
        self._booted: defer.Deferred[None] | None = None
        self._exported: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._next_load_record = -math.inf
        self.unexpected_errors = 0
        self._halted = False
        self._stopping = False
        self._subscribed = False
        self._report_faults = FaultThrottle()
        declare(self.metrics, self.counters())

    def _new_core(self, policy_name: str | None) -> ControllerCore:
        return ControllerCore(
            self.config,
            self.dataplane,
            policy_name=policy_name,
            routes=self.routes,
            journaling=self.state_path is not None,
        )

    # -- life cycle

    async def start(self) -> None:
        """Read the switch, program or adopt it, subscribe to digests and start ticking.

        A backup (P4Runtime: another controller holds a higher election ID) stays connected and
        writes nothing until the switch makes it primary; it then adopts what the switch holds,
        as a restarted controller does (no connection moves)."""
        view = await self._read_view()
        if not self._subscribed:
            await self.switch.subscribe(self._on_digest, self._on_aged)
            self._subscribed = True
        if not self.switch.primary:
            await self._until_primary()
            view = await self._read_view()  # what the previous primary left
        self.metrics.set("primary", 1.0)
        journal = self._load_journal()
        self._booted = defer.Deferred()
        self._run(self.core.bootstrap(self.clock(), view, journal))
        self.book.expect_reports(self.core.expected_reporters)
        self._check_boot()
        await self._booted
        if self.core.boot_failure is not None:
            raise ControllerError(self.core.boot_failure)
        self._ticker = task.LoopingCall(self.tick)
        self._ticker.clock = self.reactor  # type: ignore[assignment]
        self._ticker.start(self.tick_interval, now=True)
        # Its own timer: a thousand DIPs' series cost milliseconds, which no tick should carry.
        self._exporter = task.LoopingCall(self.export)
        self._exporter.clock = self.reactor  # type: ignore[assignment]
        self._exporter.start(METRICS_INTERVAL, now=True)
        log.info(
            "event=started pools=%d policy=%s",
            len(self.core.pools),
            self.core.view().policy,
        )

    async def _until_primary(self) -> None:
        log.warning("event=backup: another controller is the switch's primary; waiting")
        self.metrics.set("primary", 0.0)
        self.recorder.event(self.clock(), "phase", name="backup: waiting to become primary")
        while not self.switch.primary:
            if self._stopping:
                raise ControllerError("stopped while a backup")
            await task.deferLater(self.reactor, PRIMARY_POLL, lambda: None)  # type: ignore[arg-type]
        log.warning("event=promoted: this controller is the switch's primary now")
        self.recorder.event(self.clock(), "phase", name="primary: taking over the switch")

    def _demote(self) -> None:
        """Another controller took the switch over: write nothing more (what is in flight is
        refused or forgotten), and take over again, with a fresh core adopting what the switch
        holds, once the switch makes this one primary again. (Only a running controller is
        demoted: one still starting fails its start instead, as on any refused start-up write.)"""
        if not self.running:
            return
        self._stop_timers()
        view = self.core.view()
        log.warning("event=demoted: another controller is the switch's primary now")
        self.core = self._new_core(view.policy)
        if view.policy_params:
            self.core.set_policy(self.clock(), view.policy, view.policy_params)
        self._booted = None
        takeover = defer.ensureDeferred(self.start())
        takeover.addErrback(lambda f: log.error("event=takeover_failed error=%s", f.value))

    async def stop(self) -> None:
        """Stop ticking and release the switch client (the switch keeps its state)."""
        self._stopping = True
        self._stop_timers()
        if self.state_path is not None:
            journal = self.core.journal_at_stop(self.clock())
            if journal is not None:
                outcome = self._write_journal(JournalWrite(Owner.ROLLOUT, journal))
                if not outcome.ok:
                    log.error("event=journal_write_failed error=%s", outcome.detail)
        await self.switch.close()
        self.recorder.close()
        log.info("event=stopped")

    def halt(self) -> None:
        """Stop at once, as a killed process stops: no journal, no further operation; what was
        already handed to the switch is the switch's business (fault campaigns use this)."""
        self._stop_timers()
        self._halted = True

    def _stop_timers(self) -> None:
        for timer in (self._ticker, self._exporter):
            if timer is not None and timer.running:
                timer.stop()
        self._ticker = self._exporter = None

    @property
    def running(self) -> bool:
        """Whether the service is started and its periodic tick still scheduled."""
        return self._ticker is not None and self._ticker.running

    async def _read_view(self) -> SwitchView:
        """What the switch holds; an unreachable switch is tried again with a doubling delay
        (each try logged) until `switch_timeout` seconds have passed."""
        started, delay = self.clock(), SWITCH_RETRY_FIRST
        while True:
            try:
                versions = await self.switch.table_get_default(VERSION_CONFIG)
                conns = await self.switch.table_num_entries(CONN_TABLE)
                dips = await self.switch.table_num_entries(DIP_TABLE)
                (vips,) = await self.switch.apply([TableRead(Owner.STARTUP, VIP_TABLE)])
                if not vips.ok:
                    raise SwitchError(vips.detail, vips.error or ErrorKind.UNKNOWN)
                return SwitchView(versions, conns, dips, vips.entries)
            except SwitchError as exc:
                waited = self.clock() - started
                if exc.kind is not ErrorKind.UNAVAILABLE or waited + delay > self.switch_timeout:
                    raise ControllerError(
                        f"cannot read the switch (is it up and reachable?): {exc}"
                    ) from exc
                log.warning(
                    "event=switch_unreachable waited_s=%.1f retry_in_s=%.1f error=%s",
                    waited,
                    delay,
                    exc,
                )
            await task.deferLater(self.reactor, delay, lambda: None)  # type: ignore[arg-type]
            delay = min(delay * 2, SWITCH_RETRY_MAX)

    def _load_journal(self) -> object | None:
        """The journal's JSON document (the core checks it), or None."""
        if self.state_path is None or not self.state_path.exists():
            return None
        try:
            document: object = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("event=journal_unreadable path=%s error=%r", self.state_path, exc)
            return None
        return document

    # -- inputs

    def ingest_report(self, data: bytes) -> IngestResult:
        """Apply one encoded LoadReport (what the ZeroMQ feed would deliver)."""
        now = self.clock()
        result = self.book.ingest(now, data)
        self.note_report(now, result)
        return result

    def note_report(self, now: float, result: IngestResult) -> None:
        """Record and log a rejected report (throttled; the load book counts every one).

        Stale and duplicate reports are ordinary reordering and are only counted.
        """
        if result.outcome not in ("malformed", "unknown_dip"):
            return
        record = self._report_faults.note(now, f"report_{result.outcome}", result.detail)
        if record is not None:
            self._write_fault(record)

    def add_member(self, pool: int, dip: DipConfig) -> None:
        """Add a DIP to a pool (return path programmed now; weight from the next rollout)."""
        self.book.add_dip(dip.name)
        self._guard(lambda: self._run(self.core.add_member(self.clock(), pool, dip)))

    def drain_member(self, dip: str, *, remove: bool, pool: int | None = None) -> None:
        """Drain a DIP; with `remove` it leaves the pool once its connections are gone."""
        self.core.drain_member(self.clock(), dip, remove=remove, pool=pool)

    def standby_member(self, dip: str, *, pool: int | None = None) -> None:
        """Put a DIP on standby (an active one drains first)."""
        self.core.standby_member(self.clock(), dip, pool=pool)

    def undrain_member(self, dip: str, *, pool: int | None = None) -> None:
        """Return a draining or standby DIP to service."""
        self.core.undrain_member(self.clock(), dip, pool=pool)

    def activate_member(self, dip: str, *, pool: int | None = None) -> None:
        """Let a standby, draining or down member take new connections again."""
        self.core.activate_member(self.clock(), dip, pool=pool)

    def set_policy(self, name: str, params: Mapping[str, float]) -> None:
        """Switch every pool's policy in place (PolicyError, nothing changed, if refused)."""
        self.core.set_policy(self.clock(), name, params)
        log.info("event=policy_changed policy=%s params=%s", name, dict(params))
        self._flush_records()

    def reload(self, config: Config | None = None) -> ReloadPlan:
        """Apply the configuration file as it is now (or `config`) live: ConfigError, with
        nothing applied, if it is invalid or changes what needs a restart."""
        if config is None:
            if self.config_source is None:
                raise ConfigError(
                    ["this controller was not started from a file: nothing to reload"]
                )
            config = self.config_source()
        plan = plan_reload(self.config, config)
        ops = self.core.reload(self.clock(), plan)
        for dip in (d.name for v in config.vips for d in v.dips):
            self.book.add_dip(dip)  # no-op for a DIP tracked already
        self.config = config
        log.info("event=reloaded changes=%d %s", len(plan.summary()), "; ".join(plan.summary()))
        self._run(ops)
        return plan

    def tick(self) -> None:
        """One periodic step of the core (the LoopingCall calls this; it never raises, or the
        LoopingCall would stop for good)."""
        if not self.switch.primary:
            self._guard(self._demote)
            return
        self._guard(self._tick)

    def _tick(self) -> None:
        now = self.clock()
        # Building every member's load costs: only when the policy runs in this tick.
        loads = self.book.snapshot(now) if self.core.policy_due(now) else {}
        self._guard(lambda: self._run(self.core.tick(now, loads)))
        for dip in self.core.take_removed():
            if not any(m.dip == dip for pool in self.core.pools for m in pool):  # TCP and UDP
                self.book.remove_dip(dip)
        if now >= self._next_load_record:
            self._next_load_record = now + self.config.controller.report_interval
            for dip, load in self.book.snapshot(now).items():
                if load.last_seen is not None:
                    self.recorder.event(
                        now, "load", dip=dip, cpu=load.cpu, conns=load.conns, state=load.state
                    )

    def export(self) -> None:
        """Export the metrics (its LoopingCall calls this; it never raises, as `tick`)."""
        self._guard(self._export_metrics)

    def _on_digest(self, digest: Digest) -> None:
        # A backup learns nothing: what reaches it was raised before it lost the switch (the
        # new primary learns those connections from their next packets' digests).
        if self.switch.primary:
            self._guard(lambda: self._run(self.core.on_digest(self.clock(), digest)))

    def _on_aged(self, handles: Sequence[int]) -> None:
        if self.switch.primary:
            self._guard(lambda: self._run(self.core.on_aged(self.clock(), handles)))

    # -- carrying out operations

    def _run(self, ops: list[Op]) -> None:
        """Carry out operations: switch operations as one batch, journal writes here."""
        if self._halted:
            return
        # Journal first: an intent written in the same batch as the writes it announces must be
        # on disk before they can happen (the in-process model carries them out at once).
        journaled = [self._write_journal(op) for op in ops if isinstance(op, JournalWrite)]
        batch: list[SwitchOp] = [op for op in ops if not isinstance(op, JournalWrite)]
        core = self.core
        if batch:
            done = defer.ensureDeferred(self.switch.apply(batch))
            done.addCallbacks(
                self._deliver,
                lambda failure: self._unexpected(batch, failure, core),
                callbackArgs=(core,),
            )
        if journaled:
            self._deliver(journaled, core)
        self._flush_records()

    def _unexpected(self, batch: list[SwitchOp], failure: Failure, core: ControllerCore) -> None:
        self.unexpected_errors += 1
        log.error("event=unexpected_error ops=%d error=%s", len(batch), failure.getErrorMessage())
        detail = failure.getErrorMessage()
        self._deliver([Outcome.failed(op, ErrorKind.UNKNOWN, detail) for op in batch], core)

    def _deliver(self, outcomes: list[Outcome], core: ControllerCore) -> None:
        """Hand outcomes to the core that issued them, in order; what they lead to runs as the
        next batch (outcomes of a core replaced since, on a demotion, are dropped)."""
        if core is not self.core:
            return
        if not self.switch.primary and any(o.error is ErrorKind.NOT_PRIMARY for o in outcomes):
            self._guard(self._demote)  # refused as a backup: stop at once, not at the next tick
            return
        now = self.clock()
        follow: list[Op] = []

        def hand(outcome: Outcome) -> None:
            follow.extend(self.core.on_outcome(now, outcome))

        for outcome in outcomes:
            if not outcome.ok:
                log.debug("event=write_failed error=%s", outcome.detail)
            self._guard(lambda: hand(outcome))  # noqa: B023 - called at once, in this turn
        if follow:
            self._guard(lambda: self._run(follow))
        self._check_boot()

    def _check_boot(self) -> None:
        booted = self._booted
        if booted is not None and not booted.called and self.core.boot_settled:
            booted.callback(None)

    def _guard(self, action: Callable[[], None]) -> None:
        """Run core work; a bug must be logged and counted, never kill the reactor."""
        try:
            action()
        except Exception:
            self.unexpected_errors += 1
            log.exception("event=core_error")

    def _write_journal(self, op: JournalWrite) -> Outcome:
        """Replace the journal file atomically: a private temporary file beside it, renamed."""
        assert self.state_path is not None
        path = self.state_path
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(op.journal.to_json(), out)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            # The file on disk no longer tells the truth: remove it so no restart adopts it.
            try:
                path.unlink(missing_ok=True)
                stale = "the old journal was removed"
            except OSError as gone:
                stale = f"the old journal could not be removed either ({gone})"
            return Outcome.failed(op, ErrorKind.UNAVAILABLE, f"journal {path}: {exc}; {stale}")
        return Outcome.done(op)

    # -- outputs

    def _write_fault(self, record: RecordEvent) -> None:
        self.recorder.event(record.now, record.kind, **record.fields)
        # Backpressure is the protocol working as designed: worth knowing, not a warning.
        level = logging.INFO if record.fields.get("what") == "backpressure" else logging.WARNING
        log.log(
            level,
            "event=fault what=%s detail=%s",
            record.fields.get("what"),
            record.fields.get("detail"),
        )

    def _flush_records(self) -> None:
        for record in self.core.take_records():
            if record.kind == "fault":
                self._write_fault(record)
                continue
            self.recorder.event(record.now, record.kind, **record.fields)
            if record.kind == "rollout":
                log.info(
                    "event=rollout slot=%s version=%s duration_ms=%.1f entries=%s",
                    record.fields["slot"],
                    record.fields["version"],
                    record.fields["duration_ms"],
                    record.fields["entries_written"],
                )

    def counters(self, view: CoreView | None = None) -> dict[str, float]:
        """Every controller counter by metric name."""
        view = view or self.core.view()
        learning, rollouts = view.learning, view.rollouts
        values: dict[str, float] = {
            f"learn_{name}_total": float(getattr(learning, name))
            for name in (
                "learned",
                "installed",
                "duplicate_digests",
                "conflicting_digests",
                "add_failures",
                "table_full",
                "expired_idle",
                "expired_teardown",
                "forgotten_pending",
                "foreign_adopted",
                "foreign_deleted",
                "unknown_teardown",
                "delete_failures",
                "timeout_failures",
                "reinstalled",
            )
        }
        values.update(
            (f"load_reports_{name}_total", float(count))
            for name, count in self.book.counters.items()
        )
        values.update(
            (f"digests_{reason}_total", float(view.digest_faults.get(reason, 0)))
            for reason in ("malformed", "unknown_vip", "unknown_dip")
        )
        values.update(
            (f"affinity_{name}_total", float(getattr(view.affinity, name)))
            for name in (
                "pinned",
                "expired",
                "retired",
                "table_full",
                "add_failures",
                "delete_failures",
            )
        )
        values.update(
            rollouts_total=rollouts.rollouts,
            rollouts_aborted_total=rollouts.rollouts_aborted,
            rollout_backpressure_total=rollouts.backpressure,
            switch_write_failures_total=rollouts.write_failures,
            rollout_reclaims_total=rollouts.reclaims,
            dip_entries_reclaimed_total=rollouts.entries_reclaimed,
            rollout_reclaim_failures_total=rollouts.reclaim_failures,
            slots_retired_total=rollouts.retires,
            dip_table_too_small_total=rollouts.table_too_small,
            dip_table_resyncs_total=rollouts.resyncs,
            members_removed_total=view.members_removed,
            switch_state_lost_total=view.switch_losses,
            unexpected_errors_total=self.unexpected_errors,
            record_write_failures_total=self.recorder.write_failures,
        )
        return values

    def _export_metrics(self) -> None:
        view = self.core.view()
        samples = member_samples(view, self.book.snapshot(self.clock()))
        counters: list[tuple[str, float, Mapping[str, str]]] = [
            (name, value, {}) for name, value in self.counters(view).items()
        ]
        counters += [(x.name, x.value, x.labels) for x in samples if x.name.endswith("_total")]
        for name, value, labels in counters:
            key = (name, tuple(sorted(labels.items())))
            delta = value - self._exported.get(key, 0.0)
            # A counter is there from the start (at 0) and never goes down, even when its
            # source forgets (a removed member's count).
            if delta > 0 or key not in self._exported:
                self.metrics.inc(name, max(delta, 0.0), **labels)
                self._exported[key] = max(value, self._exported.get(key, 0.0))
        for sample in samples:
            if not sample.name.endswith("_total"):
                self.metrics.set(sample.name, sample.value, **sample.labels)
        self.metrics.set("conn_entries", float(view.conn_entries))
        self.metrics.set("conn_table_full", float(view.conn_table_full))
        self.metrics.set("affinity_entries", float(view.affinity_entries))
        self.metrics.set("rollout_held", float(view.backpressure is not None))
        self.metrics.set("rollout_version", float(view.rollouts.rollouts))
        if view.active_slot is not None:
            self.metrics.set("active_slot", float(view.active_slot))
