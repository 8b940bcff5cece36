"""Wire format shared by the demo's TCP/UDP server and its load generator (no I/O).

A request is a header line ``REQ <seq> <size>\\n`` followed by ``size`` payload bytes; the
server answers ``RSP <server> <seq> <size>\\n`` followed by the same payload, so the client
checks every byte it gets back and learns which server answered (a connection whose answers
come from two servers, or from a server it did not expect, was misrouted). Over UDP the
header and payload travel in one datagram.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from agent.wire import parse_decimal

MAX_PAYLOAD = 1 << 20
"""Largest payload a request may carry."""
MAX_HEADER = 128
"""Longest header line, newline included."""
MAX_DATAGRAM = 65000
"""Largest UDP request or response."""
_BLOCK = 256


class AppProtocolError(ValueError):
    """A header line or datagram that is not of the documented form."""


@dataclass(frozen=True)
class RequestHeader:
    """A parsed request header."""

    seq: int
    size: int


@dataclass(frozen=True)
class ResponseHeader:
    """A parsed response header: which server answered which request."""

    server: str
    seq: int
    size: int


def payload_for(seed: int, size: int) -> bytes:
    """Deterministic payload of ``size`` bytes for ``seed`` (so corrupt bytes show)."""
    if size < 0:
        raise AppProtocolError(f"payload size must be >= 0, got {size!r}")
    block = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(_BLOCK // 32))
    return (block * (size // _BLOCK + 1))[:size]


def _check_server_id(server: str) -> None:
    if not server or any(c.isspace() for c in server) or len(server) > 64:
        raise AppProtocolError(f"server id must be 1-64 non-blank characters, got {server!r}")


def _parse_int(text: bytes, what: str, upper: int) -> int:
    try:
        return parse_decimal(text.decode("ascii", "replace"), 0, upper)
    except ValueError:
        raise AppProtocolError(
            f"{what} must be a decimal number <= {upper}, got {text!r}"
        ) from None


def _split_header(line: bytes, tag: bytes, fields: int) -> list[bytes]:
    if len(line) > MAX_HEADER:
        raise AppProtocolError(f"header longer than {MAX_HEADER} bytes: {line[:40]!r}...")
    if not line.endswith(b"\n"):
        raise AppProtocolError(f"header must end with a newline, got {line!r}")
    parts = line[:-1].split(b" ")
    if len(parts) != fields + 1 or parts[0] != tag:
        raise AppProtocolError(f"expected {tag.decode()} with {fields} fields, got {line!r}")
    return parts[1:]


def encode_request(seq: int, payload: bytes) -> bytes:
    """Header plus payload of request ``seq``."""
    if seq < 0 or len(payload) > MAX_PAYLOAD:
        raise AppProtocolError(f"bad request: seq {seq!r}, {len(payload)!r} bytes")
    return b"REQ %d %d\n" % (seq, len(payload)) + payload


def parse_request_header(line: bytes) -> RequestHeader:
    """Parse ``REQ <seq> <size>\\n``."""
    seq, size = _split_header(line, b"REQ", 2)
    return RequestHeader(_parse_int(seq, "seq", 2**63), _parse_int(size, "size", MAX_PAYLOAD))


def encode_response(server: str, seq: int, payload: bytes) -> bytes:
    """Header plus echoed payload of the answer to request ``seq``."""
    _check_server_id(server)
    return b"RSP %s %d %d\n" % (server.encode(), seq, len(payload)) + payload


def parse_response_header(line: bytes) -> ResponseHeader:
    """Parse ``RSP <server> <seq> <size>\\n``."""
    server, seq, size = _split_header(line, b"RSP", 3)
    try:
        name = server.decode("ascii")
    except UnicodeDecodeError:
        raise AppProtocolError(f"server id must be ASCII, got {server!r}") from None
    _check_server_id(name)
    return ResponseHeader(
        name, _parse_int(seq, "seq", 2**63), _parse_int(size, "size", MAX_PAYLOAD)
    )


def _split_datagram(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\n", 0, MAX_HEADER)
    if end < 0:
        raise AppProtocolError(f"datagram without a header line: {data[:40]!r}")
    return data[: end + 1], data[end + 1 :]


def parse_request_datagram(data: bytes) -> tuple[RequestHeader, bytes]:
    """Parse a whole UDP request; the payload length must match the header."""
    line, payload = _split_datagram(data)
    header = parse_request_header(line)
    if len(payload) != header.size:
        raise AppProtocolError(f"header says {header.size} bytes, datagram has {len(payload)}")
    return header, payload


def parse_response_datagram(data: bytes) -> tuple[ResponseHeader, bytes]:
    """Parse a whole UDP response; the payload length must match the header."""
    line, payload = _split_datagram(data)
    header = parse_response_header(line)
    if len(payload) != header.size:
        raise AppProtocolError(f"header says {header.size} bytes, datagram has {len(payload)}")
    return header, payload
