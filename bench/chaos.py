"""A standing fault campaign: `python -m bench chaos`.

Each fault class runs the balancer in one process (topo.sim: controller, in-process model behind
a fault-injecting client, fake agents, thousands of connections on a simulated clock) and
injects its fault at random points of the run:

- `kill`: the controller is killed (no clean stop) and restarted with its `--state` journal;
- `kill-nostate`: the same without a journal (it holds, clears dip_table, rolls out afresh);
- `switch-restart`: the switch restarts empty under the running controller;
- `write-failures`: 5 % of switch writes fail, digests arrive up to 300 ms late, reordered;
- `hostile-reports`: every tick brings malformed, oversize and spoofed load reports (far-future
  timestamps, absurd sequence jumps, other agents' DIPs) beside the genuine ones.

Per class: runs, connections, connections broken (a packet reached another DIP than the
connection's first: must be 0 in every class), packets lost (dropped; a restarted switch loses
the packets of the gap), time to recover (kill: to the new controller's first rollout; switch
restart: to the first new connection served), and rollouts after the last fault (must be > 0).
Idle-connection and oversize-frame floods against the real ZeroMQ feed are `bench feed --flood`.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from agent.wire import LoadReport, encode_report
from bench.report import emit
from controller.config import ControllerSettings
from topo.sim import SimOptions, Simulation

SETTINGS = ControllerSettings(
    min_rollout_interval=0.5,
    quiet_period=0.5,
    report_interval=0.5,
    min_weight_change=0.0,
    restart_hold=3.0,
)


@dataclass
class ChaosRun:
    """What one run of one fault class measured."""

    connections: int = 0
    broken: int = 0
    dropped: int = 0
    recover_s: list[float] | None = None
    rollouts_after: int = 0


def _run(
    sim: Simulation,
    faults: int,
    inject: Callable[[Simulation, random.Random], float | None],
    rng: random.Random,
    phase: float,
) -> ChaosRun:
    """Phases of new loads, a fault after every other one; then a quiet tail."""
    recover: list[float] = []
    t = sim.clock.seconds()
    for _ in range(faults):
        for _ in range(2):
            sim.new_loads()
            t += phase
            sim.advance(t)
        sim.advance(t + rng.uniform(0.0, phase))
        took = inject(sim, rng)
        if took is not None:
            recover.append(took)
        t = sim.clock.seconds()
    before = sim.service.core.view().rollouts.rollouts
    for _ in range(6):
        sim.new_loads()
        t += phase
        sim.advance(t)
    sim.advance(t + 35.0)
    result = sim.finish()
    return ChaosRun(
        result.connections,
        result.broken,
        result.dropped,
        recover,
        sim.service.core.view().rollouts.rollouts - before,
    )


def _kill(state: Path | None) -> Callable[[Simulation, random.Random], float | None]:
    def inject(sim: Simulation, rng: random.Random) -> float | None:
        at = sim.clock.seconds()
        sim.crash(downtime=rng.uniform(0.05, 0.5), state_path=state)
        first = sim.service.core.view().rollouts.rollouts
        while sim.service.core.view().rollouts.rollouts == first:
            if sim.clock.seconds() - at > 60.0:
                return None
            sim.new_loads()
            sim.advance(sim.clock.seconds() + 0.25)
        return sim.clock.seconds() - at

    return inject


def _switch_restart(sim: Simulation, rng: random.Random) -> float | None:
    at = sim.clock.seconds()
    sim.restart_switch()
    sport = 1024
    while sim.probe(sport) is None:
        if sim.clock.seconds() - at > 30.0:
            return None
        sport += 1
        sim.advance(sim.clock.seconds() + 0.05)
    return sim.clock.seconds() - at


def _intruder(sim: Simulation) -> Callable[[float], list[bytes]]:
    """With every round of genuine reports: garbage, oversize frames and lies about each DIP
    (far-future timestamps, absurd sequence jumps)."""

    def messages(now: float) -> list[bytes]:
        out: list[bytes] = []
        for n, pool in enumerate(sim.service.core.pools):
            for m, member in enumerate(pool):
                out.append(b"\xff" * (n + m + 1))
                out.append(b"{" * 5000)
                lie = LoadReport(member.dip, 2**62 - m, now + 1e6, 0.0, 0)
                out.append(encode_report(lie))
        return out

    return messages


def run_class(name: str, seed: int, connections: int, faults: int, state_dir: Path) -> ChaosRun:
    """One run of one fault class."""
    rng = random.Random(seed)
    options = SimOptions(connections=0, write_latency=(0.005, 0.05), settings=SETTINGS, seed=seed)
    if name == "write-failures":
        options = replace(options, write_failure_rate=0.05, digest_delay=(0.0, 0.3))
    sim = Simulation(options)
    state = state_dir / f"{name}-{seed}.json"
    if name == "kill":
        sim.service = sim.make_service(state)
    sim.start()
    if name == "hostile-reports":
        sim.intruder = _intruder(sim)
    phase = 1.0
    sim.open_connections(connections, 0.5, faults * 3 * phase + 6 * phase)
    injectors: dict[str, Callable[[Simulation, random.Random], float | None]] = {
        "kill": _kill(state),
        "kill-nostate": _kill(None),
        "switch-restart": _switch_restart,
        "write-failures": lambda sim, rng: None,
        "hostile-reports": lambda sim, rng: None,
    }
    return _run(sim, faults, injectors[name], rng, phase)


CLASSES = ("kill", "kill-nostate", "switch-restart", "write-failures", "hostile-reports")


def main(argv: list[str]) -> int:
    """Run every fault class and print one row each; exit 1 if a promise was broken."""
    parser = argparse.ArgumentParser(
        prog="python -m bench chaos", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per fault class")
    parser.add_argument("--connections", type=int, default=2000, help="per run")
    parser.add_argument("--faults", type=int, default=4, help="faults per run")
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--state-dir", type=Path, default=Path("/tmp/p4lb-chaos"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.getLogger("controller").setLevel(logging.CRITICAL)
    args.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    rows = []
    failed = False
    for name in args.classes.split(","):
        started = time.perf_counter()
        runs = [
            run_class(name, seed, args.connections, args.faults, args.state_dir)
            for seed in range(1, args.runs + 1)
        ]
        recover = [t for r in runs for t in (r.recover_s or [])]
        row = {
            "fault class": name,
            "runs": len(runs),
            "connections": sum(r.connections for r in runs),
            "broken": sum(r.broken for r in runs),
            "packets lost": sum(r.dropped for r in runs),
            "recover s (median)": statistics.median(recover) if recover else None,
            "recover s (max)": max(recover) if recover else None,
            "rollouts after (min)": min(r.rollouts_after for r in runs),
            "wall s": round(time.perf_counter() - started, 1),
        }
        failed = failed or row["broken"] != 0 or row["rollouts after (min)"] == 0
        rows.append(row)
    emit("Fault campaign (simulated clock, in-process model)", rows, args.json)
    return 1 if failed else 0
