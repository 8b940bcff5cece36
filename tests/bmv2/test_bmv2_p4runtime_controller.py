"""The controller (ControllerService) on BMv2's simple_switch_grpc through the P4Runtime client:
start-up programming, rollouts and learning from a real packet's digest, and a backup controller
that takes over when the primary goes (skipped unless p4c and simple_switch_grpc are on PATH).

The service runs on a ThreadedClock: the test advances time for the controller's ticks and runs
the client's thread calls until the awaited state, each wait bounded by 10 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from grpc_switch_harness import GrpcSwitch, compile_with_p4info, tools_missing
from twisted.internet import defer

from agent.wire import LoadReport, encode_report
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.shell.app import ControllerService
from controller.shell.metrics import Metrics
from controller.switch.p4runtime_client import P4RuntimeSwitchClient
from controller.switch.p4runtime_pipeline import PipelineFiles
from controller.switch.testing import ThreadedClock
from topo.frames import SYN, TCP, FlowKey, build_frame

MISSING = tools_missing()
pytestmark = [
    pytest.mark.bmv2,
    pytest.mark.skipif(bool(MISSING), reason=f"not on PATH: {', '.join(MISSING)}"),
]

DIPS = ("10.0.2.2", "10.0.3.2")
TICK = 0.05


class Controller:
    """A ControllerService over P4Runtime on a ThreadedClock."""

    def __init__(self, switch: GrpcSwitch, files: PipelineFiles, election_id: int = 1) -> None:
        self.clock = ThreadedClock()
        host, port = switch.address.rsplit(":", 1)
        self.client = P4RuntimeSwitchClient(
            self.clock,
            host,
            int(port),
            device_id=switch.device_id,
            election_id=election_id,
            pipeline=files,
        )
        dips = tuple(DipConfig(ip, 8080, 1) for ip in DIPS)
        settings = ControllerSettings(policy="cpu", min_rollout_interval=0.5, quiet_period=0.5)
        config = Config(settings, (VipConfig("web", "10.0.0.100", 80, "tcp", dips),))
        self.metrics = Metrics()
        self.service = ControllerService(self.clock, config, self.client, metrics=self.metrics)

    def until(self, condition: Callable[[], bool], limit: float = 30.0) -> None:
        """Let the controller run (ticks and the client's thread calls) until `condition` holds.

        Simulated time moves a tick at a time; between ticks the client's answers from the
        switch are awaited briefly (they are the only other events).
        """
        deadline = time.monotonic() + limit
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not reached in {limit} s")
            try:
                self.clock.run_from_threads(1, timeout=0.05)
            except TimeoutError:
                self.clock.advance(TICK)  # nothing from the switch: time for the next tick

    def metric(self, name: str) -> float:
        """A counter's value (0 when unset)."""
        return self.metrics.value(name) or 0.0


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[tuple[Controller, GrpcSwitch]]:
    compiled = compile_with_p4info()
    assert compiled.returncode == 0, compiled.output
    files = PipelineFiles(compiled.p4info_path, compiled.json_path)
    with GrpcSwitch(tmp_path) as switch:
        ctl = Controller(switch, files)
        started = defer.ensureDeferred(ctl.service.start())
        ctl.until(lambda: started.called)
        assert started.result is None
        yield ctl, switch
        stopped = defer.ensureDeferred(ctl.service.stop())
        ctl.until(lambda: stopped.called)


def test_the_controller_programs_rolls_out_and_learns_over_p4runtime(
    controller: tuple[Controller, GrpcSwitch],
) -> None:
    ctl, switch = controller
    assert ctl.metric("rollouts_total") == 1  # the initial version
    for seq, cpus in enumerate([(0.9, 0.1), (0.1, 0.9)], start=1):
        for ip, cpu in zip(DIPS, cpus, strict=True):
            report = LoadReport(f"{ip}:8080", seq, ctl.clock.seconds(), cpu, 3)
            ctl.service.ingest_report(encode_report(report))
        ctl.until(lambda seq=seq: ctl.metric("rollouts_total") == 1 + seq)  # type: ignore[misc]
    flow = FlowKey("10.0.1.2", "10.0.0.100", 4000, 80, TCP)
    switch.send(1, build_frame("00:00:00:00:01:02", "00:01:00:00:00:01", flow, flags=SYN))
    ctl.until(lambda: ctl.metric("learn_installed_total") == 1)
    conns = defer.ensureDeferred(ctl.client.table_num_entries("conn_table"))
    ctl.until(lambda: conns.called)
    assert conns.result == 1


def test_a_backup_controller_takes_over_when_the_primary_goes(tmp_path: Path) -> None:
    compiled = compile_with_p4info()
    assert compiled.returncode == 0, compiled.output
    files = PipelineFiles(compiled.p4info_path, compiled.json_path)
    with GrpcSwitch(tmp_path) as switch:
        first = Controller(switch, files, election_id=2)
        started = defer.ensureDeferred(first.service.start())
        first.until(lambda: started.called)
        assert started.result is None
        flow = FlowKey("10.0.1.2", "10.0.0.100", 4000, 80, TCP)
        switch.send(1, build_frame("00:00:00:00:01:02", "00:01:00:00:00:01", flow, flags=SYN))
        first.until(lambda: first.metric("learn_installed_total") == 1)
        second = Controller(switch, files, election_id=1)
        waiting = defer.ensureDeferred(second.service.start())
        second.until(lambda: second.metrics.value("primary") == 0.0)
        second.until(lambda: second.clock.seconds() > 2.0)  # a while as a backup
        assert not waiting.called and second.client.write_requests == 0
        stopped = defer.ensureDeferred(first.service.stop())  # its stream ends: next in line
        first.until(lambda: stopped.called)
        second.until(lambda: waiting.called)
        assert waiting.result is None and second.metrics.value("primary") == 1.0
        # The connection the first controller installed stays; the new primary learns new ones.
        conns = defer.ensureDeferred(second.client.table_num_entries("conn_table"))
        second.until(lambda: conns.called)
        assert conns.result == 1
        other = FlowKey("10.0.1.2", "10.0.0.100", 4001, 80, TCP)
        switch.send(1, build_frame("00:00:00:00:01:02", "00:01:00:00:00:01", other, flags=SYN))
        second.until(lambda: second.metric("learn_installed_total") == 1)
        stopped = defer.ensureDeferred(second.service.stop())
        second.until(lambda: stopped.called)
