"""Per-packet consistency under rollouts: `python -m bench pcc`.

Runs topo.sim (controller + in-process model + fake agents on a simulated clock) with injected
write latency and reports connections, packets, rollouts, broken connections (must be 0) and the
share error (largest gap between observed and expected new-connection shares, percentage points).
Exit status 1 if any connection broke or the share error exceeds --max-share-error.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from bench.report import emit
from topo.sim import SimOptions, Simulation


def _range_ms(text: str) -> tuple[float, float]:
    """Parse "LO:HI" (or "LO") milliseconds into (low, high) seconds."""
    lo, _, hi = text.partition(":")
    low, high = float(lo), float(hi or lo)
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError(f"{text!r} is not LO:HI milliseconds with 0 <= LO <= HI")
    return low / 1000.0, high / 1000.0


def main(argv: list[str]) -> int:
    """Run the scenario and print one row."""
    parser = argparse.ArgumentParser(
        prog="python -m bench pcc", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--rollouts", type=int, default=100)
    # The defaults are in seconds, as _range_ms returns them.
    parser.add_argument(
        "--write-latency",
        type=_range_ms,
        default=(0.01, 0.2),
        metavar="LO:HI",
        help="added to every switch write, ms (default 10:200)",
    )
    parser.add_argument(
        "--digest-delay",
        type=_range_ms,
        default=(0.0, 0.05),
        metavar="LO:HI",
        help="added to every digest, ms (default 0:50)",
    )
    parser.add_argument("--write-failure-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-share-error", type=float, default=2.0, help="percentage points")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--verbose", action="store_true", help="show the controller's log")
    args = parser.parse_args(argv)
    if not args.verbose:  # injected faults make every aborted rollout log a warning
        logging.getLogger("controller").setLevel(logging.ERROR)
    options = SimOptions(
        connections=args.connections,
        rollouts=args.rollouts,
        write_latency=args.write_latency,
        digest_delay=args.digest_delay,
        write_failure_rate=args.write_failure_rate,
        seed=args.seed,
    )
    started = time.perf_counter()
    sim = Simulation(options)
    result = sim.run()
    wall = time.perf_counter() - started
    lo, hi = args.write_latency
    row = {
        "connections": result.connections,
        "packets": result.packets,
        "rollouts": result.rollouts,
        "aborted": result.aborted,
        "write latency ms": f"{lo * 1000:g}-{hi * 1000:g}",
        "broken": result.broken,
        "dropped": result.dropped,
        "share error pp": round(result.share_error_pp, 2),
        "simulated s": round(sim.clock.seconds(), 1),
        "wall s": round(wall, 1),
    }
    emit("Per-packet consistency through rollouts (model, simulated clock)", [row], args.json)
    return 0 if result.broken == 0 and result.share_error_pp <= args.max_share_error else 1
