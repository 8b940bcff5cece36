"""`p4lb-switch`: run the reference model as a software switch on real interfaces.

One AF_PACKET socket per ``-i PORT@IFACE`` feeds frames to ``p4model.Switch.process``; the frames it
returns leave on the interface of their port (port 0, 511 or an unmapped port: dropped and counted).
The control plane is standard P4Runtime over gRPC (``p4model.p4runtime_service``), served on
``--p4runtime HOST:PORT`` (default 127.0.0.1:9559, device id ``--device-id``, default 1): table
writes and reads, arbitration, digests and idle-timeout notifications on the stream. The switch
runs our program from the start, so a client may read its P4Info at once. One thread forwards
frames in a poll loop; the P4Runtime service runs on gRPC's threads and takes the loop's lock
around every touch of the model, so control and packets never interleave inside it.

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
import selectors
import signal
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc

from p4model import Switch, SwitchError
from p4model.afpacket import FramePort, PacketPort
from p4model.keys import is_decimal
from p4model.p4runtime_device import P4RuntimeDevice
from p4model.p4runtime_service import P4RuntimeService, serve
from p4src.contract import load_settings

log = logging.getLogger("p4lb.switch")

BATCH = 64  # frames taken from one interface per loop turn, so no port starves the others
DEFAULT_P4RUNTIME = "127.0.0.1:9559"
"""Where P4Runtime is served unless ``--p4runtime`` says otherwise (simple_switch_grpc's too)."""


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
    """The packet loop over the attached ports, and the P4Runtime server beside it."""

    def __init__(
        self,
        switch: Switch,
        ports: Sequence[FramePort],
        p4runtime: str = DEFAULT_P4RUNTIME,
        *,
        device_id: int = 1,
        ageing_interval: float = 1.0,
    ) -> None:
        """Serve P4Runtime on `p4runtime` (HOST:PORT; port 0 picks a free one); OSError if it
        cannot be bound. `ageing_interval`: seconds between scans for idle entries."""
        self.switch = switch
        # The packet loop holds it while it forwards, the P4Runtime service while it touches
        # the switch: the model never sees two threads at once.
        self.lock = threading.RLock()
        self.ports: dict[int, FramePort] = {p.port: p for p in ports}
        self.counters: Counter[str] = Counter()
        self._tx_keys = {n: f"tx.{n}" for n in self.ports}
        self._tx_error_keys = {n: f"tx_errors.{n}" for n in self.ports}
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.p4runtime = P4RuntimeService(
            P4RuntimeDevice(switch, device_id), self.lock, idle_scan_interval=ageing_interval
        )
        self._grpc: grpc.Server | None = None
        try:
            self._grpc, port = serve(self.p4runtime, p4runtime)
        except OSError:
            self.close()
            raise
        self.p4runtime_address = f"{p4runtime.rpartition(':')[0]}:{port}"

    def stop(self) -> None:
        """Ask the loop to return; safe from another thread or a signal handler."""
        self._stopping = True
        with contextlib.suppress(OSError):  # buffer full or closed: the loop wakes anyway
            self._wake_w.send(b"x")

    def run(self) -> None:
        """Forward frames until stop() is called."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            for port in self.ports.values():
                selector.register(port.fileno(), selectors.EVENT_READ, port)
            while not self._stopping:
                for key, _ in selector.select():
                    try:
                        if key.data is None:
                            self._drain_wake()
                        else:
                            with self.lock:
                                self.pump(key.data)
                    except Exception:  # a bug in one step must not stop forwarding for good
                        self.counters["loop_errors"] += 1
                        log.exception("switch loop step failed")

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

    def publish_digests(self) -> None:
        """Hand the digests the model raised since the last call to the P4Runtime service."""
        digests = self.switch.pop_digests()
        if digests:
            self.counters["digests"] += len(digests)
            self.p4runtime.offer_digests(digests)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    @contextlib.contextmanager
    def running(self, stop_within: float = 10.0) -> Iterator[SwitchServer]:
        """Its packet loop on a thread of its own while the block runs (tests, benchmarks);
        then stopped (AssertionError if the loop outlives `stop_within` seconds) and closed."""
        thread = threading.Thread(target=self.run, name="switch-server", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop()
            thread.join(stop_within)
            self.close()
            assert not thread.is_alive(), f"the switch loop still runs after {stop_within} s"

    def close(self) -> None:
        """Stop the P4Runtime server and close the packet ports."""
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None
        self.p4runtime.stop()
        for port in self.ports.values():
            port.close()
        self._wake_r.close()
        self._wake_w.close()


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of p4lb-switch."""
    parser = argparse.ArgumentParser(
        prog="p4lb-switch",
        description="Forward frames between interfaces through the p4model reference model, "
        "programmed over P4Runtime (it runs p4src/loadbalancer.p4 from the start).",
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
        "--p4runtime",
        default=DEFAULT_P4RUNTIME,
        metavar="HOST:PORT",
        help=f"serve P4Runtime (gRPC) here (default {DEFAULT_P4RUNTIME}; port 0: a free one, "
        "shown in the ready line)",
    )
    parser.add_argument("--device-id", type=int, default=1, help="P4Runtime device id (default 1)")
    parser.add_argument("--settings", type=Path, help="settings.p4 to load (default: p4src's)")
    parser.add_argument(
        "--ageing-interval",
        type=float,
        default=1.0,
        help="seconds between scans for idle entries (P4Runtime idle-timeout notifications)",
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
            args.p4runtime,
            device_id=args.device_id,
            ageing_interval=args.ageing_interval,
        )
    except (OSError, SwitchError) as exc:
        for port in ports:
            port.close()
        log.error("cannot start: %s", exc)
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(
        f"p4lb-switch ready p4runtime={server.p4runtime_address} device_id={args.device_id}",
        flush=True,
    )
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
