"""`p4lb-agent`: sample this server's load and push a report to the controller every interval.

A plain blocking loop: it sleeps in zmq.Poller on the PUSH socket's monitor (connection events)
and a self-pipe the SIGTERM/SIGINT handlers write to, so a signal ends it at once and cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import zmq
import zmq.auth

from agent.parsing import SamplerError
from agent.pusher import CurveClientKeys, ReportPusher
from agent.report import ReportBuilder
from agent.samplers import established_connections, make_scope, passive_opens, probe_service
from agent.wire import ProtocolError, encode_report, parse_dip

log = logging.getLogger("p4lb.agent")


FLUSH_ON_EXIT = 1.0
"""Seconds queued reports may take to leave when the agent stops."""
NEVER_REACHED_AFTER = 3
"""Intervals after which an agent that never reached its controller warns."""
NEVER_REACHED_REPEAT = 30.0
"""Seconds between repeats of that warning."""
PROBE_TIMEOUT_MAX = 1.0
"""Longest wait for the service port to accept a probe connection."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p4lb-agent", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--controller",
        action="append",
        default=[],
        help="controller load feed, e.g. tcp://10.0.0.1:5555; repeat it to report to a primary "
        "and its backups alike",
    )
    parser.add_argument("--dip", help="this server as IP:PORT (the service port is counted)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between reports")
    parser.add_argument(
        "--cpu-scope",
        default="system",
        help="system | pid:N (process tree) | cgroup:PATH (usage ÷ quota)",
    )
    parser.add_argument("--state", choices=("up", "drain"), default="up")
    parser.add_argument(
        "--probe",
        choices=("tcp", "none"),
        default="tcp",
        help="connect to the service's IP:PORT each interval and report down while it refuses "
        "(default: %(default)s)",
    )
    parser.add_argument("--curve-server-key", type=Path, help="controller's public .key file")
    parser.add_argument("--curve-key", type=Path, help="this agent's .key_secret file")
    parser.add_argument(
        "--make-keys",
        type=Path,
        metavar="DIR/NAME",
        help="write a CURVE key pair DIR/NAME.key and DIR/NAME.key_secret, then exit",
    )
    parser.add_argument(
        "--count",
        type=int,
        default=0,
        help="stop once every controller took N reports (0: never)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the agent until SIGTERM/SIGINT; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s p4lb-agent %(levelname)s %(message)s",
    )
    if args.make_keys is not None:
        return make_keys(args.make_keys)
    if not args.controller or not args.dip:
        parser.error("--controller and --dip are required")
    try:
        parse_dip(args.dip)
    except ProtocolError as exc:
        parser.error(str(exc))
    if not 0.01 <= args.interval <= 3600:
        parser.error(f"--interval must be in [0.01, 3600] seconds, got {args.interval!r}")
    if args.count < 0:
        parser.error(f"--count must be >= 0, got {args.count!r}")
    for endpoint in args.controller:
        if "://" not in endpoint:
            parser.error(f"--controller must be an endpoint like tcp://HOST:PORT, got {endpoint!r}")
    if len(set(args.controller)) != len(args.controller):
        parser.error("a --controller is given twice")
    if (args.curve_server_key is None) != (args.curve_key is None):
        parser.error("--curve-server-key and --curve-key go together")
    pushers: list[ReportPusher] = []
    try:
        scope = make_scope(args.cpu_scope)
        curve = None
        if args.curve_server_key is not None:
            curve = CurveClientKeys.from_files(args.curve_server_key, args.curve_key)
        for endpoint in args.controller:
            pushers.append(ReportPusher(endpoint, curve))
    except (SamplerError, ValueError) as exc:
        for pusher in pushers:
            pusher.close()
        log.error("%s", exc)
        return 2
    ip, port = parse_dip(args.dip)
    timeout = min(args.interval / 2, PROBE_TIMEOUT_MAX)
    probe = None if args.probe == "none" else functools.partial(probe_service, ip, port, timeout)
    builder = ReportBuilder(
        args.dip, scope, established_connections, passive_opens, args.state, probe=probe
    )
    log.info(
        "reporting %s (cpu scope %s) to %s every %ss",
        args.dip,
        scope.name,
        " and ".join(args.controller),
        args.interval,
    )
    try:
        run(builder, pushers, args.interval, args.count)
    finally:
        for pusher in pushers:
            log.info(
                "stopping: %d reports made for %s, %d sent over a live connection, %d dropped "
                "(no connection up, or the previous report not yet out)",
                pusher.sent + pusher.dropped,
                pusher.endpoint,
                pusher.sent,
                pusher.dropped,
            )
            # A bounded flush: the last reports go out if the controller is there, and an
            # agent whose controller is gone still exits within a second.
            pusher.close(flush=FLUSH_ON_EXIT)
    return 0


def make_keys(base: Path) -> int:
    """Write base.key and base.key_secret (readable by the owner only); never overwrite."""
    existing = [p for p in (Path(f"{base}.key"), Path(f"{base}.key_secret")) if p.exists()]
    if existing:
        log.error(
            "not overwriting %s (delete to make a new pair)", " and ".join(map(str, existing))
        )
        return 2
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        previous = os.umask(0o077)  # the secret is never readable by others, not even briefly
        try:
            public, secret = zmq.auth.create_certificates(base.parent, base.name)
        finally:
            os.umask(previous)
        Path(public).chmod(0o644)
    except OSError as exc:
        log.error("cannot write keys %s: %s", base, exc.strerror or exc)
        return 2
    key, _ = zmq.auth.load_certificate(public)
    print(f"wrote {public} and {secret} (keep the .key_secret private)")
    print(f'controller allow-list entry: [[agent]] key = "{key.decode()}" dips = ["IP:PORT"]')
    return 0


def run(
    builder: ReportBuilder, pushers: list[ReportPusher], interval: float, count: int = 0
) -> None:
    """Report every `interval` seconds to every controller until SIGTERM/SIGINT (or, if `count`
    > 0, until every controller took `count` reports over a live connection)."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        with contextlib.suppress(OSError):  # pipe full: a wake-up is already pending
            os.write(wake_write, b"\0")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    poller = zmq.Poller()
    for pusher in pushers:
        poller.register(pusher.monitor_socket, zmq.POLLIN)
    poller.register(wake_read, zmq.POLLIN)
    try:
        started = time.monotonic()
        builder.prime(started)
        next_tick = started + interval
        next_warning = started + NEVER_REACHED_AFTER * interval
        while not stopping:
            timeout_ms = max(0.0, next_tick - time.monotonic()) * 1000
            poller.poll(int(timeout_ms) + 1)
            for pusher in pushers:
                pusher.poll_events()
            now = time.monotonic()
            if stopping or now < next_tick:
                continue
            # Skip ticks missed while stalled instead of bursting to catch up.
            next_tick = max(next_tick + interval, now)
            report = encode_report(builder.build(now, time.time()))
            for pusher in pushers:
                pusher.send(report)
            unreached = [p.endpoint for p in pushers if p.reachable is None]
            if unreached and now >= next_warning:
                # Connecting never finished (wrong address, firewall, CURVE keys): say so, and
                # keep saying so, rather than sending into the void in silence.
                log.warning(
                    "controller %s not reached in %.0f s (reports are dropped meanwhile)",
                    " and ".join(unreached),
                    now - started,
                )
                next_warning = now + NEVER_REACHED_REPEAT
            if count and min(p.sent for p in pushers) >= count:
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        poller.unregister(wake_read)
        os.close(wake_read)
        os.close(wake_write)


if __name__ == "__main__":
    sys.exit(main())
