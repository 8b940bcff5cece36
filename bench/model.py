"""`python -m bench model`: packets per second of the reference model.

In-process (`inprocess_rows`, here): conn_table hits, new connections through the Bloom/LPM
path, and plain routing, on one core. Through `p4lb-switch` between veth pairs:
`bench.model_veth.veth_rows` (root only; no rows otherwise).

`--reference DIR` compares with another checkout of the repository (e.g. `git archive
COMMIT | tar -x -C DIR`): its own `python -m bench model` runs in a subprocess, alternating
round by round with this one, so both are measured in the same minutes on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.model_veth import veth_rows
from bench.report import emit
from p4model import Digest, Switch

VIP = bytes([10, 0, 0, 100])
_ETH = bytes.fromhex("00000a00010200010a0001010800")
_TCP_TAIL = bytes.fromhex("00000001000000005010200000000000")  # ACK, no checksum
PAYLOAD = bytes(range(100))


def _frame(client: int, sport: int, dst: bytes = VIP, dport: int = 80) -> bytes:
    """A TCP frame from 10.1.x.y:sport to dst:dport with a 100-byte payload."""
    total = 20 + 20 + len(PAYLOAD)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        0,
        0,
        64,
        6,
        0,
        bytes([10, 1, client >> 8, client & 0xFF]),
        dst,
    )
    return _ETH + ip + struct.pack("!HH", sport, dport) + _TCP_TAIL + PAYLOAD


def _base_switch() -> Switch:
    switch = Switch()
    switch.table_add(
        "ipv4_lpm", "forward", ["10.0.2.0/24"], ["2", "00:01:0a:00:02:01", "00:00:0a:00:02:02"]
    )
    switch.table_add(
        "ipv4_lpm", "forward", ["10.0.0.0/24"], ["3", "00:01:0a:00:00:01", "00:00:0a:00:00:02"]
    )
    switch.table_add("vip_table", "set_pool", ["10.0.0.100", "80", "6"], ["0", "0"])
    # As between two rollouts: version 1 active, version 0 still remembered by its Bloom filter,
    # so a new connection reads both filters' cells and tags version 1's.
    switch.table_set_default("version_config", "set_versions", ["1", "5", "6", "0", "0"])
    for version in range(2):
        for i in range(16):  # 16 equal buckets of 4096 hash values
            switch.table_add(
                "dip_table",
                "rewrite_dst",
                [str(version), "0", f"{i << 12}/4"],
                [f"10.0.2.{i + 2}", "8080"],
            )
    return switch


def _measure(switch: Switch, frames: list[bytes], packets: int) -> float:
    """Seconds to process `packets` frames (cycling through `frames`)."""
    process = switch.process
    count = len(frames)
    start = time.perf_counter()
    for i in range(packets):
        process(1, frames[i % count])
    return time.perf_counter() - start


def _conn_hits(packets: int) -> tuple[Switch, list[bytes]]:
    switch = _base_switch()
    frames = []
    for flow in range(1000):
        client, sport = 1 + flow // 100, 10000 + flow
        ip = f"10.1.{client >> 8}.{client & 0xFF}"
        switch.table_add(
            "conn_table",
            "rewrite_dst",
            [ip, "10.0.0.100", str(sport), "80", "6"],
            ["10.0.2.2", "8080"],
        )
        frames.append(_frame(client, sport))
    return switch, frames


def _new_connections(packets: int) -> tuple[Switch, list[bytes]]:
    switch = _base_switch()
    return switch, [_frame(1 + i // 50000, 10000 + i % 50000) for i in range(packets)]


def _routed(packets: int) -> tuple[Switch, list[bytes]]:
    return _base_switch(), [
        _frame(1, 10000 + i, dst=bytes([10, 0, 2, 9]), dport=22) for i in range(100)
    ]


CASES: list[tuple[str, Callable[[int], tuple[Switch, list[bytes]]]]] = [
    ("conn_table hit (rewrite + checksums)", _conn_hits),
    ("new connection (Bloom + flow hash + dip_table + digest)", _new_connections),
    ("routed only (not a VIP)", _routed),
]


def inprocess_rows(packets: int) -> list[dict[str, Any]]:
    """One row per in-process case: packets, seconds and packets per second on one core."""
    rows = []
    for name, build in CASES:
        switch, frames = build(packets)
        digests: list[Digest] = []
        switch.subscribe(digests.append)
        _measure(switch, frames[: min(len(frames), 1000)], min(packets, 2000))  # warm-up
        seconds = _measure(switch, frames, packets)
        rows.append(
            {
                "case": f"in-process: {name}",
                "packets": packets,
                "lost": 0,
                "seconds": round(seconds, 3),
                "pkts_per_s": packets / seconds,
            }
        )
    return rows


def checkout_rows(checkout: Path, packets: int) -> list[dict[str, Any]]:
    """The in-process rows of the checkout at `checkout`, run by its own bench in a fresh
    interpreter (both sides alike: a long-lived process's heap slows the garbage collector)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        command = [sys.executable, "-m", "bench", "model", "--no-veth", "--packets", str(packets)]
        subprocess.run(
            [*command, "--json", str(out)],
            cwd=checkout,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rows: list[dict[str, Any]] = json.loads(out.read_text())["rows"]
        return rows


def comparison_rows(reference: Path, packets: int, rounds: int) -> list[dict[str, Any]]:
    """Per case: median packets/s of the reference and of this checkout over alternating rounds,
    their range, and the ratio of the medians."""
    old: dict[str, list[float]] = {}
    new: dict[str, list[float]] = {}
    for _ in range(rounds):
        for side, checkout in ((old, reference), (new, Path(__file__).resolve().parents[1])):
            for row in checkout_rows(checkout, packets):
                side.setdefault(row["case"], []).append(row["pkts_per_s"])
    out = []
    for case, new_rates in new.items():
        old_rates = old.get(case, [])
        if not old_rates:
            continue
        old_median, new_median = statistics.median(old_rates), statistics.median(new_rates)
        out.append(
            {
                "case": case,
                "rounds": rounds,
                "old_pkts_per_s": old_median,
                "old_range": f"{min(old_rates):,.0f}-{max(old_rates):,.0f}",
                "new_pkts_per_s": new_median,
                "new_range": f"{min(new_rates):,.0f}-{max(new_rates):,.0f}",
                "speedup": new_median / old_median,
            }
        )
    return out


def main(argv: list[str]) -> int:
    """Run the model benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m bench model", description=__doc__)
    parser.add_argument(
        "--packets", type=int, default=50000, help="packets per case (default 50000)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    parser.add_argument("--no-veth", action="store_true", help="skip the p4lb-switch veth cases")
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="a checkout to compare with: in-process cases only, old and new alternating",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds with --reference (default 5)"
    )
    args = parser.parse_args(argv)
    if args.reference is not None:
        rows = comparison_rows(args.reference.resolve(), args.packets, args.rounds)
        emit(
            f"p4model packets per second: {args.reference} (old) vs this checkout", rows, args.json
        )
        return 0
    rows = inprocess_rows(args.packets)
    if not args.no_veth:
        rows += veth_rows(min(args.packets, 20000))
    emit("p4model packets per second", rows, args.json)
    return 0
