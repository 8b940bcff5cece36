"""Rollout latency, decision → flip, on the in-process model: `python -m bench rollout`.

For each pool size the controller runs on a p4model.Switch (synchronous client, so the time is
the controller's own work plus the model's table writes): loads change, one tick decides the new
weights, builds the prefix entries, gives the next slot a fresh epoch, writes its difference and
flips version_config (two register-free single-entry writes plus the DIP diff). Reported: entries
written per rollout and latency percentiles.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from pathlib import Path

from twisted.internet import defer, task

import p4model
from agent.wire import LoadReport, encode_report
from bench.report import emit
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.shell.app import ControllerService
from controller.switch.model_client import ModelSwitchClient

TARGET_MS_64 = 50.0
"""Rollout latency (p95, ms) a 64-DIP pool must stay under."""


def _service(n_dips: int, clock: task.Clock) -> ControllerService:
    weight_bits = max(8, math.ceil(math.log2(n_dips)) + 2)
    dips = tuple(DipConfig(f"10.{1 + i // 250}.{i % 250}.2", 8080, 1) for i in range(n_dips))
    settings = ControllerSettings(
        policy="cpu",
        weight_bits=weight_bits,
        min_rollout_interval=0.0,
        quiet_period=0.0,
        min_weight_change=0.0,
    )
    config = Config(settings, (VipConfig("web", "10.0.0.100", 80, "tcp", dips),))
    switch = p4model.Switch(clock=clock.seconds)
    # No periodic ticks: the benchmark ticks by hand, right after new loads arrive.
    client = ModelSwitchClient(switch, clock)
    return ControllerService(clock, config, client, tick_interval=1e9)


def measure(n_dips: int, rounds: int, seed: int) -> dict[str, object]:
    """Latencies (ms) of `rounds` rollouts with `n_dips` members."""
    rng = random.Random(seed)
    clock = task.Clock()
    service = _service(n_dips, clock)
    started = defer.ensureDeferred(service.start())
    clock.advance(0)
    assert started.called, "the model client completes start-up synchronously"
    members = [m.dip for m in service.core.pools[0]]
    latencies: list[float] = []
    entries: list[int] = []
    for seq in range(1, rounds + 1):
        clock.advance(1.0)
        for dip in members:
            service.ingest_report(
                encode_report(LoadReport(dip, seq, clock.seconds(), rng.uniform(0.1, 0.95), 0))
            )
        before = service.core.rollouts.counters.rollouts
        t0 = time.perf_counter()
        service.tick()
        elapsed = time.perf_counter() - t0
        if service.core.rollouts.counters.rollouts == before + 1:
            latencies.append(elapsed * 1000.0)
            outcome = service.core.rollouts.last_outcome
            entries.append(outcome.entries_written if outcome else 0)
    latencies.sort()
    table = service.switch  # the model client's switch holds every slot
    assert isinstance(table, ModelSwitchClient)
    return {
        "DIPs": n_dips,
        "weight bits": service.config.controller.weight_bits,
        "rollouts": len(latencies),
        "dip_table entries/slot": table.switch.table_num_entries("dip_table")
        // table.switch.settings.version_slots,
        "writes/rollout (median)": int(statistics.median(entries)) if entries else 0,
        "median ms": round(statistics.median(latencies), 2),
        "p95 ms": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        "max ms": round(latencies[-1], 2),
    }


def main(argv: list[str]) -> int:
    """Print the latency table; exit 1 if 64 DIPs miss the 50 ms p95 target."""
    parser = argparse.ArgumentParser(
        prog="python -m bench rollout", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dips", default="4,64,1024", help="comma-separated pool sizes")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = [measure(int(n), args.rounds, args.seed) for n in args.dips.split(",")]
    emit("Rollout latency, decision -> flip (in-process model)", rows, args.json)
    slow = [r for r in rows if r["DIPs"] == 64 and float(str(r["p95 ms"])) >= TARGET_MS_64]
    return 1 if slow else 0
