"""Agent → controller load report schema: one JSON object per ZeroMQ message, no I/O here.

Wire form (schema version 1), keys in this order, unknown keys ignored so optional fields can be
added without a version bump::

    {"v": 1, "dip": "10.1.3.2:8080", "seq": 17, "ts": 1764216000.25, "cpu": 0.42,
     "conns": 12, "conn_rate": 3.5, "state": "up"}

`ts` is the agent's wall clock (seconds since the epoch) when the sample was taken; `seq` counts
reports since the agent started (it restarts at 0). `conn_rate` may be null; keys
the schema does not know (an older agent's `memory`) are ignored.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
from dataclasses import dataclass
from typing import Any, Final, Literal

SCHEMA_VERSION: Final = 1
MAX_REPORT_BYTES: Final = 4096
MAX_SEQ: Final = 2**63 - 1
REPORT_STATES: Final = ("up", "drain", "down")

ReportState = Literal["up", "drain", "down"]


class ProtocolError(ValueError):
    """A report that is not a valid schema-version-1 load report; `reason` is a short code."""

    def __init__(self, message: str, reason: str = "bad_field") -> None:
        super().__init__(message)
        self.reason = reason


def parse_decimal(text: object, low: int = 0, high: int = MAX_SEQ) -> int:
    """The integer in [low, high] that `text` spells in ASCII digits; raises ValueError.

    The one integer parser for text from outside (reports, config, command lines, URLs):
    `str.isdigit()` also accepts "²" and other Unicode digits, which `int()` then refuses or
    reads in another script, and `int()` alone accepts signs, spaces and "_".
    """
    if (
        not isinstance(text, str)
        or not 0 < len(text) <= len(str(high))
        or not (text.isascii() and text.isdigit())
    ):
        raise ValueError(f"{text!r} is not a decimal number of at most {len(str(high))} digits")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{text!r} is not in [{low}, {high}]")
    return value


def parse_host_port(text: object, *, low_port: int = 1) -> tuple[str, int]:
    """Split "HOST:PORT" ("[v6]:PORT" loses its brackets) into (host, port); raises ValueError.

    The port is in [low_port, 65535]; HOST is any non-empty text (resolving it is the caller's
    business).
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not HOST:PORT")
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    try:
        port = parse_decimal(port_text, low_port, 65535)
    except ValueError:
        raise ValueError(f"{text!r} is not HOST:PORT with a port in {low_port}..65535") from None
    return host, port


@functools.lru_cache(maxsize=4096)
def parse_dip(text: str) -> tuple[str, int]:
    """Split a canonical "a.b.c.d:port" DIP name into (ip, port), raising ProtocolError."""
    try:
        ip, port = parse_host_port(text)
        address = ipaddress.IPv4Address(ip)
    except ValueError:
        raise ProtocolError(
            f"dip must be 'a.b.c.d:port' (port 1-65535), got {text!r}", "bad_dip"
        ) from None
    if str(address) != ip or f"{ip}:{port}" != text:
        raise ProtocolError(f"dip must be canonical 'ip:port', got {text!r}", "bad_dip")
    return ip, port


_NUMBER_TYPES: Final = (int, float)  # exact types: bool (an int subclass) is not a number here


def _is_number(value: object) -> bool:
    return type(value) in _NUMBER_TYPES


def _check_fraction(name: str, value: object) -> None:
    if type(value) not in _NUMBER_TYPES or not 0.0 <= value <= 1.0:  # type: ignore[operator]
        raise ProtocolError(f"{name} must be a number in [0, 1], got {value!r}")


@dataclass(frozen=True, slots=True)
class LoadReport:
    """One load sample of one DIP; construction validates every field (raises ProtocolError)."""

    dip: str
    """The server as "ip:port" (IPv4, canonical form)."""
    seq: int
    """Report counter since the agent started (0, 1, 2, ...)."""
    ts: float
    """Agent wall-clock time of the sample, seconds since the epoch."""
    cpu: float
    """CPU utilisation of the agent's scope, 0-1 of what the scope may use."""
    conns: int
    """Established TCP connections on the service port."""
    conn_rate: float | None = None
    """New connections per second, or None if unknown."""
    state: ReportState = "up"
    """What the server asks for: "up" (serve), "drain" (no new connections), "down"."""

    def __post_init__(self) -> None:
        if not isinstance(self.dip, str):
            raise ProtocolError(f"dip must be a string, got {self.dip!r}", "bad_dip")
        parse_dip(self.dip)
        if type(self.seq) is not int or not 0 <= self.seq <= MAX_SEQ:
            raise ProtocolError(f"seq must be an integer in [0, 2**63), got {self.seq!r}")
        if not _is_number(self.ts) or not math.isfinite(self.ts) or self.ts < 0:
            raise ProtocolError(f"ts must be a finite number >= 0, got {self.ts!r}")
        _check_fraction("cpu", self.cpu)
        if type(self.conns) is not int or not 0 <= self.conns <= MAX_SEQ:
            raise ProtocolError(f"conns must be an integer >= 0, got {self.conns!r}")
        rate = self.conn_rate
        if rate is not None and (not _is_number(rate) or not 0.0 <= rate < math.inf):
            raise ProtocolError(f"conn_rate must be null or a finite number >= 0, got {rate!r}")
        if self.state not in REPORT_STATES:
            raise ProtocolError(f"state must be one of {REPORT_STATES}, got {self.state!r}")


def encode_report(report: LoadReport) -> bytes:
    """Serialise a report to its compact JSON wire form (at most MAX_REPORT_BYTES)."""
    data = json.dumps(
        {
            "v": SCHEMA_VERSION,
            "dip": report.dip,
            "seq": report.seq,
            "ts": report.ts,
            "cpu": report.cpu,
            "conns": report.conns,
            "conn_rate": report.conn_rate,
            "state": report.state,
        },
        separators=(",", ":"),
        allow_nan=False,
    ).encode()
    if len(data) > MAX_REPORT_BYTES:  # cannot happen with validated fields; kept as a guard
        raise ProtocolError(f"encoded report is {len(data)} bytes", "oversized")
    return data


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"non-finite number {name!r} in report", "not_json")


# One decoder for all reports (json.loads would build one per call); rejects NaN and Infinity.
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


_REQUIRED = ("dip", "seq", "ts", "cpu", "conns")


def decode_report(data: bytes) -> LoadReport:
    """Parse and validate one wire message; raises ProtocolError (only) on anything malformed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"report must be bytes, got {type(data).__name__}", "not_json")
    if len(data) > MAX_REPORT_BYTES:
        raise ProtocolError(f"report of {len(data)} bytes exceeds {MAX_REPORT_BYTES}", "oversized")
    try:
        obj = _DECODER.decode(bytes(data).decode("utf-8"))
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int limits
        raise ProtocolError(f"report is not JSON: {exc}", "not_json") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"report must be a JSON object, got {type(obj).__name__}", "not_json")
    version = obj.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ProtocolError(f"unknown schema version {version!r}", "bad_version")
    for key in _REQUIRED:
        if key not in obj:
            raise ProtocolError(f"report lacks {key!r}", "missing_field")
    try:
        return LoadReport(
            dip=obj["dip"],
            seq=obj["seq"],
            ts=obj["ts"],
            cpu=obj["cpu"],
            conns=obj["conns"],
            conn_rate=obj.get("conn_rate"),
            state=obj.get("state", "up"),
        )
    except ProtocolError:
        raise
    except Exception as exc:  # a field check's own bug still rejects only this report
        raise ProtocolError(f"bad field: {type(exc).__name__}: {exc}") from None
