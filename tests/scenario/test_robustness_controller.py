"""Hostile input against a running ControllerService (in-process model, test clock).

Garbage load reports, malformed and impossible digests, a switch that refuses every call for a
while, a dip_table too small for four versions (reclaimed) or for two (refused at once): each
time the service must keep ticking, count and record the fault, and never move a live simulated
connection to another DIP.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task

import p4model
from agent.wire import LoadReport, encode_report
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.core.ops import ErrorKind, Outcome, SwitchOp
from controller.shell.app import ControllerService
from controller.shell.metrics import Metrics
from controller.shell.record import Recorder, read_events
from controller.switch.api import AgedCallback, Digest, DigestCallback, SwitchError
from controller.switch.faults import FaultySwitch
from controller.switch.model_client import ModelSwitchClient
from topo.frames import SYN, TCP, FlowKey, build_frame, read_flow
from topo.sim import CLIENT_MAC, SWITCH_MAC, SimOptions, SimResult, Simulation, sim_routes

VIP = "10.0.0.100"
DIPS = ("10.0.2.2:8080", "10.0.3.2:8080")


UNAVAILABLE = ErrorKind.UNAVAILABLE


class HostileSwitch(ModelSwitchClient):
    """The model client, refusing every call while `down`, and keeping the digest callback so
    a test can hand the service digests the data plane would never raise."""

    down = False
    refused = 0
    inject: DigestCallback

    def _call(self, operation: str, *args: Any) -> Any:
        if self.down:
            self.refused += 1
            raise SwitchError(f"{operation}: switch unreachable (test outage)", UNAVAILABLE)
        return super()._call(operation, *args)

    async def apply(self, ops: Sequence[SwitchOp]) -> list[Outcome]:
        if self.down:
            self.refused += len(ops)
            return [
                Outcome.failed(op, UNAVAILABLE, "switch unreachable (test outage)") for op in ops
            ]
        return await super().apply(ops)

    async def subscribe(self, on_digest: DigestCallback, on_aged: AgedCallback) -> None:
        self.inject = on_digest
        await super().subscribe(on_digest, on_aged)

    def restart_switch(self) -> p4model.Switch:
        """The switch process restarts: same program, every table and register empty."""
        fresh = p4model.Switch(self.switch.settings, clock=self._reactor.seconds)
        fresh.subscribe(self._raised)
        self._switch = fresh
        return fresh


class Harness:
    """One service on a task.Clock with a recorder and metrics."""

    def __init__(self, tmp_path: Path, conn_entries: int | None = None) -> None:
        self.clock = task.Clock()
        settings = p4model.load_settings()
        if conn_entries is not None:  # a switch smaller than the controller believes
            settings = replace(settings, conn_table_size=conn_entries)
        self.switch = p4model.Switch(settings, clock=self.clock.seconds)
        self.client = HostileSwitch(self.switch, self.clock)
        self.metrics = Metrics()
        self.record = tmp_path / "run.jsonl"
        dips = tuple(DipConfig(d.split(":")[0], 8080, 1) for d in DIPS)
        controller = ControllerSettings(policy="cpu", min_rollout_interval=0.5, quiet_period=0.5)
        config = Config(controller, (VipConfig("web", VIP, 80, "tcp", dips),))
        self.service = ControllerService(
            self.clock,
            config,
            self.client,
            recorder=Recorder(self.record),
            metrics=self.metrics,
            routes=sim_routes(2),
        )
        started = defer.ensureDeferred(self.service.start())
        self.clock.advance(0)
        assert started.called and started.result is None
        self.seq = 0

    def report(self, cpus: tuple[float, float]) -> None:
        self.seq += 1
        for dip, cpu in zip(DIPS, cpus, strict=True):
            data = encode_report(LoadReport(dip, self.seq, self.clock.seconds(), cpu, 1))
            assert self.service.ingest_report(data).accepted

    def send(self, sport: int) -> str:
        """One client packet of connection `sport`; returns the DIP it reached."""
        dip = self.try_send(sport)
        assert dip is not None
        return dip

    def try_send(self, sport: int) -> str | None:
        """One client packet of connection `sport`; the DIP it reached, or None if dropped."""
        flow = FlowKey("10.0.1.2", VIP, sport, 80, TCP)
        out = self.switch.process(1, build_frame(CLIENT_MAC, SWITCH_MAC, flow, flags=SYN))
        if not out:
            return None
        seen = read_flow(out[0][1])
        return f"{seen.dst_ip}:{seen.dst_port}"

    def faults(self) -> list[dict[str, Any]]:
        return [e for e in read_events(self.record) if e["kind"] == "fault"]

    def counter(self, name: str) -> float:
        return self.service.counters()[name]

    def alive(self) -> bool:
        return self.service.running and self.service.unexpected_errors == 0


def report_json(**changes: Any) -> bytes:
    fields: dict[str, Any] = {"v": 1, "dip": DIPS[0], "seq": 99, "ts": 1.0, "cpu": 0.5}
    fields.update({"conns": 1, **changes})
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("data", "outcome", "counter"),
    [
        pytest.param(bytes(range(256)) * 3, "malformed", "malformed_not_json", id="random-bytes"),
        pytest.param(b"x" * 1_000_000, "malformed", "malformed_oversized", id="huge"),
        pytest.param(b"[" * 3000 + b"]" * 3000, "malformed", "malformed_oversized", id="nested"),
        pytest.param(b"[" * 2000 + b"]" * 2000, "malformed", "malformed_not_json", id="deep"),
        pytest.param(report_json(cpu=float("nan")), "malformed", "malformed_not_json", id="nan"),
        pytest.param(report_json(cpu=1e308), "malformed", "malformed_bad_field", id="cpu-huge"),
        pytest.param(report_json(conns=-1), "malformed", "malformed_bad_field", id="conns<0"),
        pytest.param(report_json(v=2), "malformed", "malformed_bad_version", id="schema-2"),
        pytest.param(report_json(cpu=None), "malformed", "malformed_missing_field", id="no-cpu"),
        pytest.param(report_json(dip="web"), "malformed", "malformed_bad_dip", id="bad-dip"),
        pytest.param(report_json(dip="10.9.9.9:80"), "unknown_dip", "unknown_dip", id="wrong-dip"),
        pytest.param(b"", "malformed", "malformed_not_json", id="empty"),
    ],
)
def test_hostile_report_is_rejected_counted_and_recorded(
    tmp_path: Path, data: bytes, outcome: str, counter: str
) -> None:
    h = Harness(tmp_path)
    assert h.service.ingest_report(data).outcome == outcome
    h.clock.advance(1.0)
    assert h.counter(f"load_reports_{counter}_total") == 1
    assert h.metrics.value(f"load_reports_{counter}_total") == 1
    assert [f["what"] for f in h.faults()] == [f"report_{outcome}"]
    assert h.alive()


def test_report_flood_is_throttled_in_the_record_and_weights_still_follow_good_reports(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    rng = random.Random(4)
    before = h.counter("rollouts_total")
    for step in range(40):
        for _ in range(50):
            h.service.ingest_report(rng.randbytes(rng.randrange(0, 200)))
        h.report((0.9, 0.1) if step % 2 else (0.1, 0.9))
        h.clock.advance(0.25)
    assert h.counter("load_reports_malformed_total") == 2000
    assert h.counter("rollouts_total") > before  # good reports still move the weights
    faults = h.faults()
    assert 1 <= len(faults) <= 12  # about one per second of flood, not one per message
    assert h.alive()


BASE = Digest("new_conn", "10.0.1.5", VIP, 4000, 80, 6, 0, "10.0.2.2", 8080)


@pytest.mark.parametrize(
    ("changes", "counter", "entries"),
    [
        pytest.param({"kind": "hello"}, "digests_malformed_total", 0, id="unknown-kind"),
        pytest.param({"version": 4}, "digests_malformed_total", 0, id="version-too-big"),
        pytest.param({"version": -1}, "digests_malformed_total", 0, id="version-negative"),
        pytest.param({"src_port": 70000}, "digests_malformed_total", 0, id="port-out-of-range"),
        pytest.param({"src_ip": "10.0.1"}, "digests_malformed_total", 0, id="bad-src-ip"),
        pytest.param({"dip_ip": None}, "digests_malformed_total", 0, id="dip-ip-none"),
        pytest.param({"protocol": 1}, "digests_malformed_total", 0, id="icmp"),
        pytest.param({"dst_ip": "10.0.0.200"}, "digests_unknown_vip_total", 0, id="unknown-vip"),
        pytest.param({"dst_port": 443}, "digests_unknown_vip_total", 0, id="unknown-vip-port"),
        # The data plane already sent the connection there: pin it, but say so.
        pytest.param({"dip_ip": "10.9.9.9"}, "digests_unknown_dip_total", 1, id="dip-not-in-pool"),
        pytest.param({"kind": "teardown"}, "learn_unknown_teardown_total", 0, id="teardown"),
    ],
)
def test_impossible_digest_is_counted_and_installs_nothing_it_should_not(
    tmp_path: Path, changes: dict[str, Any], counter: str, entries: int
) -> None:
    h = Harness(tmp_path)
    h.client.inject(replace(BASE, **changes))
    h.clock.advance(1.0)
    assert h.counter(counter) == 1
    assert h.switch.table_num_entries("conn_table") == entries
    if counter.startswith("digests_"):
        assert h.metrics.value(counter) == 1
        assert [f["what"] for f in h.faults()] == [
            counter.removesuffix("_total").replace("digests_", "digest_")
        ]
    assert h.alive()


def test_duplicate_digest_installs_one_entry(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.client.inject(BASE)
    h.client.inject(BASE)
    h.clock.advance(1.0)
    assert h.counter("learn_duplicate_digests_total") == 1
    assert h.counter("learn_installed_total") == 1
    assert h.switch.table_num_entries("conn_table") == 1


def test_random_digests_never_break_the_service_or_a_live_connection(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    live = {sport: h.send(sport) for sport in range(5000, 5020)}
    h.clock.advance(0.1)
    rng = random.Random(9)
    values: list[Any] = [None, -1, 0, 4, 80, 6, 17, 70000, "", "10.0.0.100", "x", 1.5, b"\0"]
    for step in range(30):
        for _ in range(40):
            fields = {f: rng.choice(values) for f in ("src_ip", "dst_ip", "version", "dip_ip")}
            fields.update(kind=rng.choice(["new_conn", "teardown", "boom"]))
            fields.update(src_port=rng.choice(values), protocol=rng.choice(values))
            h.client.inject(replace(BASE, **fields))
        h.report((0.9, 0.1) if step % 2 else (0.1, 0.9))
        h.clock.advance(0.5)
        assert {sport: h.send(sport) for sport in live} == live
    assert h.counter("digests_malformed_total") > 0
    assert h.counter("rollouts_total") >= 5
    assert h.alive()


def test_switch_outage_then_recovery_breaks_nothing_and_rollouts_resume(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    live = {sport: h.send(sport) for sport in range(6000, 6010)}
    h.clock.advance(0.1)
    h.client.down = True
    for step in range(10):
        live.update({6100 + step: h.send(6100 + step)})  # new connections during the outage
        h.report((0.9, 0.1) if step % 2 else (0.1, 0.9))
        h.clock.advance(0.5)
        assert {sport: h.send(sport) for sport in live} == live
    assert h.client.refused > 0
    assert h.counter("switch_write_failures_total") + h.counter("learn_add_failures_total") > 0
    during = h.counter("rollouts_total")
    h.client.down = False
    for step in range(10):
        h.report((0.9, 0.1) if step % 2 else (0.1, 0.9))
        h.clock.advance(0.5)
        assert {sport: h.send(sport) for sport in live} == live
    assert h.counter("rollouts_total") > during
    assert h.counter("learn_installed_total") == len(live)
    assert h.faults()
    assert h.alive()


def test_conn_table_smaller_than_expected_holds_rollouts_and_breaks_nothing(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, conn_entries=4)
    live = {sport: h.send(sport) for sport in range(7000, 7012)}
    for step in range(16):
        h.report((0.9, 0.1) if step % 2 else (0.1, 0.9))
        h.clock.advance(0.5)
        assert {sport: h.send(sport) for sport in live} == live
    assert h.switch.table_num_entries("conn_table") == 4
    assert h.counter("learn_table_full_total") > 0
    assert h.counter("rollout_backpressure_total") > 0
    assert any(f["what"] == "backpressure" for f in h.faults())
    assert h.alive()


class SmallDipTable(Simulation):
    """The standard simulation on a model whose dip_table holds only `dip_entries` entries; the
    controller is told the real size when `known`, else believes settings.p4's."""

    def __init__(self, options: SimOptions, dip_entries: int, record: Path, known: bool) -> None:
        self.dip_entries = dip_entries
        self.known = known
        self.metrics = Metrics()
        self.record = record
        self.recorder = Recorder(record)
        super().__init__(options)

    def make_service(self, state_path: Any = None) -> ControllerService:
        settings = replace(p4model.load_settings(), dip_table_size=self.dip_entries)
        self.switch = p4model.Switch(settings, clock=self.clock.seconds)
        o = self.options
        client = FaultySwitch(
            ModelSwitchClient(self.switch, self.clock),
            self.clock,
            random.Random(o.seed),
            write_latency=o.write_latency,
            digest_delay=o.digest_delay,
        )
        # Unless the size is known, the controller believes the program's own table size.
        believed = self.dip_entries if self.known else p4model.load_settings().dip_table_size
        dataplane = replace(
            self.switch.settings, conn_table_size=o.conn_table_size, dip_table_size=believed
        )
        return ControllerService(
            self.clock,
            self.config,
            client,
            recorder=self.recorder,
            metrics=self.metrics,
            routes=sim_routes(o.dips),
            dataplane=dataplane,
        )

    def phases(self, count: int) -> SimResult:
        """`count` load phases of 1.5 s with 400 connections spread over them, then a drain."""
        self.start()
        self.open_connections(400, 0.5, count * 1.5)
        for t in range(1, count + 1):
            self.new_loads()
            self.advance(t * 1.5)
        self.advance(self.clock.seconds() + 5.0)
        return self.finish()

    def faults(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for event in read_events(self.record):
            if event["kind"] == "fault":
                out.setdefault(event["what"], []).append(str(event["detail"]))
        return out


# 96 entries hold two versions of the two pools (4 DIPs each), never four: without reclaiming,
# the third rollout would find the table full and every later one would abort.
@pytest.mark.parametrize("known", [True, False], ids=["size-known", "size-learned"])
def test_full_dip_table_reclaims_idle_slots_and_rollouts_resume(
    tmp_path: Path, known: bool
) -> None:
    options = SimOptions(
        connections=400, seed=21, write_latency=(0.01, 0.2), digest_delay=(0.0, 0.05)
    )
    sim = SmallDipTable(options, dip_entries=96, record=tmp_path / "run.jsonl", known=known)
    result = sim.phases(20)
    assert result.broken == 0 and result.dropped == 0
    assert result.rollouts >= 16  # of 20 load phases
    counters = sim.service.core.view().rollouts
    assert counters.reclaims > 0 and counters.reclaim_failures == 0
    assert result.aborted == (0 if known else 1)  # a refused add teaches the size once
    assert sim.switch.table_num_entries("dip_table") <= 96
    faults = sim.faults()
    assert "fresh epochs" in faults["dip_table_reclaim"][0]
    assert ("dip_table_full" in faults) == (not known)
    assert sim.service.unexpected_errors == 0


# 24 entries: the initial version (8 entries) fits, no later one fits next to it.
@pytest.mark.parametrize("known", [True, False], ids=["size-known", "size-learned"])
def test_dip_table_too_small_for_a_second_version_fails_fast_and_breaks_nothing(
    tmp_path: Path, known: bool
) -> None:
    options = SimOptions(connections=400, seed=21)
    sim = SmallDipTable(options, dip_entries=24, record=tmp_path / "run.jsonl", known=known)
    result = sim.phases(8)
    assert result.broken == 0 and result.dropped == 0
    assert result.rollouts == 0 and result.aborted == (0 if known else 1)
    counters = sim.service.core.view().rollouts
    assert counters.table_too_small > 0
    assert sim.switch.table_num_entries("dip_table") <= 24
    (detail,) = sim.faults()["dip_table_too_small"]  # once, with the numbers
    assert "of 24" in detail and "8 in the active version" in detail
    assert sim.service.unexpected_errors == 0


def test_record_file_on_a_full_disk_loses_records_not_the_controller(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.service.recorder = Recorder("/dev/full")  # every write fails with ENOSPC
    for step in range(6):
        h.report((0.9, 0.1) if step % 2 else (0.1, 0.9))
        h.clock.advance(1.0)
    assert h.counter("record_write_failures_total") > 0
    assert h.metrics.value("record_write_failures_total") == h.counter(
        "record_write_failures_total"
    )
    assert h.alive()


def test_a_bug_in_the_periodic_step_is_counted_and_ticking_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter bug")

    monkeypatch.setattr(h.service, "_export_metrics", broken)
    h.clock.pump([0.05] * 60)  # 3 s of ticks; metrics are exported once a second
    errors = h.service.unexpected_errors
    assert errors >= 2  # it failed on more than one tick: the LoopingCall kept calling
    assert h.service.running
    monkeypatch.undo()
    h.report((0.9, 0.1))
    h.clock.pump([0.05] * 60)
    assert h.service.unexpected_errors == errors


def test_a_switch_that_restarts_empty_is_reprogrammed_with_every_known_connection(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path)
    live = {sport: h.send(sport) for sport in range(7000, 7040)}
    for step in range(6):  # rollouts move the weights: later connections hash differently
        h.report((0.9, 0.1) if step % 2 else (0.1, 0.9))
        live.update({7100 + step: h.send(7100 + step)})
        h.clock.advance(0.5)
    assert h.counter("learn_installed_total") == len(live)
    restarted_at = h.clock.seconds()
    h.switch = h.client.restart_switch()
    assert h.try_send(7999) is None  # an empty switch forwards nothing
    recovered_at = None
    while h.clock.seconds() - restarted_at < 5.0:
        h.clock.advance(0.1)
        if h.try_send(8000) is not None:
            recovered_at = h.clock.seconds()
            break
    assert recovered_at is not None and recovered_at - restarted_at <= 2.0
    h.clock.advance(0.5)  # the reinstalled entries land with the same batch as the version
    assert {sport: h.try_send(sport) for sport in live} == live
    assert h.counter("learn_reinstalled_total") == len(live)
    assert h.counter("switch_state_lost_total") == 1
    for step in range(6):
        h.report((0.9, 0.1) if step % 2 else (0.1, 0.9))
        h.clock.advance(0.5)
    assert {sport: h.send(sport) for sport in live} == live
    assert h.alive()
