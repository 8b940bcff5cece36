"""`p4lb-switch`: run the reference model as a software switch on real interfaces.

One AF_PACKET socket per ``-i PORT@IFACE`` feeds frames to ``p4model.Switch.process``; the frames it
returns leave on the interface of their port (port 0, 511 or an unmapped port: dropped and counted).
The runtime API is served on a ZeroMQ REP socket (``--control``) and digests and aged conn_table
handles are published on a PUB socket (``--digests``; default: control port + 1), see
``p4model.control_protocol``. One thread does everything in a poll loop, so API calls and packets
never interleave inside the model. With ``--p4runtime [HOST:PORT]`` the switch also serves
P4Runtime over gRPC (``p4model.p4runtime_service``; device id ``--device-id``, default 1) from
threads of its own that take the loop's lock around every touch of the model.

Hosts attached to the switch must disable offloads on their interfaces (and the switch side should
too): ``ethtool -K IFACE tx off sg off tso off gso off gro off``. With segmentation offloads a veth
peer hands over super-frames larger than the MTU, and with transmit checksum offload frames carry
partial checksums that the model would forward unchanged. VLAN tags stripped by the kernel are not
restored.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import zmq

from p4model import Switch, SwitchError
from p4model.afpacket import FramePort, PacketPort
from p4model.control_protocol import (
    SWITCH_METHODS,
    ControlProtocolError,
    decode_request,
    default_digest_address,
    encode_aged,
    encode_digests,
    encode_error,
    encode_ok,
)
from p4model.keys import is_decimal
from p4model.p4runtime_device import P4RuntimeDevice
from p4model.p4runtime_service import P4RuntimeService, serve
from p4src.contract import load_settings

log = logging.getLogger("p4lb.switch")

MAX_REQUEST = 1 << 20
"""Largest control request in bytes (1 MiB); ZeroMQ disconnects a peer that sends more."""
BATCH = 64  # frames taken from one interface per loop turn, so control requests are not starved
CONTROL_BATCH = 16
"""Control requests served per loop turn at most, so a request flood cannot starve forwarding."""
CONTROL_BUDGET = 0.005
"""Seconds of control work per loop turn after which the rest waits for the next turn."""
DEFAULT_P4RUNTIME = "127.0.0.1:9559"
"""Where ``--p4runtime`` without an address listens (BMv2's simple_switch_grpc's default)."""


@dataclass(frozen=True)
class PortSpec:
    """One ``-i PORT@IFACE`` option."""

    port: int
    iface: str


def parse_port_spec(text: str) -> PortSpec:
    """Parse ``PORT@IFACE`` (port 1..510)."""
    number, sep, iface = text.partition("@")
    if (
        not sep
        or not is_decimal(number)
        or len(number) > 3
        or not iface
        or not 0 < int(number) < 511
    ):
        raise argparse.ArgumentTypeError(f"expected PORT@IFACE with PORT in 1..510, got {text!r}")
    return PortSpec(int(number), iface)


class SwitchServer:
    """The poll loop joining packet ports, the control socket and the notification socket."""

    def __init__(
        self,
        switch: Switch,
        ports: Sequence[FramePort],
        control: str,
        digests: str | None = None,
        *,
        ageing_interval: float = 1.0,
        context: zmq.Context[Any] | None = None,
        p4runtime: str | None = None,
        device_id: int = 1,
    ) -> None:
        """Bind the control and notification sockets, and the P4Runtime server when
        `p4runtime` is an address (HOST:PORT; port 0 picks a free one)."""
        self.switch = switch
        # The packet loop holds it while it forwards or serves ZeroMQ, the P4Runtime service
        # while it touches the switch: the model never sees two threads at once.
        self.lock = threading.RLock()
        self.p4runtime: P4RuntimeService | None = None
        self.p4runtime_address = ""
        self._grpc: grpc.Server | None = None
        self.ports: dict[int, FramePort] = {p.port: p for p in ports}
        self.counters: Counter[str] = Counter()
        self._tx_keys = {n: f"tx.{n}" for n in self.ports}
        self._tx_error_keys = {n: f"tx_errors.{n}" for n in self.ports}
        self.ageing_interval = ageing_interval
        self._context = context or zmq.Context.instance()
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._control = self._context.socket(zmq.REP)
        self._notify = self._context.socket(zmq.PUB)
        for sock in (self._control, self._notify):
            sock.setsockopt(zmq.LINGER, 0)
        self._control.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST)  # a larger request drops its peer
        try:
            digests = digests or default_digest_address(control)
            for sock, address in ((self._control, control), (self._notify, digests)):
                sock.setsockopt(zmq.IPV6, "[" in address)  # else endpoints read [::ffff:a.b.c.d]
                sock.bind(address)
        except (zmq.ZMQError, ControlProtocolError):
            self.close()
            raise
        self.control_address: str = self._control.getsockopt_string(zmq.LAST_ENDPOINT)
        self.digest_address: str = self._notify.getsockopt_string(zmq.LAST_ENDPOINT)
        if p4runtime is not None:
            # Idle entries are looked for as often as the ZeroMQ side sweeps: a sweep of a full
            # conn_table takes milliseconds under the lock.
            service = P4RuntimeService(
                P4RuntimeDevice(switch, device_id), self.lock, idle_scan_interval=ageing_interval
            )
            try:
                self._grpc, port = serve(service, p4runtime)
            except OSError:
                self.close()
                raise
            self.p4runtime = service
            self.p4runtime_address = f"{p4runtime.rpartition(':')[0]}:{port}"

    def stop(self) -> None:
        """Ask the loop to return; safe from another thread or a signal handler."""
        self._stopping = True
        with contextlib.suppress(OSError):  # buffer full or closed: the loop wakes anyway
            self._wake_w.send(b"x")

    def run(self) -> None:
        """Forward frames and serve requests until stop() is called."""
        poller = zmq.Poller()
        poller.register(self._control, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        by_fd = {p.fileno(): p for p in self.ports.values()}
        for fd in by_fd:
            poller.register(fd, zmq.POLLIN)
        next_sweep = time.monotonic() + self.ageing_interval
        while not self._stopping:
            wait = max(0.0, next_sweep - time.monotonic())
            for item, _ in poller.poll(int(wait * 1000.0) + 1):
                try:
                    if item is self._control:
                        with self.lock:
                            self.serve_requests()
                    elif isinstance(item, int) and item in by_fd:
                        with self.lock:
                            self.pump(by_fd[item])
                    else:
                        self._drain_wake()
                except Exception:  # a bug in one step must not stop forwarding for good
                    self.counters["loop_errors"] += 1
                    log.exception("switch loop step failed")
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.ageing_interval
                with self.lock:
                    self.publish_aged()

    def pump(self, port: FramePort) -> None:
        """Take a batch of frames from one port through the model and out, then publish digests."""
        try:
            frames = port.recv_batch(BATCH)
        except OSError as exc:
            self.counters[f"rx_errors.{port.port}"] += 1
            log.warning("receive on %s failed: %s", port.iface, exc)
            return
        self.counters[f"rx.{port.port}"] += len(frames)
        process = self.switch.process
        for frame in frames:
            try:
                outputs = process(port.port, frame)
            except Exception:  # a model bug must not stop the switch
                self.counters["process_errors"] += 1
                errors = self.counters["process_errors"]
                if errors <= 10 or errors % 1000 == 0:  # do not flood the log
                    log.exception(
                        "process() failed (%d so far) on a frame from port %d: %s",
                        errors,
                        port.port,
                        frame.hex(),
                    )
                continue
            if not outputs:
                self.counters["dropped"] += 1
            for out_port, out_frame in outputs:
                self._transmit(out_port, out_frame)
        self.publish_digests()

    def _transmit(self, out_port: int, frame: bytes) -> None:
        target = self.ports.get(out_port)
        if target is None:  # port 0 (no decision), 511 (drop) or nothing attached
            self.counters["dropped_unmapped_port"] += 1
            return
        try:
            target.send(frame)
        except OSError as exc:  # e.g. EMSGSIZE for a frame over the MTU, ENOBUFS
            self.counters[self._tx_error_keys[out_port]] += 1
            log.debug("send on %s failed: %s", target.iface, exc)
        else:
            self.counters[self._tx_keys[out_port]] += 1

    def serve_requests(self) -> None:
        """Answer the waiting requests, up to CONTROL_BATCH or CONTROL_BUDGET per call (the
        poll is level-triggered: the rest are served on the next loop turns, between packets)."""
        stop_at = time.monotonic() + CONTROL_BUDGET
        for _ in range(CONTROL_BATCH):
            try:
                # Every frame of the message, or REP would refuse to send the reply (EFSM).
                frames = self._control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:  # e.g. EINTR: try again on the next turn
                self.counters["control_errors"] += 1
                log.warning("control receive failed: %s", exc)
                return
            if len(frames) == 1:
                reply = self.handle_request(frames[0])
            else:
                self.counters["requests"] += 1
                self.counters["request_errors"] += 1
                reply = encode_error(f"a request is one frame, got {len(frames)}")
            try:
                self._control.send(reply, zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # the requester is gone; REP is ready for the next one
                self.counters["control_errors"] += 1
                log.warning("control reply failed: %s", exc)
            if time.monotonic() >= stop_at:
                return

    def handle_request(self, data: bytes) -> bytes:
        """Decode one request, run it and encode the reply; never raises."""
        self.counters["requests"] += 1
        try:
            request = decode_request(data)
            if request.method in SWITCH_METHODS:
                result = getattr(self.switch, request.method)(*request.args)
            else:
                result = self.info()
            return encode_ok(result)
        except SwitchError as exc:
            self.counters["request_errors"] += 1
            return encode_error(str(exc), exc.code)
        except ControlProtocolError as exc:
            self.counters["request_errors"] += 1
            return encode_error(str(exc))
        except Exception as exc:  # keep serving; the client sees what went wrong
            self.counters["request_errors"] += 1
            log.exception("request %r failed", bytes(data[:200]))
            return encode_error(f"internal error: {type(exc).__name__}: {exc}")

    def info(self) -> dict[str, Any]:
        """Addresses, attached ports and counters, as served by the ``info`` method."""
        return {
            "control": self.control_address,
            "digests": self.digest_address,
            "ports": {str(p.port): p.iface for p in self.ports.values()},
            "counters": dict(self.counters),
        }

    def publish_digests(self) -> None:
        """Publish the digests the model raised since the last call, as one message."""
        digests = self.switch.pop_digests()
        if digests:
            self.counters["digests"] += len(digests)
            self._notify.send(encode_digests(digests))
            if self.p4runtime is not None:
                self.p4runtime.offer_digests(digests)

    def publish_aged(self) -> None:
        """Publish the handles of idle conn_table entries, if any."""
        handles = self.switch.sweep_aged()
        if handles:
            self.counters["aged"] += len(handles)
            self._notify.send(encode_aged(handles))

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        """Close every socket; the packet ports and the P4Runtime server too."""
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None
        if self.p4runtime is not None:
            self.p4runtime.stop()
        for port in self.ports.values():
            port.close()
        self._control.close(0)
        self._notify.close(0)
        self._wake_r.close()
        self._wake_w.close()


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of p4lb-switch."""
    parser = argparse.ArgumentParser(
        prog="p4lb-switch",
        description="Forward frames between interfaces through the p4model reference model.",
        epilog="Disable offloads on every attached link, on both ends: "
        "ethtool -K IFACE tx off sg off tso off gso off gro off",
    )
    parser.add_argument(
        "-i",
        "--interface",
        dest="interfaces",
        action="append",
        type=parse_port_spec,
        default=[],
        metavar="PORT@IFACE",
        help="attach IFACE as switch port PORT (repeatable)",
    )
    parser.add_argument(
        "--control",
        default="tcp://127.0.0.1:9559",
        help="ZeroMQ address of the runtime API (REP); port '*' picks a free one",
    )
    parser.add_argument(
        "--digests", help="ZeroMQ address of the digest stream (PUB); default: control port + 1"
    )
    parser.add_argument(
        "--p4runtime",
        nargs="?",
        const=DEFAULT_P4RUNTIME,
        metavar="HOST:PORT",
        help=f"serve P4Runtime (gRPC) here; the bare option means {DEFAULT_P4RUNTIME} "
        "(move --control off that port then)",
    )
    parser.add_argument("--device-id", type=int, default=1, help="P4Runtime device id (default 1)")
    parser.add_argument("--settings", type=Path, help="settings.p4 to load (default: p4src's)")
    parser.add_argument(
        "--ageing-interval", type=float, default=1.0, help="seconds between conn_table age sweeps"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the switch until SIGTERM or SIGINT; print one ready line with the bound addresses."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    ports_taken = [spec.port for spec in args.interfaces]
    if len(set(ports_taken)) != len(ports_taken):
        log.error("a port number is given twice: %s", ports_taken)
        return 2
    ports: list[FramePort] = []
    try:
        switch = Switch(load_settings(args.settings) if args.settings else None)
        for spec in args.interfaces:
            ports.append(PacketPort(spec.port, spec.iface))
        server = SwitchServer(
            switch,
            ports,
            args.control,
            args.digests,
            ageing_interval=args.ageing_interval,
            p4runtime=args.p4runtime,
            device_id=args.device_id,
        )
    except (OSError, zmq.ZMQError, ControlProtocolError, SwitchError) as exc:
        for port in ports:
            port.close()
        log.error("cannot start: %s", exc)
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ready = f"p4lb-switch ready control={server.control_address} digests={server.digest_address}"
    if server.p4runtime_address:
        ready += f" p4runtime={server.p4runtime_address}"
    print(ready, flush=True)
    log.info("ports %s", _describe(server.ports))
    try:
        server.run()
    finally:
        server.close()
    log.info("stopped; counters %s", dict(server.counters))
    return 0


def _describe(ports: Mapping[int, FramePort]) -> str:
    return ", ".join(f"{n}@{p.iface}" for n, p in sorted(ports.items())) or "none"


if __name__ == "__main__":
    sys.exit(main())
