"""Start BMv2's `simple_switch_grpc` for the P4Runtime client's tests: compile, run, send frames.

The switch starts without a program (`--no-p4`): the client under test loads it over P4Runtime.
Its gRPC server listens on a free loopback port (other servers run on this machine at the same
time, so never 9559); the switch's own "Server listening" log line, not a connection attempt,
says it is up, and a port taken meanwhile makes it try another. Frames go in and out over a
nanomsg PAIR socket (`--packet-in`), so no root or veth pair is needed. Each wait polls with a
deadline that bounds a broken switch only.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from finsy.proto import p4i
from google.protobuf import text_format

from controller.switch import nanomsg

PROGRAM = Path(__file__).resolve().parents[2] / "p4src" / "loadbalancer.p4"
STARTUP_LIMIT = 30.0
PORT_ATTEMPTS = 3
BIND_FAILED = "No address added"  # gRPC's complaint when the port is taken
_MSG_PACKET_IN = 3  # BMv2 packet_hdr_t type of a frame into the switch (as bmv2_harness)
_PKT_HDR = struct.Struct("<iii")  # type, port, length


@dataclass(frozen=True)
class CompiledP4Runtime:
    """A p4c run for BMv2 with its P4Info: paths and what p4c printed."""

    json_path: Path
    p4info_path: Path
    returncode: int
    output: str

    def program(self) -> tuple[p4i.P4Info, bytes]:
        """The P4Info (parsed) and the BMv2 JSON; AssertionError with p4c's output if it failed."""
        assert self.returncode == 0, self.output
        info = text_format.Parse(self.p4info_path.read_text(), p4i.P4Info())
        return info, self.json_path.read_bytes()


_COMPILED: dict[Path, CompiledP4Runtime] = {}


def compile_with_p4info(source: Path = PROGRAM) -> CompiledP4Runtime:
    """Compile `source` for BMv2 v1model with a text P4Info, once per process."""
    if source not in _COMPILED:
        out = Path(tempfile.mkdtemp(prefix="p4lb-p4rt-"))
        p4info = out / f"{source.stem}.p4info.txt"
        cmd = ["p4c", "--target", "bmv2", "--arch", "v1model", "-o", str(out)]
        cmd += ["--p4runtime-files", str(p4info), str(source)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        json_path = out / f"{source.stem}.json"
        _COMPILED[source] = CompiledP4Runtime(
            json_path, p4info, run.returncode, run.stdout + run.stderr
        )
    return _COMPILED[source]


def free_port() -> int:
    """A loopback TCP port free at this instant."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GrpcSwitch:
    """One `simple_switch_grpc --no-p4` process with a gRPC address and a packet socket."""

    def __init__(self, workdir: Path, device_id: int = 1) -> None:
        self.device_id = device_id
        self.log_path = workdir / "simple_switch_grpc.log"
        self._workdir = workdir
        self._log = self.log_path.open("w")
        self._packets: nanomsg.NanomsgSocket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            # A free port can be taken by another process before the switch binds it (other
            # servers run here): then the switch says so, and we try another port.
            for attempt in range(1, PORT_ATTEMPTS + 1):
                self.port = free_port()
                self.address = f"127.0.0.1:{self.port}"
                self._start()
                if self._wait_listening():
                    break
                self._stop()
                if attempt == PORT_ATTEMPTS:
                    raise RuntimeError(f"simple_switch_grpc found no free port:\n{self._tail()}")
            self._packets = nanomsg.NanomsgSocket(
                nanomsg.PAIR, self._packets_address, connect_timeout=STARTUP_LIMIT
            )
        except BaseException:
            self.close()
            raise

    @property
    def _packets_address(self) -> str:
        return f"ipc://{self._workdir}/packets.ipc"

    def _start(self) -> None:
        # Built with Thrift too, it would take port 9090 unless told otherwise (and that port
        # may belong to another switch on this machine).
        # stdbuf: the "Server listening" line must reach the log at once, not at exit.
        cmd = ["stdbuf", "-oL", "simple_switch_grpc", "--no-p4", "--device-id", str(self.device_id)]
        cmd += ["--thrift-port", str(free_port()), "--packet-in", self._packets_address]
        # Its own notification socket: the default ipc path is shared by every BMv2 here.
        cmd += ["--notifications-addr", f"ipc://{self._workdir}/notifications.ipc"]
        cmd += ["--log-file", str(self._workdir / "switch"), "-L", "info"]
        cmd += ["--", "--grpc-server-addr", self.address, "--cpu-port", "255"]
        self._log.flush()
        self._log_offset = self.log_path.stat().st_size
        self._proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def restart(self) -> None:
        """Stop the switch and start it again, empty, on the same addresses."""
        self._stop()
        self._start()
        if not self._wait_listening():
            raise RuntimeError(f"simple_switch_grpc did not listen again:\n{self._tail()}")

    @property
    def spec(self) -> str:
        """The controller's `--switch` spec for this switch."""
        return f"p4rt://{self.address}?device_id={self.device_id}"

    def _tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def _wait_listening(self) -> bool:
        """Whether this process's gRPC server came up on `address` (its own log line says so;
        a port someone else listens on would answer a mere connection attempt too)."""
        assert self._proc is not None
        deadline = time.monotonic() + STARTUP_LIMIT
        while True:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
            # PI prints "Server listening" even when gRPC could not bind (its error, on stderr,
            # comes first).
            if BIND_FAILED in text or self._proc.poll() is not None:
                return False
            if f"Server listening on {self.address}" in text:
                return True
            if time.monotonic() > deadline:
                raise RuntimeError(f"simple_switch_grpc did not start:\n{self._tail()}")
            time.sleep(0.05)  # polling a starting process's log (no event to wait on)

    def send(self, port: int, frame: bytes) -> None:
        """Feed one frame into the switch on `port`."""
        assert self._packets is not None
        self._packets.send(_PKT_HDR.pack(_MSG_PACKET_IN, port, len(frame)) + frame)

    def receive(self, timeout: float) -> tuple[int, bytes] | None:
        """The next frame the switch sent out (port, bytes), or None after `timeout`."""
        assert self._packets is not None
        msg = self._packets.receive(timeout)
        if msg is None:
            return None
        _, port, length = _PKT_HDR.unpack_from(msg)
        return port, msg[_PKT_HDR.size : _PKT_HDR.size + length]

    def close(self) -> None:
        """Stop the switch and close the packet socket."""
        if self._packets is not None:
            self._packets.close()
        self._stop()
        self._log.close()

    def _stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> GrpcSwitch:
        """Context manager: the switch itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Context manager: close."""
        self.close()


def tools_missing() -> list[str]:
    """The tools this tier needs that are not on PATH."""
    return [tool for tool in ("p4c", "simple_switch_grpc") if shutil.which(tool) is None]
