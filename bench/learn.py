"""Learning rate: new connections per second the controller installs on the model.

`python -m bench learn`: N new connections' first packets go through an in-process p4model.Switch
(each raises a new_conn digest); then the digests are delivered to the controller, which learns
each connection and writes its conn_table entry (and idle timeout) through the model client.
Reported: the controller's rate (digest in → entry acknowledged) and the end-to-end rate
including the model's packet processing.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from twisted.internet import defer, task

import p4model
from bench.report import emit
from controller.config import Config, ControllerSettings, DipConfig, VipConfig
from controller.shell.app import ControllerService
from controller.switch.model_client import ModelSwitchClient
from topo.frames import SYN, TCP, FlowKey, build_frame

TARGET_PER_S = 2000.0
VIP = "10.0.0.100"


def measure(connections: int, batch: int, seed: int) -> dict[str, object]:
    """Learn `connections` new connections in batches of `batch`; returns one table row."""
    rng = random.Random(seed)
    clock = task.Clock()
    switch = p4model.Switch(clock=clock.seconds)
    dips = tuple(DipConfig(f"10.0.{2 + i}.2", 8080, 1) for i in range(4))
    config = Config(ControllerSettings(policy="static"), (VipConfig("web", VIP, 80, "tcp", dips),))
    service = ControllerService(
        clock, config, ModelSwitchClient(switch, clock), dataplane=switch.settings
    )
    defer.ensureDeferred(service.start())
    clock.advance(0)
    flows = {
        (
            f"10.{rng.randrange(1, 200)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            rng.randrange(1024, 65536),
        )
        for _ in range(connections * 2)
    }
    chosen = list(flows)[:connections]
    model_s = controller_s = 0.0
    for start in range(0, len(chosen), batch):
        frames = [
            build_frame(
                "00:00:00:00:00:01", "00:00:00:00:00:02", FlowKey(ip, VIP, port, 80, TCP), flags=SYN
            )
            for ip, port in chosen[start : start + batch]
        ]
        t0 = time.perf_counter()
        for frame in frames:
            switch.process(1, frame)
        t1 = time.perf_counter()
        clock.advance(0)  # deliver the digests: the controller learns and installs
        t2 = time.perf_counter()
        model_s += t1 - t0
        controller_s += t2 - t1
    installed = switch.table_num_entries("conn_table")
    return {
        "connections": len(chosen),
        "installed": installed,
        "controller conns/s": round(installed / controller_s),
        "end-to-end conns/s": round(installed / (controller_s + model_s)),
        "model packet s": round(model_s, 2),
        "controller s": round(controller_s, 2),
    }


def main(argv: list[str]) -> int:
    """Print the learning rate; exit 1 below the 2,000 conns/s target or if any entry is missing."""
    parser = argparse.ArgumentParser(
        prog="python -m bench learn", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--connections", type=int, default=20_000)
    # task.Clock re-sorts its pending calls on every callLater, so huge batches measure the test
    # clock rather than the controller; 50 digests per round is a realistic notification batch.
    parser.add_argument("--batch", type=int, default=50, help="packets per delivery round")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    row = measure(args.connections, args.batch, args.seed)
    emit(
        "Learning rate: new connections installed by the controller (in-process model)",
        [row],
        args.json,
    )
    ok = (
        row["installed"] == row["connections"]
        and float(str(row["controller conns/s"])) >= TARGET_PER_S
    )
    return 0 if ok else 1
