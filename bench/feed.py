"""`python -m bench feed`: reports/s the controller's load feed ingests (LoadFeed + LoadBook).

The receiving side (reactor, PULL socket, ZeroMQ I/O thread, decoding, LoadBook) is pinned to one
CPU; a separate process pinned to another CPU pushes pre-encoded reports from N simulated agents,
each with its own PUSH socket and DIP. Every agent first sends one warm-up report so the timed part
starts with all connections up; the clock then runs from "go" until the last report is ingested.
A second row per size shows LoadBook.ingest alone (no sockets) for comparison.

`--flood` measures memory instead: `--connections` PUSH sockets (two sender processes) connect
to a LoadFeed with its default limits and, for `--seconds`, send as fast as they can a mix of
good reports, garbage and frames over the 4 KiB limit; the row reports the receiver's peak RSS
(VmHWM), which must stay under FLOOD_RSS_LIMIT_MB.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import resource
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import zmq
from twisted.internet.epollreactor import EPollReactor

from agent.wire import LoadReport, encode_report
from bench.report import emit
from controller.core.loadbook import LoadBook
from controller.shell.feed import LoadFeed

FLOOD_RSS_LIMIT_MB = 300
SENDERS = 2  # each sender process holds two descriptors per socket (TCP and mailbox)
DEFAULT_AGENTS = (1, 100, 1000)
DEFAULT_REPORTS = 100_000
TIMEOUT = 120.0


def _dips(agents: int) -> list[str]:
    return [f"10.{1 + i // 65536}.{(i // 256) % 256}.{i % 256}:8080" for i in range(agents)]


def _reports(dips: list[str], per_agent: int, first_seq: int) -> list[list[bytes]]:
    """Pre-encoded reports, one list per round (one report of every agent per round)."""
    return [
        [
            encode_report(LoadReport(dip, seq, 1e9 + seq, (seq % 100) / 100, seq % 50, 10.0))
            for dip in dips
        ]
        for seq in range(first_seq, first_seq + per_agent)
    ]


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


def _send(endpoint: str, agents: int, per_agent: int, go: Event) -> None:
    """Sender process: connect one PUSH socket per agent, warm up, wait for go, push everything."""
    _pin(1)
    dips = _dips(agents)
    warmup = _reports(dips, 1, 0)[0]
    rounds = _reports(dips, per_agent, 1)
    context: zmq.Context[Any] = zmq.Context()
    sockets = []
    for _ in dips:
        sock = context.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.connect(endpoint)
        sockets.append(sock)
    for sock, data in zip(sockets, warmup, strict=True):
        sock.send(data)
    go.wait(TIMEOUT)
    for messages in rounds:
        for sock, data in zip(sockets, messages, strict=True):
            sock.send(data)
    for sock in sockets:
        sock.close(linger=int(TIMEOUT * 1000))
    context.term()


def measure_feed(agents: int, total: int) -> dict[str, Any]:
    """Ingest `total` reports from `agents` simulated agents through a real socket; one row."""
    per_agent = max(1, total // agents)
    total = per_agent * agents
    reactor: Any = EPollReactor()
    book = LoadBook(_dips(agents), interval=0.5)
    feed = LoadFeed(reactor, "tcp://127.0.0.1:*", book, time.monotonic)
    feed.start()
    spawn = multiprocessing.get_context("spawn")
    go = spawn.Event()
    sender = spawn.Process(target=_send, args=(feed.bound_endpoint, agents, per_agent, go))
    sender.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while feed.received < agents and time.monotonic() < deadline:
            reactor.iterate(0.05)
        start = time.perf_counter()
        go.set()
        target = agents + total
        while feed.received < target and time.monotonic() < deadline:
            reactor.iterate(0.01)
        elapsed = time.perf_counter() - start
    finally:
        sender.join(TIMEOUT)
        feed.stop()
    received = feed.received - agents
    return {
        "path": "LoadFeed+LoadBook, tcp",
        "agents": agents,
        "reports": received,
        "seconds": round(elapsed, 3),
        "reports/s": round(received / elapsed) if elapsed > 0 else None,
        "accepted": book.counters["accepted"] - agents,
    }


def _flood(endpoint: str, connections: int, seconds: float, first: int) -> None:
    """Sender process: `connections` PUSH sockets sending good, garbage and oversize frames."""
    _raise_fd_limit()
    context: zmq.Context[Any] = zmq.Context()
    context.set(zmq.MAX_SOCKETS, connections + 64)
    dips = _dips(first + connections)[first:]
    sockets = []
    for _ in dips:
        sock = context.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, 64)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        sockets.append(sock)
    garbage, oversize = b'{"v":1,"dip":"10.1.3.2:\xc2\xb2"}', b"x" * 8192
    seq = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seq += 1
        for i, (sock, dip) in enumerate(zip(sockets, dips, strict=True)):
            data = (
                oversize
                if (i + seq) % 50 == 0
                else garbage
                if (i + seq) % 3 == 0
                else encode_report(LoadReport(dip, seq, 1e9 + seq / 100, 0.5, 1))
            )
            with contextlib.suppress(zmq.Again):
                sock.send(data, zmq.NOBLOCK)
    for sock in sockets:
        sock.close(linger=0)
    context.term()


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_flood(connections: int, seconds: float) -> dict[str, Any]:
    """Peak RSS of a LoadFeed (default limits) under a flood from `connections` connections."""
    _raise_fd_limit()
    reactor: Any = EPollReactor()
    per_sender = -(-connections // SENDERS)
    book = LoadBook(_dips(connections), interval=0.5)
    feed = LoadFeed(reactor, "tcp://127.0.0.1:*", book, time.monotonic)
    feed.start()
    spawn = multiprocessing.get_context("spawn")
    senders = [
        spawn.Process(
            target=_flood,
            args=(feed.bound_endpoint, min(per_sender, connections - first), seconds, first),
        )
        for first in range(0, connections, per_sender)
    ]
    before = _peak_rss_mb()
    for sender in senders:
        sender.start()
    most = 0
    try:
        end = time.monotonic() + seconds + 5.0  # start-up of the senders included
        while time.monotonic() < end and any(s.is_alive() for s in senders):
            reactor.iterate(0.01)
            most = max(most, feed.connections)
    finally:
        for sender in senders:
            sender.join(TIMEOUT)
        feed.stop()
    peak = _peak_rss_mb()
    return {
        "connections": connections,
        "seconds": seconds,
        "messages": feed.received,
        "accepted": book.counters["accepted"],
        "malformed": book.counters["malformed"],
        "refused (cap)": feed.counters["handshakes_refused_capacity"],
        "most open": most,
        "rss before MB": round(before),
        "peak rss MB": round(peak),
        "ok": peak < FLOOD_RSS_LIMIT_MB,
    }


def measure_book(agents: int, total: int) -> dict[str, Any]:
    """LoadBook.ingest alone (decode, validate, update) over pre-encoded reports; one row."""
    per_agent = max(1, total // agents)
    book = LoadBook(_dips(agents), interval=0.5)
    messages = [data for messages in _reports(_dips(agents), per_agent, 0) for data in messages]
    ingest = book.ingest
    start = time.perf_counter()
    for data in messages:
        ingest(1.0, data)
    elapsed = time.perf_counter() - start
    return {
        "path": "LoadBook.ingest only",
        "agents": agents,
        "reports": len(messages),
        "seconds": round(elapsed, 3),
        "reports/s": round(len(messages) / elapsed),
        "accepted": book.counters["accepted"],
    }


def main(argv: list[str]) -> int:
    """Run the feed benchmark for each agent count and print (and optionally save) the table."""
    parser = argparse.ArgumentParser(prog="python -m bench feed", description=__doc__)
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    parser.add_argument("--reports", type=int, default=DEFAULT_REPORTS, help="reports per run")
    parser.add_argument("--agents", type=int, nargs="+", default=list(DEFAULT_AGENTS))
    parser.add_argument("--flood", action="store_true", help="measure RSS under a flood instead")
    parser.add_argument("--connections", type=int, default=10_000, help="flood connections")
    parser.add_argument("--seconds", type=float, default=30.0, help="flood duration")
    args = parser.parse_args(argv)
    if args.flood:
        if args.connections < SENDERS or not args.seconds > 0:
            parser.error(f"--connections must be >= {SENDERS} and --seconds > 0")
        row = measure_flood(args.connections, args.seconds)
        emit(f"Load feed under a flood (peak RSS < {FLOOD_RSS_LIMIT_MB} MB)", [row], args.json)
        return 0 if row["ok"] else 1
    if args.reports < 1 or any(n < 1 for n in args.agents):
        parser.error("--reports and --agents must be positive")
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    rows: list[dict[str, Any]] = []
    try:
        _pin(0)  # the reactor, the ZeroMQ I/O thread and the book share one CPU
        for agents in args.agents:
            rows.append(measure_feed(agents, args.reports))
            rows.append(measure_book(agents, args.reports))
    finally:
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
    emit("Load feed ingestion (reports/s, receiver pinned to one CPU)", rows, args.json)
    short = [r for r in rows if r["reports"] < r["agents"] * max(1, args.reports // r["agents"])]
    return 1 if short else 0
