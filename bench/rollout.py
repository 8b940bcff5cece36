"""Rollout latency, decision → flip: `python -m bench rollout [--p4runtime]`.

For each pool size the controller runs on a p4model.Switch (synchronous client, so the time is
the controller's own work plus the model's table writes): loads change, one tick decides the new
weights, builds the prefix entries, gives the next slot a fresh epoch, writes its difference and
flips version_config (two register-free single-entry writes plus the DIP diff). Reported: entries
written per rollout and latency percentiles. With `--p4runtime` the same controller drives a
`p4lb-switch` process over P4Runtime on loopback (its client's worker thread and gRPC
included): the time runs from the tick until the flip's outcome is back.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from twisted.internet import defer, task

import p4model
from agent.wire import LoadReport, encode_report
from bench.report import emit
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.shell.app import ControllerService
from controller.switch.api import SwitchClient
from controller.switch.model_client import ModelSwitchClient
from controller.switch.p4runtime_client import P4RuntimeSwitchClient
from controller.switch.testing import ThreadedClock

BIN = Path(sys.executable).parent
"""Where this interpreter's console scripts (p4lb-switch) are."""

TARGET_MS_64 = 50.0
"""Rollout latency (p95, ms) a 64-DIP pool must stay under."""


def _config(n_dips: int) -> Config:
    weight_bits = max(8, math.ceil(math.log2(n_dips)) + 2)
    dips = tuple(DipConfig(f"10.{1 + i // 250}.{i % 250}.2", 8080, 1) for i in range(n_dips))
    settings = ControllerSettings(
        policy="cpu",
        weight_bits=weight_bits,
        min_rollout_interval=0.0,
        quiet_period=0.0,
        min_weight_change=0.0,
    )
    return Config(settings, (VipConfig("web", "10.0.0.100", 80, "tcp", dips),))


class _Target:
    """Where the controller's operations go, and how the benchmark waits for their outcomes."""

    def __init__(self, p4runtime: bool) -> None:
        self.process: subprocess.Popen[str] | None = None
        if p4runtime:
            self.clock: task.Clock = ThreadedClock()
            self.process = subprocess.Popen(
                [str(BIN / "p4lb-switch"), "--p4runtime", "127.0.0.1:0", "--log-level", "warning"],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self.process.stdout is not None
            ready = self.process.stdout.readline()  # "p4lb-switch ready p4runtime=HOST:PORT ..."
            fields = dict(f.split("=", 1) for f in ready.split()[2:] if "=" in f)
            host, port = fields["p4runtime"].rsplit(":", 1)
            self.client: SwitchClient = P4RuntimeSwitchClient(self.clock, host, int(port))
        else:
            self.clock = task.Clock()
            self.client = ModelSwitchClient(p4model.Switch(clock=self.clock.seconds), self.clock)

    def settle(self, done: Callable[[], bool]) -> None:
        """Run until `done()`: at once on the model; the client's thread calls over P4Runtime."""
        self.clock.advance(0)
        while not done():
            assert isinstance(self.clock, ThreadedClock), "the model completes synchronously"
            self.clock.run_from_threads(1)

    def dip_entries(self) -> int:
        """dip_table's entries, as the switch counts them."""
        counted = defer.ensureDeferred(self.client.table_num_entries("dip_table"))
        self.settle(lambda: counted.called)
        entries = counted.result
        assert isinstance(entries, int)
        return entries

    def close(self, service: ControllerService) -> None:
        stopped = defer.ensureDeferred(service.stop())
        self.settle(lambda: stopped.called)
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


def measure(n_dips: int, rounds: int, seed: int, p4runtime: bool = False) -> dict[str, object]:
    """Latencies (ms) of `rounds` rollouts with `n_dips` members."""
    rng = random.Random(seed)
    target = _Target(p4runtime)
    clock = target.clock
    # No periodic ticks: the benchmark ticks by hand, right after new loads arrive.
    service = ControllerService(clock, _config(n_dips), target.client, tick_interval=1e9)
    started = defer.ensureDeferred(service.start())
    target.settle(lambda: started.called)
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
        target.settle(lambda: service.core.rollouts.commit is None)  # flipped, or aborted
        elapsed = time.perf_counter() - t0
        if service.core.rollouts.counters.rollouts == before + 1:
            latencies.append(elapsed * 1000.0)
            outcome = service.core.rollouts.last_outcome
            entries.append(outcome.entries_written if outcome else 0)
    latencies.sort()
    slots = service.dataplane.version_slots
    entries_per_slot = target.dip_entries() // slots
    target.close(service)
    return {
        "DIPs": n_dips,
        "weight bits": service.config.controller.weight_bits,
        "rollouts": len(latencies),
        "dip_table entries/slot": entries_per_slot,
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
    parser.add_argument(
        "--p4runtime", action="store_true", help="over P4Runtime to a p4lb-switch process"
    )
    args = parser.parse_args(argv)
    rows = [measure(int(n), args.rounds, args.seed, args.p4runtime) for n in args.dips.split(",")]
    where = "P4Runtime to a p4lb-switch process" if args.p4runtime else "in-process model"
    emit(f"Rollout latency, decision -> flip ({where})", rows, args.json)
    slow = [r for r in rows if r["DIPs"] == 64 and float(str(r["p95 ms"])) >= TARGET_MS_64]
    return 1 if slow else 0
