"""A killed server is marked down, gets no new connections, and only its connections fail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from topo.apps.outcome import ConnectionRecord
from topo.lab import Lab, LabOptions, read_jsonl
from topo.mininet_net import unavailable_reason, wait_for
from topo.services import ControllerKnobs

REASON = unavailable_reason()
pytestmark = [pytest.mark.mininet, pytest.mark.skipif(REASON is not None, reason=REASON or "")]
LIFETIME = 3.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = Path(tmp_path_factory.mktemp("e2e-failure"))
    with Lab(workdir, LabOptions(knobs=ControllerKnobs(policy="equal"))) as running:
        yield running


def _records(path: Path) -> list[ConnectionRecord]:
    return [ConnectionRecord.from_json(line) for line in read_jsonl(path)]


def test_killed_server_is_marked_down_and_only_its_connections_fail(lab: Lab) -> None:
    dead = lab.dips[-1]
    extra = ["--requests", "3", "--lifetime", str(LIFETIME), "--timeout", "10"]
    run = lab.client("h1", 20, 300, extra=extra)
    wait_for(
        lambda: sum(r.server == dead for r in _records(run.log)) >= 3,
        60,
        f"{dead} to serve connections",
    )
    killed = time.time()
    lab.kill_server(lab.servers[-1].host.name)
    lab.wait_weights(lambda w: w.get(dead) == 0, 30, f"the weight of {dead} to drop to 0")
    zeroed = time.time()
    wait_for(
        lambda: sum(r.start > zeroed + 1 for r in _records(run.log)) >= 60,
        90,
        "60 connections started after the weight change to finish",
    )
    report = lab.finish(run, timeout=120, interrupt=True)
    records = _records(run.log)
    assert any(
        e.get("dip") == dead and e.get("state") == "down" and float(e["t"]) > killed
        for e in lab.events("load")
    ), "the controller never recorded the killed server as down"
    broken = [r for r in records if r.outcome != "ok"]
    assert any(r.server == dead for r in broken), "no connection on the killed server broke"
    for r in broken:
        # answered by the dead server before it died, or sent to it before its weight fell
        assert r.server in (dead, None), r
        assert killed - LIFETIME - 12 <= r.start <= zeroed + 1, (r, killed, zeroed)
    later = [r for r in records if r.start > zeroed + 1]
    assert later and all(r.outcome == "ok" and r.server != dead for r in later), report
    assert report["misrouted"] == 0 and report["corrupt"] == 0, report
