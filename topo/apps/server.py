"""Demo server with a real, configurable capacity: echoes requests after burning CPU.

``python -m topo.apps.server --id 10.1.3.2:8080 --port 8080 --workers 2 --work-ms 5``
pre-forks ``--workers`` processes sharing one listening socket; each serves connections with
asyncio and spends ``--work-ms`` of its own CPU time per request before answering, so the
host's capacity is set by the CPU it may use (the demo caps it with a cgroup quota). With
``--udp`` it also echoes UDP datagrams on the same port number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import cast

from topo.apps.protocol import (
    AppProtocolError,
    encode_response,
    parse_request_datagram,
    parse_request_header,
)


def burn_cpu(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time (wall time is longer when throttled)."""
    if seconds <= 0:
        return
    start = time.thread_time()
    block = b"p4lb" * 256
    while time.thread_time() - start < seconds:
        block = hashlib.sha256(block).digest() * 32


async def _serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server_id: str, work: float
) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            header = parse_request_header(line)
            payload = await reader.readexactly(header.size)
            burn_cpu(work)
            writer.write(encode_response(server_id, header.seq, payload))
            await writer.drain()
    except (AppProtocolError, asyncio.IncompleteReadError, ConnectionError, ValueError):
        return
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


class _EchoDatagram(asyncio.DatagramProtocol):
    """UDP echo: one request datagram in, one tagged response out."""

    def __init__(self, server_id: str, work: float) -> None:
        self.server_id = server_id
        self.work = work
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        try:
            header, payload = parse_request_datagram(data)
        except AppProtocolError:
            return
        burn_cpu(self.work)
        if self.transport is not None:
            self.transport.sendto(encode_response(self.server_id, header.seq, payload), addr)


async def _worker_main(
    tcp: socket.socket, udp: socket.socket | None, server_id: str, work: float, backlog: int
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    server = await asyncio.start_server(
        # asyncio listens again with its own default backlog (100) unless told
        lambda r, w: _serve_connection(r, w, server_id, work),
        sock=tcp,
        backlog=backlog,
    )
    if udp is not None:
        await loop.create_datagram_endpoint(lambda: _EchoDatagram(server_id, work), sock=udp)
    async with server:
        await stop.wait()


def _listen(
    host: str, port: int, backlog: int, udp: bool
) -> tuple[socket.socket, socket.socket | None]:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((host, port))
    tcp.listen(backlog)
    tcp.setblocking(False)
    dgram = None
    if udp:
        dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dgram.bind((host, port))
        dgram.setblocking(False)
    return tcp, dgram


def _run_worker(
    tcp: socket.socket, udp: socket.socket | None, server_id: str, work: float, backlog: int
) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        asyncio.run(_worker_main(tcp, udp, server_id, work, backlog))
    finally:
        os._exit(0)


def serve(
    host: str,
    port: int,
    server_id: str,
    workers: int,
    work: float,
    *,
    udp: bool = False,
    backlog: int = 4096,
    ready_file: Path | None = None,
) -> int:
    """Fork ``workers`` serving processes and supervise them until SIGTERM/SIGINT."""
    tcp, dgram = _listen(host, port, backlog, udp)
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            _run_worker(tcp, dgram, server_id, work, backlog)
        children.append(pid)
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if ready_file is not None:
        ready_file.write_text(f"{os.getpid()}\n")
    kinds = "TCP+UDP" if udp else "TCP"
    print(
        f"server {server_id}: pid {os.getpid()}, {kinds} {host}:{port}, {workers} workers, "
        f"{work * 1000:g} ms CPU per request",
        file=sys.stderr,
        flush=True,
    )
    status = 0
    for child in children:
        while True:
            try:
                _, code = os.waitpid(child, 0)
                break
            except ChildProcessError:
                code = 0
                break
            except InterruptedError:
                continue
        if code != 0 and not stopping:
            status = 1
    return status


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the server."""
    parser = argparse.ArgumentParser(prog="python -m topo.apps.server", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="TCP (and UDP) port")
    parser.add_argument("--id", dest="server_id", default=None, help="identity in responses")
    parser.add_argument("--workers", type=int, default=2, help="serving processes")
    parser.add_argument("--work-ms", type=float, default=5.0, help="CPU ms per request")
    parser.add_argument("--udp", action="store_true", help="also echo UDP on the same port")
    parser.add_argument("--backlog", type=int, default=4096, help="TCP listen backlog")
    parser.add_argument("--ready-file", type=Path, default=None, help="written when listening")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT."""
    args = build_parser().parse_args(argv)
    if args.workers < 1 or args.work_ms < 0:
        print(f"bad --workers {args.workers!r} or --work-ms {args.work_ms!r}", file=sys.stderr)
        return 2
    server_id = args.server_id or f"{socket.gethostname()}:{args.port}"
    try:
        return serve(
            args.host,
            args.port,
            server_id,
            args.workers,
            args.work_ms / 1000.0,
            udp=args.udp,
            backlog=args.backlog,
            ready_file=args.ready_file,
        )
    except OSError as exc:
        print(f"server: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
