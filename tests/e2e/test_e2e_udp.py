"""UDP through p4lb-switch: flows spread over the servers, answers come back from the VIP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from topo.lab import Lab, LabOptions
from topo.mininet_net import unavailable_reason
from topo.services import ControllerKnobs

REASON = unavailable_reason()
pytestmark = [pytest.mark.mininet, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = Path(tmp_path_factory.mktemp("e2e-udp"))
    options = LabOptions(udp=True, knobs=ControllerKnobs(policy="equal"))
    with Lab(workdir, options) as running:
        yield running


def test_udp_flows_are_balanced_and_answered_from_the_vip(lab: Lab) -> None:
    # Each flow is a socket connected to the VIP: only answers rewritten back to VIP:53 reach
    # it, and all three datagrams of a flow must be answered by the same server.
    run = lab.client(
        "h1", 40, 5, udp=True, extra=["--requests", "3", "--lifetime", "0.4", "--timeout", "5"]
    )
    report = lab.finish(run, timeout=90)
    assert report["broken"] == 0, (report, lab.workdir)
    assert report["made"] == report["started"] >= 150
    shares = report["share"]
    assert set(shares) == set(lab.dips), shares
    for dip in lab.dips:
        assert abs(shares[dip] - 0.25) < 0.12, shares


def test_tcp_and_udp_share_the_servers(lab: Lab) -> None:
    tcp = lab.client("h2", 20, 3)
    report = lab.finish(tcp, timeout=60)
    assert report["broken"] == 0 and report["made"] == report["started"] > 0, report
