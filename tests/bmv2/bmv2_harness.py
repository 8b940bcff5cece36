"""Drive BMv2's simple_switch for the conformance vectors: compile, start, configure, send, collect.

simple_switch runs with `--packet-in`: frames travel over a nanomsg PAIR socket (no root, no veth
pairs, no stray kernel traffic). It logs at trace level on stdout, and the log says when a packet
has left the pipeline (transmitted or dropped) and how many digest samples it raised, so every
wait below ends on an event; the time limits are only bounds for a broken switch. Digests come
from the switch's notifications socket (nanomsg SUB); each buffer is acknowledged at once and the
learning buffer holds one sample, so BMv2 neither batches nor suppresses repeated samples. Both
sockets and the digest decoding are the controller's own (`controller.switch.nanomsg`,
`controller.switch.notifications`), so this tier exercises them against the real switch.
Tables and registers are written over Thrift with the key and parameter parsers of BMv2's own
runtime_CLI, which take the same strings as p4-utils.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import queue
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from controller.switch import api, nanomsg
from controller.switch.bmv2_path import bmv2_site_packages
from controller.switch.notifications import (
    LearnMessage,
    check_layout,
    decode_notification,
    learn_list_widths,
)
from p4src.contract import Digest

_MSG_PACKET_IN = 3
_MSG_PACKET_OUT = 4
_PKT_HDR = struct.Struct("<iii")  # type, port, length (BMv2's packed packet_hdr_t)

_PKT_LINE = re.compile(r"\[(\d+)\.(\d+)\] \[cxt \d+\] (.*)$")
_RECEIVED = re.compile(r"Processing packet received on port (\d+)")
_TRANSMIT = re.compile(r"Transmitting packet of size \d+ out of port (\d+)")
_DROPPED = "Dropping packet at the end of"
_SAMPLE = "Learning sample for list id"

STARTUP_LIMIT = 30.0
PACKET_LIMIT = 10.0


class Bmv2Error(RuntimeError):
    """simple_switch or its control channel failed, or rejected a request."""


@dataclass(frozen=True)
class Compiled:
    """A p4c run: the BMv2 JSON and what p4c printed."""

    json_path: Path
    returncode: int
    output: str


def add_bmv2_python_path() -> None:
    """Put BMv2's Python tools (runtime_CLI, bm_runtime) on sys.path when they are installed."""
    site = bmv2_site_packages()
    if site is not None and str(site) not in sys.path:
        sys.path.append(str(site))


_COMPILED: dict[Path, Compiled] = {}


def compile_once(source: Path) -> Compiled:
    """`compile_program` into a temporary directory, once per process for each source."""
    if source not in _COMPILED:
        out_dir = tempfile.mkdtemp(prefix="p4lb-p4c-")
        atexit.register(shutil.rmtree, out_dir, True)
        _COMPILED[source] = compile_program(source, Path(out_dir))
    return _COMPILED[source]


def compile_program(source: Path, out_dir: Path) -> Compiled:
    """Compile `source` with p4c for BMv2's v1model into `out_dir`."""
    cmd = ["p4c", "--target", "bmv2", "--arch", "v1model", "-o", str(out_dir), str(source)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    json_path = out_dir / (source.stem + ".json")
    return Compiled(json_path, run.returncode, run.stdout + run.stderr)


def _resolve(names: Sequence[str], short: str, kind: str) -> str:
    """The full name for a p4-utils style short name (exact or a unique `.suffix`)."""
    if short in names:
        return short
    found = [n for n in names if n.endswith("." + short)]
    if len(found) != 1:
        raise Bmv2Error(f"unknown or ambiguous {kind} {short!r}")
    return found[0]


def model_digest(digest: api.Digest) -> Digest:
    """The controller's digest as a `p4model.Digest` (same fields), for the vector player."""
    return Digest(**dataclasses.asdict(digest))


def digest_list(program_json: str) -> int:
    """The id of the program's only learn list, after checking it has the controller's layout."""
    layouts = learn_list_widths(program_json)
    if len(layouts) != 1:
        raise Bmv2Error(f"expected one learn list, found {len(layouts)}")
    [(list_id, widths)] = layouts.items()
    if None in widths:
        raise Bmv2Error(f"learn list {list_id} has fields of unknown width: {widths!r}")
    check_layout(widths)
    return list_id


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Bmv2Switch:
    """One simple_switch process running a compiled program; a p4model.vectors VectorTarget."""

    def __init__(self, json_path: Path, workdir: Path, *, collect_digests: bool = True) -> None:
        """Start simple_switch and connect its packet, notification and Thrift channels.

        With `collect_digests=False` the harness neither reads nor acknowledges digests, leaving
        them to another subscriber (e.g. the controller's Thrift client under test).
        """
        import runtime_CLI  # BMv2's Python tools (installed with simple_switch)
        from bm_runtime.standard import Standard

        self._cli: Any = runtime_CLI
        program_json = json_path.read_text(encoding="utf-8")
        self._program: dict[str, Any] = json.loads(program_json)
        self._list_id = digest_list(program_json)
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        packets, notices = f"ipc://{workdir}/packets.ipc", f"ipc://{workdir}/notices.ipc"
        cmd = ["simple_switch", "--packet-in", packets, "--notifications-addr", notices]
        cmd += ["--thrift-port", str(_free_port()), "--log-console", "-L", "trace"]
        self.thrift_port = int(cmd[cmd.index("--thrift-port") + 1])
        self.notifications = notices
        self._proc = subprocess.Popen(
            [*cmd, str(json_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        self._pending: list[Digest] = []
        self._packets: nanomsg.NanomsgSocket | None = None
        self._notices: nanomsg.NanomsgSocket | None = None
        self._transport: Any = None
        try:
            self._wait_line(lambda line: "Thrift server was started" in line, STARTUP_LIMIT)
            self._client: Any = self._connect(Standard.Client)
            self._cli.load_json_str(program_json)
            self._client.bm_learning_set_buffer_size(0, self._list_id, 1)
            self._packets = nanomsg.NanomsgSocket(
                nanomsg.PAIR, packets, connect_timeout=STARTUP_LIMIT
            )
            if collect_digests:
                self._notices = nanomsg.subscribe(notices, connect_timeout=STARTUP_LIMIT)
        except BaseException:
            self.close()
            raise

    def _read_log(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _wait_line(self, want: Any, limit: float) -> str:
        deadline = time.monotonic() + limit
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise Bmv2Error(f"simple_switch: no expected log line in {limit} s") from None
            if line is None:
                tail = "\n".join(self.log[-20:])
                raise Bmv2Error(f"simple_switch exited ({self._proc.wait()}):\n{tail}")
            self.log.append(line)
            if want(line):
                return line

    def _connect(self, client_class: Any) -> Any:
        from thrift.protocol import TBinaryProtocol, TMultiplexedProtocol
        from thrift.transport import TSocket, TTransport

        deadline = time.monotonic() + STARTUP_LIMIT
        while True:  # the log line comes just before the server listens: retry, bounded
            try:
                socket.create_connection(("127.0.0.1", self.thrift_port), timeout=1.0).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise Bmv2Error("cannot reach simple_switch's Thrift server") from None
                time.sleep(0.05)
        transport = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", self.thrift_port))
        transport.open()
        self._transport = transport
        protocol = TBinaryProtocol.TBinaryProtocol(transport)
        return client_class(TMultiplexedProtocol.TMultiplexedProtocol(protocol, "standard"))

    def _call(self, what: str, method: str, *args: Any) -> Any:
        try:
            return getattr(self._client, method)(0, *args)
        except Exception as exc:  # Thrift's Invalid*Operation carry a code only
            raise Bmv2Error(f"{what}: {type(exc).__name__} {exc!r}") from exc

    def _table(self, table: str) -> Any:
        return self._cli.TABLES[_resolve(list(self._cli.TABLES), table, "table")]

    def _action(self, table: Any, action: str) -> Any:
        found = table.get_action(action)
        if found is None:
            raise Bmv2Error(f"table {table.name} has no action {action!r}")
        return found

    def table_add(
        self, table: str, action: str, keys: Sequence[str], params: Sequence[str], prio: int = 0
    ) -> int:
        """Add an entry; the entry handle."""
        tbl = self._table(table)
        act = self._action(tbl, action)
        try:
            key = self._cli.parse_match_key(tbl, list(keys))
            data = self._cli.parse_runtime_data(act, list(params))
        except self._cli.UIn_Error as exc:
            raise Bmv2Error(f"table_add {table}: {exc}") from exc
        options = self._cli.BmAddEntryOptions(priority=prio)
        handle: int = self._call(
            f"table_add {table}", "bm_mt_add_entry", tbl.name, key, act.name, data, options
        )
        return handle

    def table_set_default(self, table: str, action: str, params: Sequence[str]) -> None:
        """Set a table's default action."""
        tbl = self._table(table)
        act = self._action(tbl, action)
        data = self._cli.parse_runtime_data(act, list(params))
        self._call(f"setdefault {table}", "bm_mt_set_default_action", tbl.name, act.name, data)

    def _register(self, name: str) -> str:
        names = [r["name"] for r in self._program["register_arrays"]]
        return _resolve(names, name, "register")

    def register_write(self, name: str, index: int | list[int], value: int) -> None:
        """Write one cell, or the cells [start, end) when `index` is a list."""
        full = self._register(name)
        if isinstance(index, list):
            start, end = index
            self._call(name, "bm_register_write_range", full, start, end - 1, value)
        else:
            self._call(name, "bm_register_write", full, index, value)

    def register_read(self, name: str, index: int | None = None) -> int | list[int]:
        """One cell, or the whole array when `index` is None."""
        full = self._register(name)
        if index is None:
            cells: list[int] = self._call(name, "bm_register_read_all", full)
            return cells
        cell: int = self._call(name, "bm_register_read", full, index)
        return cell

    def process(self, ingress_port: int, frame: bytes) -> list[tuple[int, bytes]]:
        """Send one frame and wait until it left or was dropped; the frames that left."""
        assert self._packets is not None
        self._packets.send(_PKT_HDR.pack(_MSG_PACKET_IN, ingress_port, len(frame)) + frame)
        packet_id = ""
        samples = 0
        sent: list[int] = []
        while True:
            try:
                line = self._wait_line(lambda _: True, PACKET_LIMIT)
            except Bmv2Error as exc:
                hint = "packet not done (was BMv2 built with --disable-logging-macros?)"
                raise Bmv2Error(f"{hint}: {exc}") from exc
            match = _PKT_LINE.search(line)
            if _SAMPLE in line:
                samples += 1
            if match is None:
                continue
            pid, text = match.group(1), match.group(3)
            if not packet_id and _RECEIVED.search(text):
                packet_id = pid
            elif pid == packet_id and (out := _TRANSMIT.search(text)):
                sent.append(int(out.group(1)))
                break
            elif pid == packet_id and _DROPPED in text:
                break
        frames = [self._receive_frame(port) for port in sent]
        while samples > 0 and self._notices is not None:
            samples -= self._receive_digests()
        return frames

    def _receive_frame(self, port: int) -> tuple[int, bytes]:
        assert self._packets is not None
        msg = self._packets.receive(PACKET_LIMIT)
        if msg is None:
            raise Bmv2Error(f"logged a frame out of port {port}, none arrived")
        kind, out_port, length = _PKT_HDR.unpack_from(msg)
        if kind != _MSG_PACKET_OUT or out_port != port or len(msg) != _PKT_HDR.size + length:
            raise Bmv2Error(f"unexpected packet message {msg.hex()}")
        return out_port, msg[_PKT_HDR.size :]

    def _receive_digests(self) -> int:
        assert self._notices is not None
        while True:
            msg = self._notices.receive(PACKET_LIMIT)
            if msg is None:
                raise Bmv2Error("logged a digest sample, no notification arrived")
            message = decode_notification(msg)
            if isinstance(message, LearnMessage):
                break
        self._call("ack", "bm_learning_ack_buffer", message.list_id, message.buffer_id)
        self._pending.extend(model_digest(d) for d in message.digests)
        return len(message.digests)

    def pop_digests(self) -> list[Digest]:
        """Digests raised since the last call (each packet's are collected by `process`)."""
        out, self._pending = self._pending, []
        return out

    def close(self) -> None:
        """Stop simple_switch and close every channel."""
        for sock in (self._packets, self._notices):
            if sock is not None:
                sock.close()
        if self._transport is not None:
            self._transport.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._reader.join(timeout=10)

    def __enter__(self) -> Bmv2Switch:
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
