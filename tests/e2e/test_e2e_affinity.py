"""Client-IP affinity on Mininet: iperf3 (a control and a data connection per test) through an
affinity VIP completes during a burst of rollouts, while the plain VIP still spreads one
client's connections over several servers."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from topo.addressing import IPERF_PORT, VIP_IP
from topo.lab import Lab, LabOptions, read_jsonl
from topo.mininet_net import stop_process, unavailable_reason
from topo.services import ControllerKnobs

REASON = unavailable_reason() or (None if shutil.which("iperf3") else "iperf3 is not installed")
pytestmark = [pytest.mark.mininet, pytest.mark.skipif(REASON is not None, reason=REASON or "")]
ROLLOUTS = 4
IPERF_RUNS = 6
MAX_IPERF_RUNS = 30


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = Path(tmp_path_factory.mktemp("e2e-affinity"))
    knobs = ControllerKnobs(
        policy="cpu", min_rollout_interval=0.5, quiet_period=1.0, min_weight_change=0.01
    )
    with Lab(workdir, LabOptions(knobs=knobs, iperf=True)) as running:
        yield running


def iperf(lab: Lab, client: str, n: int) -> dict[str, object]:
    """One short, rate-limited iperf3 test from `client` through the affinity VIP (a test whose
    data connection went to another server than its control connection hangs: bounded)."""
    out = lab.workdir / f"iperf3-{client}-{n}.json"
    command = (
        f"timeout 30 iperf3 --client {VIP_IP} --port {IPERF_PORT} --time 2 --bitrate 2M --json "
        f"--connect-timeout 5000 > {out} 2>&1"
    )
    lab.net.cmd(client, command)
    try:
        result: dict[str, object] = json.loads(out.read_text())
    except ValueError:
        return {"error": f"no JSON report (timed out?): {out}"}
    return result


def test_iperf3_through_an_affinity_vip_survives_a_rollout_burst(lab: Lab) -> None:
    start = time.time()
    client = lab.plan.clients[0].name

    def rollouts() -> int:
        return sum(1 for e in lab.events("rollout") if float(e["t"]) > start)

    hosts = [s.host.name for s in lab.servers[:2]]
    results = []
    # Back-to-back iperf3 tests while a CPU burner moves between two servers after each one, so
    # the weights keep changing and the controller keeps rolling out, until enough rollouts
    # happened inside the window (bounded).
    for n in range(MAX_IPERF_RUNS):
        burner = lab.burn(hosts[n % 2])
        try:
            results.append(iperf(lab, client, n))
        finally:
            stop_process(burner)
        if len(results) >= IPERF_RUNS and rollouts() >= ROLLOUTS:
            break
    assert rollouts() >= ROLLOUTS, lab.workdir
    for result in results:
        assert "error" not in result, (result.get("error"), lab.workdir)
        end = result["end"]
        assert isinstance(end, dict) and end["sum_received"]["bytes"] > 0
    pinned = [e for e in lab.events("fault") if str(e.get("what", "")).startswith("affinity_")]
    assert pinned == []  # no client was left unpinned


def test_a_plain_vip_still_spreads_one_clients_connections(lab: Lab) -> None:
    run = lab.client(lab.plan.clients[1].name, 20, 3, name="spread")
    report = lab.finish(run, timeout=60)
    assert report["broken"] == 0 and report["made"] == report["started"] > 20
    servers = {r["server"] for r in read_jsonl(run.log) if r.get("server")}
    assert len(servers) >= 2, servers
