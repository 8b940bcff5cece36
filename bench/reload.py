"""Declarative reload on the in-process model: `python -m bench reload`.

For each pool size a controller runs on a p4model.Switch with default timers (rollouts at most
every second, slots quiet for 2 s before reuse, slow start 10 s) and every agent reporting.
Each round reloads a file that adds one member, removes one, changes one weight and adds a VIP;
reported: the wall time of the reload call itself (validation excluded: the plan and the core's
work), and in simulated seconds how long until the new member has weight in the active version,
until it has 90 % of the weight it holds 30 s later (slow start, then the rollouts' dead-band),
and until the new VIP's entry is in vip_table (after every version slot holds its pool).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

from twisted.internet import defer, task

import p4model
from agent.wire import LoadReport, encode_report
from bench.report import emit
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.shell.app import ControllerService
from controller.switch.model_client import ModelSwitchClient
from p4src.contract import VIP_TABLE

STEP = 0.05
WATCH = 30.0
"""Simulated seconds watched after each reload."""


def _dips(n: int, port: int) -> tuple[DipConfig, ...]:
    return tuple(DipConfig(f"10.{1 + i // 250}.{i % 250}.2", port, 1) for i in range(n))


def _config(n_dips: int) -> Config:
    settings = ControllerSettings(
        policy="static", weight_bits=max(8, math.ceil(math.log2(n_dips)) + 2)
    )
    return Config(settings, (VipConfig("web", "10.0.0.100", 80, "tcp", _dips(n_dips, 8080)),))


def _changed(config: Config) -> tuple[Config, str]:
    web = config.vips[0]
    added = DipConfig("10.200.0.2", 8080, 1)
    dips = (replace(web.dips[0], weight=2), *web.dips[2:], added)
    api = VipConfig("api", "10.0.0.101", 443, "tcp", _dips(4, 9443))
    return replace(config, vips=(replace(web, dips=dips), api)), added.name


class _Run:
    """A controller on a test clock whose agents all report every 0.5 s."""

    def __init__(self, clock: task.Clock, service: ControllerService) -> None:
        self.clock, self.service, self.seq = clock, service, 0

    def advance(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            self.clock.advance(STEP)
            self.seq += 1
            if self.seq % 10 == 0:
                for pool in self.service.core.pools:
                    for m in pool:
                        report = LoadReport(m.dip, self.seq, self.clock.seconds(), 0.5, 0)
                        self.service.ingest_report(encode_report(report))


def measure(n_dips: int, rounds: int) -> dict[str, object]:
    """Reload cost and time to effect with `n_dips` members."""
    apply_ms: list[float] = []
    first: list[float] = []
    full: list[float] = []
    vip: list[float] = []
    for _ in range(rounds):
        clock = task.Clock()
        config = _config(n_dips)
        switch = p4model.Switch(clock=clock.seconds)
        service = ControllerService(clock, config, ModelSwitchClient(switch, clock))
        started = defer.ensureDeferred(service.start())
        clock.advance(0)
        assert started.called, "the model client completes start-up synchronously"
        run = _Run(clock, service)
        run.advance(3.0)
        new, added = _changed(config)
        t0 = time.perf_counter()
        service.reload(new)
        apply_ms.append((time.perf_counter() - t0) * 1000.0)
        start = clock.seconds()
        trace: list[tuple[float, int]] = []
        vip_at = math.inf
        while clock.seconds() - start < WATCH:
            run.advance(STEP)
            now = clock.seconds() - start
            trace.append((now, service.core.view().pools[0].active_weight(added)))
            if vip_at == math.inf and switch.table_num_entries(VIP_TABLE) == 2:
                vip_at = now
        settled = trace[-1][1]
        first.append(next((t for t, w in trace if w > 0), math.inf))
        full.append(next((t for t, w in trace if w >= 0.9 * settled > 0), math.inf))
        vip.append(vip_at)
    return {
        "DIPs": n_dips,
        "reload ms (median)": round(statistics.median(apply_ms), 2),
        "reload ms (max)": round(max(apply_ms), 2),
        "new member: first weight s": round(statistics.median(first), 2),
        "90 % of its share s": round(statistics.median(full), 2),
        "new VIP in vip_table s": round(statistics.median(vip), 2),
    }


def main(argv: list[str]) -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m bench reload", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dips", default="4,64,1024", help="comma-separated pool sizes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = [measure(int(n), args.rounds) for n in args.dips.split(",")]
    emit("Declarative reload (in-process model, default timers)", rows, args.json)
    return 0
