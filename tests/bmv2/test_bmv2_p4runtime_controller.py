"""The controller (ControllerService) on BMv2's simple_switch_grpc through the P4Runtime client:
start-up programming, rollouts and learning from a real packet's digest, and a backup controller
that takes over when the primary goes (skipped unless p4c and simple_switch_grpc are on PATH).

The service runs on a ThreadedClock: the test advances time for the controller's ticks and runs
the client's thread calls until the awaited state, each wait bounded by 10 s.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_switch_harness import GrpcSwitch, compile_with_p4info, tools_missing
from twisted.internet import defer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from p4rt_controllers import DIPS, Controller

from agent.wire import LoadReport, encode_report
from controller.switch.p4runtime_pipeline import PipelineFiles
from topo.frames import SYN, TCP, FlowKey, build_frame

MISSING = tools_missing()
pytestmark = [
    pytest.mark.bmv2,
    pytest.mark.skipif(bool(MISSING), reason=f"not on PATH: {', '.join(MISSING)}"),
]


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[tuple[Controller, GrpcSwitch]]:
    compiled = compile_with_p4info()
    assert compiled.returncode == 0, compiled.output
    files = PipelineFiles(compiled.p4info_path, compiled.json_path)
    with GrpcSwitch(tmp_path) as switch:
        ctl = Controller(switch.address, switch.device_id, files)
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
        first = Controller(switch.address, switch.device_id, files, election_id=2)
        started = defer.ensureDeferred(first.service.start())
        first.until(lambda: started.called)
        assert started.result is None
        flow = FlowKey("10.0.1.2", "10.0.0.100", 4000, 80, TCP)
        switch.send(1, build_frame("00:00:00:00:01:02", "00:01:00:00:00:01", flow, flags=SYN))
        first.until(lambda: first.metric("learn_installed_total") == 1)
        second = Controller(switch.address, switch.device_id, files, election_id=1)
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
