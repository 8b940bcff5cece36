"""Load generator: opens connections to a VIP at a set rate and checks every answer byte.

``python -m topo.apps.client --target 10.0.0.100:80 --rate 50 --duration 30`` opens 50 new
connections per second for 30 s; each sends ``--requests`` requests of ``--size`` bytes spread
over ``--lifetime`` seconds and verifies each echoed answer. It prints one JSON report
(started, made, failed, reset, misrouted, corrupt, broken, by_server, share, latency) and
optionally logs every connection as a JSON line (``--log``). SIGINT/SIGTERM stop new
connections; connections in flight finish before the report. ``--udp`` does the same with
UDP flows (one socket per flow).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agent.wire import parse_host_port
from topo.apps.outcome import ConnectionRecord, route_outcome, summarise
from topo.apps.protocol import (
    MAX_DATAGRAM,
    AppProtocolError,
    encode_request,
    parse_response_datagram,
    parse_response_header,
    payload_for,
)


@dataclass(frozen=True)
class LoadSpec:
    """What load to offer and how to judge it."""

    host: str
    """Target address (the VIP)."""
    port: int
    """Target port."""
    rate: float
    """New connections per second."""
    duration: float
    """Seconds during which new connections are opened."""
    size: int = 64
    """Payload bytes per request (default 64)."""
    requests: int = 1
    """Requests per connection (default 1)."""
    lifetime: float = 0.0
    """Seconds over which a connection's requests are spread (default 0: back to back)."""
    timeout: float = 10.0
    """Seconds to wait for a connect or an answer before the connection fails (default 10)."""
    udp: bool = False
    """UDP flows instead of TCP connections (default False)."""
    expected: frozenset[str] | None = None
    """Server ids allowed to answer (default None: any); others count as misrouted."""
    seed: int = 0
    """Varies the payload bytes between runs (default 0)."""
    max_inflight: int = 8000
    """Most connections open at once; beyond it new ones wait (default 8000)."""


def request_times(requests: int, lifetime: float) -> list[float]:
    """Offsets from the connection's start at which its requests go out."""
    if requests <= 1:
        return [0.0] * max(requests, 0)
    gap = lifetime / (requests - 1)
    return [i * gap for i in range(requests)]


def _payload(spec: LoadSpec, index: int, seq: int) -> bytes:
    """Payload of request `seq` of connection `index` (varies with seed, connection, request)."""
    return payload_for(spec.seed * 1_000_003 + index * 101 + seq, spec.size)


class _BrokenError(Exception):
    """A connection ended in a broken outcome (carried as ``outcome``)."""

    def __init__(self, outcome: str, error: str) -> None:
        super().__init__(error)
        self.outcome = outcome
        self.error = error


async def _tcp_exchange(spec: LoadSpec, index: int, servers: list[str], t0: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(spec.host, spec.port), spec.timeout
        )
    except (TimeoutError, OSError) as exc:
        raise _BrokenError("failed", f"connect: {exc!r}") from None
    try:
        for seq, offset in enumerate(request_times(spec.requests, spec.lifetime)):
            await asyncio.sleep(max(0.0, t0 + offset - loop.time()))
            payload = _payload(spec, index, seq)
            writer.write(encode_request(seq, payload))
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), spec.timeout)
            if not line:
                raise _BrokenError("reset", f"closed by peer before answer {seq}")
            header = parse_response_header(line)
            data = await asyncio.wait_for(reader.readexactly(header.size), spec.timeout)
            if header.seq != seq or data != payload:
                raise _BrokenError("corrupt", f"answer {seq} does not match the request")
            servers.append(header.server)
        await asyncio.sleep(max(0.0, t0 + spec.lifetime - loop.time()))
    except AppProtocolError as exc:
        raise _BrokenError("corrupt", repr(exc)) from None
    except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
        raise _BrokenError("reset", repr(exc)) from None
    except (TimeoutError, OSError) as exc:
        raise _BrokenError("failed", repr(exc)) from None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _udp_exchange(spec: LoadSpec, index: int, servers: list[str], t0: float) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect((spec.host, spec.port))
        for seq, offset in enumerate(request_times(spec.requests, spec.lifetime)):
            await asyncio.sleep(max(0.0, t0 + offset - loop.time()))
            payload = _payload(spec, index, seq)
            await loop.sock_sendall(sock, encode_request(seq, payload))
            data = await asyncio.wait_for(loop.sock_recv(sock, MAX_DATAGRAM), spec.timeout)
            header, echoed = parse_response_datagram(data)
            if header.seq != seq or echoed != payload:
                raise _BrokenError("corrupt", f"answer {seq} does not match the request")
            servers.append(header.server)
    except AppProtocolError as exc:
        raise _BrokenError("corrupt", repr(exc)) from None
    except ConnectionRefusedError as exc:
        raise _BrokenError("reset", repr(exc)) from None
    except (TimeoutError, OSError) as exc:
        raise _BrokenError("failed", repr(exc)) from None
    finally:
        sock.close()


async def run_connection(spec: LoadSpec, index: int) -> ConnectionRecord:
    """Open, use and close connection (or UDP flow) number ``index``; never raises."""
    loop = asyncio.get_running_loop()
    start, t0 = time.time(), loop.time()
    servers: list[str] = []
    exchange = _udp_exchange if spec.udp else _tcp_exchange
    try:
        await exchange(spec, index, servers, t0)
        outcome, error = route_outcome(servers, spec.expected), ""
        if outcome != "ok":
            error = f"answered by {servers!r}"
    except _BrokenError as broken:
        outcome, error = broken.outcome, broken.error
    return ConnectionRecord(
        start=start,
        outcome=outcome,
        server=servers[0] if servers else None,
        latency=loop.time() - t0,
        requests=len(servers),
        error=error,
    )


async def generate(
    spec: LoadSpec, stop: asyncio.Event, log: IO[str] | None = None
) -> list[ConnectionRecord]:
    """Offer ``spec``'s load until its duration ends or ``stop`` is set; gather every record."""
    loop = asyncio.get_running_loop()
    records: list[ConnectionRecord] = []
    gate = asyncio.Semaphore(spec.max_inflight)
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int) -> None:
        try:
            record = await run_connection(spec, index)
        finally:
            gate.release()
        records.append(record)
        if log is not None:
            log.write(json.dumps(record.to_json()) + "\n")

    t0 = loop.time()
    index = 0
    while not stop.is_set():
        due = t0 + index / spec.rate
        if due >= t0 + spec.duration:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, due - loop.time()))
        if stop.is_set():
            break
        await gate.acquire()
        task = asyncio.create_task(one(index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        index += 1
    if tasks:
        await asyncio.gather(*tasks)
    return records


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _amain(spec: LoadSpec, log_path: Path | None) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started = loop.time()
    if log_path is None:
        records = await generate(spec, stop)
    else:
        with log_path.open("w", buffering=1) as log:
            records = await generate(spec, stop, log)
    return summarise(records, loop.time() - started)


def parse_target(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT``."""
    try:
        return parse_host_port(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the load generator."""
    parser = argparse.ArgumentParser(prog="python -m topo.apps.client", description=__doc__)
    parser.add_argument("--target", type=parse_target, required=True, help="VIP as HOST:PORT")
    parser.add_argument("--rate", type=float, default=20.0, help="new connections per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of new connections")
    parser.add_argument("--size", type=int, default=64, help="bytes per request")
    parser.add_argument("--requests", type=int, default=1, help="requests per connection")
    parser.add_argument("--lifetime", type=float, default=0.0, help="seconds a connection lives")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--udp", action="store_true", help="UDP flows instead of TCP")
    parser.add_argument("--expect", default="", help="comma-separated server ids expected")
    parser.add_argument("--seed", type=int, default=0, help="payload seed")
    parser.add_argument("--max-inflight", type=int, default=8000, help="concurrent connections")
    parser.add_argument("--log", type=Path, default=None, help="JSON line per connection")
    parser.add_argument("--json", type=Path, default=None, help="write the report here too")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the load, print the JSON report; exit 0 (broken connections are data, not errors)."""
    args = build_parser().parse_args(argv)
    if args.rate <= 0 or args.duration < 0 or args.requests < 1 or args.size < 0:
        print("need --rate > 0, --duration >= 0, --requests >= 1, --size >= 0", file=sys.stderr)
        return 2
    host, port = args.target
    expected = frozenset(s for s in args.expect.split(",") if s) or None
    spec = LoadSpec(
        host=host,
        port=port,
        rate=args.rate,
        duration=args.duration,
        size=args.size,
        requests=args.requests,
        lifetime=args.lifetime,
        timeout=args.timeout,
        udp=args.udp,
        expected=expected,
        seed=args.seed,
        max_inflight=args.max_inflight,
    )
    _raise_fd_limit()
    report = asyncio.run(_amain(spec, args.log))
    text = json.dumps(report, sort_keys=True)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
