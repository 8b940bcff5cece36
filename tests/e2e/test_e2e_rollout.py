"""A burst of rollouts under continuous traffic breaks no connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from topo.lab import Lab, LabOptions
from topo.mininet_net import stop_process, unavailable_reason, wait_for
from topo.services import ControllerKnobs

REASON = unavailable_reason()
pytestmark = [pytest.mark.mininet, pytest.mark.skipif(REASON is not None, reason=REASON or "")]
ROLLOUTS = 6


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = Path(tmp_path_factory.mktemp("e2e-rollout"))
    knobs = ControllerKnobs(
        policy="cpu", min_rollout_interval=0.5, quiet_period=1.0, min_weight_change=0.01
    )
    with Lab(workdir, LabOptions(knobs=knobs)) as running:
        yield running


def test_rollout_burst_under_traffic_breaks_nothing(lab: Lab) -> None:
    start = time.time()
    # long-lived connections (4 requests over 3 s) so many of them span several rollouts
    extra = ["--requests", "4", "--lifetime", "3", "--timeout", "30", "--size", "512"]
    runs = [lab.client(h.name, 15, 300, extra=extra) for h in lab.plan.clients]

    def in_flight() -> int:
        latest = {e["dip"]: int(e.get("conns") or 0) for e in lab.events("load")}
        return sum(latest.values())

    wait_for(lambda: in_flight() >= 20, 60, "connections in flight before the burst", 0.25)

    def rollouts() -> int:
        return sum(1 for e in lab.events("rollout") if float(e["t"]) > start)

    # Alternate a CPU burner between two servers: every move changes the weights.
    hosts = [s.host.name for s in lab.servers[:2]]
    for turn in range(ROLLOUTS):
        seen = rollouts()

        def rolled(seen: int = seen) -> bool:
            return rollouts() > seen

        burner = lab.burn(hosts[turn % 2])
        try:
            wait_for(rolled, 60, f"rollout #{seen + 1}", 0.25)
        finally:
            stop_process(burner)
    reports = [lab.finish(run, timeout=120, interrupt=True) for run in runs]
    assert rollouts() >= ROLLOUTS
    for report in reports:
        assert report["started"] > 0
        assert report["broken"] == 0, (report, lab.workdir)
        assert report["made"] == report["started"], report
