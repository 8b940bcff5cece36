"""Switch writes over P4Runtime: `python -m bench p4runtime [--switch p4rt://HOST:PORT?device_id=N]`.

Through the controller's P4RuntimeSwitchClient (the same batching the controller uses):
- learning: conn_table inserts, each followed by its idle timeout (MODIFY), as the learner
  writes them, in rounds of `--batch` connections; reported as connections installed per second;
- rollout: a version slot's dip_table entries written in one apply, then version_config's
  default flipped; reported as latency per slot size (the switch part of a rollout).
Without `--switch`, it compiles p4src/loadbalancer.p4 with p4c and starts its own
`simple_switch_grpc --no-p4` on a free loopback port (skipped, exit 0, when either is missing).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twisted.internet import defer

from bench.report import emit
from controller.core.ops import (
    DefaultActionSet,
    EntryTimeoutSet,
    Owner,
    SwitchOp,
    TableClear,
    TableInsert,
)
from controller.switch.connect import connect_switch
from controller.switch.p4runtime_client import P4RuntimeSwitchClient
from controller.switch.p4runtime_pipeline import PipelineFiles
from controller.switch.testing import ThreadedClock
from p4src.contract import PROGRAM_PATH

OWNER = Owner.LEARNING
STARTUP_LIMIT = 30.0
VIP = "10.0.0.100"
IDLE_MS = 30_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_switch(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """simple_switch_grpc on a free loopback port: (process, address), once its own log says it
    listens (a port taken meanwhile by another process makes it complain: try another)."""
    log_path = workdir / "switch.log"
    for _ in range(3):
        address = f"127.0.0.1:{_free_port()}"
        # stdbuf: the "Server listening" line must reach the log at once, not at exit.
        cmd = ["stdbuf", "-oL", "simple_switch_grpc", "--no-p4", "--device-id", "1"]
        cmd += ["--thrift-port", str(_free_port()), "--", "--grpc-server-addr", address]
        with log_path.open("w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_LIMIT
        while time.monotonic() < deadline:  # a starting process has no "ready" event
            text = log_path.read_text(errors="replace")
            if "No address added" in text or proc.poll() is not None:
                break  # PI prints "Server listening" even then: the bind error comes first
            if f"Server listening on {address}" in text:
                return proc, address
            time.sleep(0.05)
        proc.terminate()
        proc.wait(timeout=10)
    raise RuntimeError(f"simple_switch_grpc did not start: {log_path.read_text()[-1000:]}")


@contextmanager
def local_switch(workdir: Path) -> Iterator[tuple[str, PipelineFiles]]:
    """Compile the program and run simple_switch_grpc on a free port: (spec, pipeline files)."""
    p4info = workdir / "loadbalancer.p4info.txt"
    compile_cmd = ["p4c", "--target", "bmv2", "--arch", "v1model", "-o", str(workdir)]
    compile_cmd += ["--p4runtime-files", str(p4info), str(PROGRAM_PATH)]
    subprocess.run(compile_cmd, check=True, capture_output=True, timeout=600)
    proc, address = _start_switch(workdir)
    try:
        files = PipelineFiles(p4info, workdir / "loadbalancer.json")
        yield f"p4rt://{address}?device_id=1", files
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Driver:
    """Runs the client's coroutines to completion on a ThreadedClock."""

    def __init__(self, spec: str, files: PipelineFiles | None) -> None:
        self.clock = ThreadedClock()
        options: dict[str, Any] = {"election_id": 1 << 60}  # outranks any controller running
        if files is not None:
            options["pipeline"] = files
        client = connect_switch(spec, self.clock, p4rt_options=options)
        assert isinstance(client, P4RuntimeSwitchClient)
        self.client = client

    def run(self, call: Any) -> Any:
        """The result of a client coroutine."""
        d = defer.ensureDeferred(call)
        while not d.called:
            self.clock.run_from_threads(1, timeout=60.0)
        box: list[Any] = []
        d.addBoth(box.append)
        return box[0]

    def apply(self, ops: list[SwitchOp]) -> int:
        """Apply operations; how many failed."""
        outcomes = self.run(self.client.apply(ops))
        return sum(not o.ok for o in outcomes)


def learning(driver: Driver, connections: int, batch: int) -> dict[str, object]:
    """Install `connections` conn_table entries with idle timeouts, `batch` per apply."""
    driver.apply([TableClear(OWNER, "conn_table")])
    failed = 0
    t0 = time.perf_counter()
    for start in range(0, connections, batch):
        inserts = [
            TableInsert(
                OWNER,
                "conn_table",
                (f"10.{1 + n // 65536}.{n // 256 % 256}.{n % 256}", VIP, "4000", "80", "6"),
                "rewrite_dst",
                ("10.0.2.2", "8080"),
            )
            for n in range(start, min(start + batch, connections))
        ]
        outcomes = driver.run(driver.client.apply(inserts))
        handles = [o.handle for o in outcomes if o.ok and o.handle is not None]
        failed += len(inserts) - len(handles)
        failed += driver.apply([EntryTimeoutSet(OWNER, "conn_table", h, IDLE_MS) for h in handles])
    elapsed = time.perf_counter() - t0
    driver.apply([TableClear(OWNER, "conn_table")])
    return {
        "connections": connections,
        "batch": batch,
        "failed": failed,
        "conns/s": round(connections / elapsed),
        "s": round(elapsed, 2),
    }


def rollout(driver: Driver, entries: int, rounds: int) -> dict[str, object]:
    """Latency of writing a slot of `entries` dip_table entries and flipping version_config."""
    latencies: list[float] = []
    failed = 0
    length = max(1, (entries - 1).bit_length())
    for round_ in range(rounds):
        slot = round_ % 4
        writes: list[SwitchOp] = [
            TableInsert(
                Owner.ROLLOUT,
                "dip_table",
                (str(slot), "1", f"{n << (16 - length)}/{length}"),
                "rewrite_dst",
                (f"10.0.{n // 250}.{n % 250 + 1}", "8080"),
            )
            for n in range(entries)
        ]
        flip = DefaultActionSet(
            Owner.ROLLOUT, "version_config", "set_versions", (str(slot), "1", "2", "3", "4")
        )
        driver.apply([TableClear(Owner.ROLLOUT, "dip_table")])
        t0 = time.perf_counter()
        failed += driver.apply([*writes, flip])
        latencies.append((time.perf_counter() - t0) * 1000.0)
    latencies.sort()
    return {
        "dip_table entries/slot": entries,
        "rounds": rounds,
        "failed": failed,
        "median ms": round(statistics.median(latencies), 2),
        "p95 ms": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
    }


def measure(spec: str, files: PipelineFiles | None, args: argparse.Namespace) -> int:
    """Run both measurements against `spec`; exit status 1 if any write failed."""
    driver = Driver(spec, files)
    try:
        learn = [learning(driver, args.connections, b) for b in (1, args.batch)]
        emit("Learning writes over P4Runtime (insert + idle timeout)", learn, args.json_learn)
        slots = [rollout(driver, int(n), args.rounds) for n in args.entries.split(",")]
        emit("Rollout writes over P4Runtime (slot + flip)", slots, args.json_rollout)
    finally:
        driver.run(driver.client.close())
    return 1 if any(row["failed"] for row in (*learn, *slots)) else 0


def main(argv: list[str]) -> int:
    """Print both tables (0), or 1 if a write failed."""
    parser = argparse.ArgumentParser(
        prog="python -m bench p4runtime", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--switch", help="p4rt://HOST:PORT[?device_id=N] running the program")
    parser.add_argument("--connections", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=50, help="connections per apply")
    parser.add_argument("--entries", default="2,64,1024", help="comma-separated slot sizes")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json-learn", type=Path)
    parser.add_argument("--json-rollout", type=Path)
    args = parser.parse_args(argv)
    if args.switch is not None:
        return measure(args.switch, None, args)
    missing = [tool for tool in ("p4c", "simple_switch_grpc") if shutil.which(tool) is None]
    if missing:
        print(f"bench p4runtime: skipped, not on PATH: {', '.join(missing)}")
        return 0
    with (
        tempfile.TemporaryDirectory(prefix="p4lb-bench-p4rt-") as tmp,
        local_switch(Path(tmp)) as (spec, files),
    ):
        return measure(spec, files, args)
