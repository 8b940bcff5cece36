"""ControllerService (the Twisted shell) on a task.Clock with the in-process model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from twisted.internet import defer, task
from twisted.python.failure import Failure

import p4model
from agent.wire import LoadReport, encode_report
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.core.ops import ErrorKind, Outcome, SwitchOp, TableInsert
from controller.shell.app import ControllerError, ControllerService
from controller.shell.metrics import Metrics
from controller.shell.record import Recorder, read_events
from controller.switch.api import DefaultEntry, SwitchError
from controller.switch.model_client import ModelSwitchClient
from topo.frames import SYN, TCP, FlowKey, build_frame

DIPS = ("10.0.2.2:8080", "10.0.3.2:8080")


def config() -> Config:
    dips = tuple(DipConfig(d.split(":")[0], 8080, 1) for d in DIPS)
    settings = ControllerSettings(policy="cpu", min_rollout_interval=0.5, quiet_period=0.5)
    return Config(settings, (VipConfig("web", "10.0.0.100", 80, "tcp", dips),))


def report(
    service: ControllerService, clock: task.Clock, seq: int, cpus: tuple[float, float]
) -> None:
    for dip, cpu in zip(DIPS, cpus, strict=True):
        service.ingest_report(encode_report(LoadReport(dip, seq, clock.seconds(), cpu, 3)))


def test_service_runs_rollouts_learns_and_writes_records_metrics_and_journal(
    tmp_path: Path,
) -> None:
    clock = task.Clock()
    switch = p4model.Switch(clock=clock.seconds)
    metrics = Metrics()
    service = ControllerService(
        clock,
        config(),
        ModelSwitchClient(switch, clock),
        recorder=Recorder(tmp_path / "run.jsonl"),
        metrics=metrics,
        state_path=tmp_path / "state.json",
    )
    started = defer.ensureDeferred(service.start())
    clock.advance(0)
    assert started.called and started.result is None
    assert switch.table_num_entries("vip_table") == 1
    assert switch.table_num_entries("dip_reverse") == 2
    for seq, cpus in enumerate([(0.9, 0.1), (0.1, 0.9), (0.5, 0.5)], start=1):
        report(service, clock, seq, cpus)
        clock.advance(1.0)
    assert switch.table_get_default("version_config")[1][0] == 3
    assert metrics.value("rollouts_total") == 4  # the initial version and three rollouts
    frame = build_frame(
        "00:00:00:00:01:02",
        "00:01:00:00:00:01",
        FlowKey("10.0.1.2", "10.0.0.100", 4000, 80, TCP),
        flags=SYN,
    )
    switch.process(1, frame)
    clock.advance(0.1)
    assert switch.table_num_entries("conn_table") == 1
    assert service.ingest_report(b"{not json").outcome == "malformed"
    clock.advance(6.0)
    defer.ensureDeferred(service.stop())
    kinds = {event["kind"] for event in read_events(tmp_path / "run.jsonl")}
    assert {"rollout", "weights", "learn", "load", "share"} <= kinds
    assert metrics.value("learn_installed_total") == 1
    assert metrics.value("active_slot") == 3
    journal = json.loads((tmp_path / "state.json").read_text())
    assert journal["active"] == 3 and journal["pending"] is None


class RefusingSwitch(ModelSwitchClient):
    """A switch that refuses every table insert."""

    async def apply(self, ops: Sequence[SwitchOp]) -> list[Outcome]:
        done = await super().apply([op for op in ops if not isinstance(op, TableInsert)])
        refused = {
            id(op): Outcome.failed(op, ErrorKind.INVALID, "table_add: refused")
            for op in ops
            if isinstance(op, TableInsert)
        }
        results = iter(done)
        return [refused.get(id(op)) or next(results) for op in ops]


def test_start_fails_cleanly_when_the_switch_refuses_writes() -> None:
    clock = task.Clock()
    client = RefusingSwitch(p4model.Switch(clock=clock.seconds), clock)
    service = ControllerService(clock, config(), client)
    started = defer.ensureDeferred(service.start())
    clock.advance(0)
    failures: list[Failure] = []
    started.addErrback(failures.append)
    assert len(failures) == 1 and failures[0].check(ControllerError)
    assert "refused" in failures[0].getErrorMessage()


def test_added_member_gets_a_return_path_and_then_weight() -> None:
    clock = task.Clock()
    switch = p4model.Switch(clock=clock.seconds)
    service = ControllerService(clock, config(), ModelSwitchClient(switch, clock))
    defer.ensureDeferred(service.start())
    clock.advance(0)
    service.add_member(0, DipConfig("10.0.4.2", 8080, 1))
    assert switch.table_num_entries("dip_reverse") == 3
    for seq in (1, 2):
        report(service, clock, seq, (0.5, 0.5))
        service.ingest_report(
            encode_report(LoadReport("10.0.4.2:8080", seq, clock.seconds(), 0.1, 0))
        )
        clock.advance(1.0)
    pool = service.core.view().pools[0]
    assert pool.active_weight("10.0.4.2:8080") > pool.active_weight("10.0.2.2:8080")


class LateSwitch(ModelSwitchClient):
    """A switch that answers nothing until `up_at` on the reactor's clock."""

    up_at = 0.0

    async def table_get_default(self, table: str) -> DefaultEntry:
        if self._reactor.seconds() < self.up_at:
            raise SwitchError(f"{table}: connection refused", ErrorKind.UNAVAILABLE)
        return await super().table_get_default(table)


def start_late(up_at: float, timeout: float) -> tuple[defer.Deferred[None], task.Clock]:
    clock = task.Clock()
    client = LateSwitch(p4model.Switch(clock=clock.seconds), clock)
    client.up_at = up_at
    service = ControllerService(clock, config(), client, switch_timeout=timeout)
    started = defer.ensureDeferred(service.start())
    for _ in range(200):
        clock.advance(0.25)
    return started, clock


def test_a_switch_that_comes_up_late_is_waited_for_with_backoff() -> None:
    started, _ = start_late(up_at=6.0, timeout=60.0)
    assert started.called and started.result is None


def test_a_switch_that_stays_away_past_the_timeout_fails_start_up_clearly() -> None:
    started, _ = start_late(up_at=1e9, timeout=5.0)
    failures: list[Failure] = []
    started.addErrback(failures.append)
    assert len(failures) == 1 and failures[0].check(ControllerError)
    assert "is it up and reachable" in failures[0].getErrorMessage()
