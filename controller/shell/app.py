"""The controller's Twisted shell: wires the switch client, load book, core, timers and outputs.

`ControllerService` runs every `SwitchCall` the pure core asks for on the
`SwitchClient`, hands each outcome back, delivers digests and ageing notices, ticks the core on
the reactor's clock, and writes records (Recorder) and counters (Metrics). Load reports arrive
through a LoadFeed (ZeroMQ) or in-process with `ingest_report`, which the demo's simulation uses
with a `task.Clock`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.python.failure import Failure

from controller.config import Config, DipConfig
from controller.core.controller_core import (
    ControllerCore,
    RecordEvent,
    RouteEntry,
    SwitchCall,
    SwitchView,
)
from controller.core.core_support import FaultThrottle
from controller.core.loadbook import IngestResult, LoadBook
from controller.core.weighting import MemberLoad
from controller.shell.metrics import Metrics
from controller.shell.record import Recorder
from controller.switch.api import Digest, SwitchClient, SwitchError, TimeReactor
from p4model.settings import load_settings

log = logging.getLogger("controller")
METRICS_INTERVAL = 1.0


class ControllerError(Exception):
    """The controller could not start (the switch refused its start-up writes)."""


@dataclass(frozen=True)
class DataPlaneLimits:
    """Constants of the P4 program the controller needs (from p4src/settings.p4)."""

    hash_bits: int = 16
    version_slots: int = 4
    conn_table_size: int = 65536
    dip_table_size: int = 16384

    @classmethod
    def from_settings(cls, path: Path | None = None) -> DataPlaneLimits:
        """Read them from settings.p4 (default: the repository's), the program's own constants."""
        settings = load_settings(path)
        return cls(
            settings.hash_bits,
            settings.version_slots,
            settings.conn_table_size,
            settings.dip_table_size,
        )


def member_loads(book: LoadBook, now: float) -> dict[str, MemberLoad]:
    """The load book's view of every DIP, as the core reads it."""
    return {
        dip: MemberLoad(
            load.state,
            load.cpu,
            load.conns,
            load.conn_rate,
            load.report_age,
            load.last_seen is not None,
        )
        for dip, load in book.snapshot(now).items()
    }


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
        routes: Sequence[RouteEntry] = (),
        limits: DataPlaneLimits | None = None,
        state_path: Path | None = None,
        tick_interval: float = 0.05,
    ) -> None:
        self.reactor = reactor
        self.config = config
        self.switch = switch
        self.clock = clock or reactor.seconds
        self.recorder = recorder or Recorder(None)
        self.metrics = metrics or Metrics()
        self.limits = limits or DataPlaneLimits()
        self.state_path = state_path
        self.tick_interval = tick_interval
        self.core = ControllerCore(
            config,
            policy_name=policy_name,
            hash_bits=self.limits.hash_bits,
            slots=self.limits.version_slots,
            conn_capacity=self.limits.conn_table_size,
            dip_table_size=self.limits.dip_table_size,
            routes=routes,
            journaling=state_path is not None,
        )
        dips = [m.dip for pool in self.core.pools for m in pool]
        self.book = LoadBook(dips, config.controller.report_interval)
        self._ticker: task.LoopingCall | None = None
        self._booted: defer.Deferred[None] | None = None
        self._exported: dict[str, float] = {}
        self._next_load_record = -math.inf
        self._next_export = -math.inf
        self.unexpected_errors = 0
        self._report_faults = FaultThrottle()

    # -- life cycle

    async def start(self) -> None:
        """Read the switch, program or adopt it, subscribe to digests and start ticking."""
        view = await self._read_view()
        journal = self._load_journal()
        await self.switch.subscribe(self._on_digest, self._on_aged)
        self._booted = defer.Deferred()
        self._run(self.core.bootstrap(self.clock(), view, journal))
        self._check_boot()
        await self._booted
        if self.core.boot.failure is not None:
            raise ControllerError(self.core.boot.failure)
        self._ticker = task.LoopingCall(self.tick)
        self._ticker.clock = self.reactor  # type: ignore[assignment]
        self._ticker.start(self.tick_interval, now=True)
        log.info(
            "event=started pools=%d policy=%s",
            len(self.core.pools),
            self.core.weighting[0].policy_name,
        )

    async def stop(self) -> None:
        """Stop ticking and release the switch client (the switch keeps its state)."""
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        self._ticker = None
        if self.state_path is not None:
            journal = self.core.journal_at_stop(self.clock())
            if journal is not None:
                self._write_journal(journal)
        await self.switch.close()
        self.recorder.close()
        log.info("event=stopped")

    @property
    def running(self) -> bool:
        """Whether the service is started and its periodic tick still scheduled."""
        return self._ticker is not None and self._ticker.running

    async def _read_view(self) -> SwitchView | None:
        try:
            active = await self.switch.register_read("active_version", 0)
            conns = await self.switch.table_num_entries("conn_table")
            dips = await self.switch.table_num_entries("dip_table")
        except SwitchError as exc:
            raise ControllerError(
                f"cannot read the switch (is it up and reachable?): {exc}"
            ) from exc
        value = active[0] if isinstance(active, list) else active
        return SwitchView(int(value), conns, dips)

    def _load_journal(self) -> Mapping[str, Any] | None:
        if self.state_path is None or not self.state_path.exists():
            return None
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("event=journal_unreadable path=%s error=%r", self.state_path, exc)
            return None
        return data if isinstance(data, dict) else None

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

    def drain_member(self, dip: str, *, remove: bool) -> None:
        """Drain a DIP; with `remove` it leaves the pool once its connections are gone."""
        self.core.drain_member(self.clock(), dip, remove=remove)

    def activate_member(self, dip: str) -> None:
        """Let a standby, draining or down member take new connections again."""
        self.core.activate_member(self.clock(), dip)

    def tick(self) -> None:
        """One periodic step of the core (the LoopingCall calls this; it never raises, or the
        LoopingCall would stop for good)."""
        self._guard(self._tick)

    def _tick(self) -> None:
        now = self.clock()
        self._guard(lambda: self._run(self.core.tick(now, member_loads(self.book, now))))
        for dip in self.core.take_removed():
            self.book.remove_dip(dip)
        if now >= self._next_load_record:
            self._next_load_record = now + self.config.controller.report_interval
            for dip, load in self.book.snapshot(now).items():
                if load.last_seen is not None:
                    self.recorder.event(
                        now, "load", dip=dip, cpu=load.cpu, conns=load.conns, state=load.state
                    )
        if now >= self._next_export:
            self._next_export = now + METRICS_INTERVAL
            self._export_metrics()

    def _on_digest(self, digest: Digest) -> None:
        self._guard(lambda: self._run(self.core.on_digest(self.clock(), digest)))

    def _on_aged(self, handles: Sequence[int]) -> None:
        self._guard(lambda: self._run(self.core.on_aged(self.clock(), handles)))

    # -- running calls

    def _run(self, calls: list[SwitchCall]) -> None:
        for call in calls:
            self._dispatch(call)
        self._flush_records()

    def _dispatch(self, call: SwitchCall) -> None:
        if call.method == "journal":
            self._finish(call, self._write_journal(call.args[0]))
            return
        method = getattr(self.switch, call.method)
        deferred = defer.ensureDeferred(method(*call.args))
        deferred.addCallbacks(
            lambda value: self._finish(call, (True, value, "")), lambda f: self._failed(call, f)
        )

    def _failed(self, call: SwitchCall, failure: Failure) -> None:
        if not isinstance(failure.value, SwitchError):
            self.unexpected_errors += 1
            log.error(
                "event=unexpected_error call=%s error=%s", call.method, failure.getErrorMessage()
            )
        self._finish(call, (False, None, str(failure.value)))

    def _finish(self, call: SwitchCall, outcome: tuple[bool, Any, str]) -> None:
        ok, value, error = outcome
        if not ok:
            log.debug("event=write_failed call=%s args=%r error=%s", call.method, call.args, error)
        self._guard(
            lambda: self._run(self.core.on_result(self.clock(), call.token, ok, value, error))
        )
        self._check_boot()

    def _check_boot(self) -> None:
        booted = self._booted
        if booted is not None and not booted.called and self.core.boot.done:
            booted.callback(None)

    def _guard(self, action: Callable[[], None]) -> None:
        """Run core work; a bug must be logged and counted, never kill the reactor."""
        try:
            action()
        except Exception:
            self.unexpected_errors += 1
            log.exception("event=core_error")

    def _write_journal(self, data: Mapping[str, Any]) -> tuple[bool, Any, str]:
        assert self.state_path is not None
        tmp = self.state_path.with_suffix(self.state_path.suffix + ".tmp")
        try:
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, self.state_path)
        except OSError as exc:
            return False, None, f"journal {self.state_path}: {exc}"
        return True, None, ""

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

    def counters(self) -> dict[str, float]:
        """Every controller counter by metric name."""
        learning = self.core.learner.counters
        rollouts = self.core.versions.counters
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
            )
        }
        values.update(
            (f"load_reports_{name}_total", float(count))
            for name, count in self.book.counters.items()
        )
        values.update(
            (f"digests_{reason}_total", float(self.core.digest_faults[reason]))
            for reason in ("malformed", "unknown_vip", "unknown_dip")
        )
        values.update(
            rollouts_total=rollouts.rollouts,
            rollouts_aborted_total=rollouts.rollouts_aborted,
            rollout_backpressure_total=rollouts.backpressure,
            switch_write_failures_total=rollouts.write_failures,
            rollout_reclaims_total=rollouts.reclaims,
            dip_entries_reclaimed_total=rollouts.entries_reclaimed,
            rollout_reclaim_failures_total=rollouts.reclaim_failures,
            dip_table_too_small_total=rollouts.table_too_small,
            members_removed_total=self.core.members_removed,
            unexpected_errors_total=self.unexpected_errors,
            record_write_failures_total=self.recorder.write_failures,
        )
        return values

    def _export_metrics(self) -> None:
        for name, value in self.counters().items():
            delta = value - self._exported.get(name, 0.0)
            if delta > 0:
                self.metrics.inc(name, delta)
                self._exported[name] = value
        learner = self.core.learner
        self.metrics.set("conn_entries", float(learner.in_use))
        self.metrics.set("conn_table_full", float(learner.full))
        self.metrics.set("rollout_held", float(self.core.versions.backpressure is not None))
        ledger = self.core.versions.ledger
        if ledger is not None:
            self.metrics.set("active_version", float(ledger.active))
        for p, weighting in enumerate(self.core.weighting):
            for member, weight in zip(self.core.pools[p], weighting.desired, strict=False):
                self.metrics.set(
                    "weight", float(weight), pool=self.core.pools[p].vip.name, dip=member.dip
                )
