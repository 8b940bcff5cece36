"""Start BMv2's `simple_switch_grpc` for the P4Runtime client's tests: compile, run, send frames.

The switch starts without a program (`--no-p4`): the client under test loads it over P4Runtime.
Its gRPC server listens on a free loopback port (other servers run on this machine at the same
time, so never 9559); frames go in and out over a nanomsg PAIR socket (`--packet-in`), so no
root or veth pair is needed. Each wait polls with a deadline that bounds a broken switch only.
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

from controller.switch import nanomsg

PROGRAM = Path(__file__).resolve().parents[2] / "p4src" / "loadbalancer.p4"
STARTUP_LIMIT = 30.0
_MSG_PACKET_IN = 3  # BMv2 packet_hdr_t type of a frame into the switch (as bmv2_harness)
_PKT_HDR = struct.Struct("<iii")  # type, port, length


@dataclass(frozen=True)
class CompiledP4Runtime:
    """A p4c run for BMv2 with its P4Info: paths and what p4c printed."""

    json_path: Path
    p4info_path: Path
    returncode: int
    output: str


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
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "simple_switch_grpc.log"
        packets = f"ipc://{workdir}/packets.ipc"
        # Built with Thrift too, it would take port 9090 unless told otherwise (and that port
        # may belong to another switch on this machine).
        cmd = ["simple_switch_grpc", "--no-p4", "--device-id", str(device_id)]
        cmd += ["--thrift-port", str(free_port())]
        cmd += ["--packet-in", packets, "--log-file", str(workdir / "switch"), "-L", "info"]
        cmd += ["--", "--grpc-server-addr", self.address, "--cpu-port", "255"]
        self._cmd = cmd
        self._log = self.log_path.open("w")
        self._proc = self._start()
        self._packets: nanomsg.NanomsgSocket | None = None
        try:
            self._wait_listening()
            self._packets = nanomsg.NanomsgSocket(
                nanomsg.PAIR, packets, connect_timeout=STARTUP_LIMIT
            )
        except BaseException:
            self.close()
            raise

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self._cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def restart(self) -> None:
        """Stop the switch and start it again, empty, on the same addresses."""
        self._stop()
        self._proc = self._start()
        self._wait_listening()

    @property
    def spec(self) -> str:
        """The controller's `--switch` spec for this switch."""
        return f"p4rt://{self.address}?device_id={self.device_id}"

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + STARTUP_LIMIT
        while True:
            if self._proc.poll() is not None:
                text = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"simple_switch_grpc exited ({self._proc.returncode}):\n{text}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no gRPC server on {self.address}") from None
                time.sleep(0.05)  # polling a starting process (no event to wait on)

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
        if self._proc.poll() is None:
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
