"""Wire format of p4lb-switch's control socket and notification stream (pure; no I/O).

Requests travel on a ZeroMQ REQ/REP pair as UTF-8 JSON objects:

    {"method": "table_add", "args": ["ipv4_lpm", "forward", ["10.0.1.2/32"], ["1", ...], 0]}

and every request gets one reply, ``{"ok": RESULT}`` or ``{"error": "MESSAGE"}``. Only the runtime
API methods in ``SWITCH_METHODS`` and the server's own ``SERVER_METHODS`` are served; arguments are
positional and checked against each method's signature before anything reaches the switch.

Notifications travel on a ZeroMQ PUB socket, one JSON object per message, either
``{"type": "digests", "digests": [{"kind": ..., "src_ip": ..., ...}, ...]}`` (fields of Digest, in
the order raised) or ``{"type": "aged", "handles": [...]}`` (idle conn_table entries).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from p4model import Digest
from p4model.errors import ErrorCode
from p4model.keys import is_decimal

# Argument kinds: "str", "int", "strs" (list of str), "index" (int or [start, end)),
# "opt_int" (int or null).
ArgKind = Literal["str", "int", "strs", "index", "opt_int"]


@dataclass(frozen=True)
class MethodSpec:
    """Positional argument kinds of one method and how many of them are required."""

    kinds: tuple[ArgKind, ...]
    required: int


SWITCH_METHODS: dict[str, MethodSpec] = {
    "table_add": MethodSpec(("str", "str", "strs", "strs", "int"), 4),
    "table_modify": MethodSpec(("str", "str", "int", "strs"), 4),
    "table_delete": MethodSpec(("str", "int"), 2),
    "table_clear": MethodSpec(("str",), 1),
    "table_set_default": MethodSpec(("str", "str", "strs"), 3),
    "table_num_entries": MethodSpec(("str",), 1),
    "table_entries": MethodSpec(("str",), 1),
    "table_get_default": MethodSpec(("str",), 1),
    "table_set_timeout": MethodSpec(("str", "int", "int"), 3),
    "register_read": MethodSpec(("str", "opt_int"), 1),
    "register_write": MethodSpec(("str", "index", "int"), 3),
    "register_reset": MethodSpec(("str",), 1),
}
"""Runtime API methods of p4model.Switch served on the control socket."""

SERVER_METHODS: dict[str, MethodSpec] = {
    "info": MethodSpec((), 0),
}
"""Methods the server answers itself: ``info`` -> addresses, ports and packet counters."""

DIGEST_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Digest))
_DIGEST_STR_FIELDS = frozenset({"kind", "src_ip", "dst_ip", "dip_ip"})


_ERROR_CODES = frozenset(code.value for code in ErrorCode)


class ControlProtocolError(ValueError):
    """A control message that does not follow this wire format."""


@dataclass(frozen=True)
class Request:
    """One decoded, validated request."""

    method: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Reply:
    """One decoded reply: ``error`` is None on success, else the server's message and ``code``
    (an `ErrorCode` name)."""

    result: Any
    error: str | None
    code: str = ErrorCode.BAD_REQUEST.value


@dataclass(frozen=True)
class Notification:
    """One decoded notification message: new digests, aged handles, or both empty."""

    digests: tuple[Digest, ...] = ()
    aged: tuple[int, ...] = ()


def encode_request(method: str, args: Sequence[Any]) -> bytes:
    """Encode a request, checking it the way the server will."""
    check_args(method, tuple(args))
    return _dump({"method": method, "args": list(args)})


def decode_request(data: bytes) -> Request:
    """Decode and validate a request; raise ControlProtocolError when it is not acceptable."""
    obj = _load(data)
    if set(obj) - {"method", "args"}:
        raise ControlProtocolError(
            f"unexpected request keys {sorted(set(obj) - {'method', 'args'})!r}"
        )
    method = obj.get("method")
    args = obj.get("args", [])
    if not isinstance(method, str):
        raise ControlProtocolError(f"request method must be a string, got {method!r}")
    if not isinstance(args, list):
        raise ControlProtocolError(f"request args must be a list, got {args!r}")
    check_args(method, tuple(args))
    return Request(method, tuple(args))


def check_args(method: str, args: tuple[Any, ...]) -> None:
    """Raise ControlProtocolError unless ``method`` is served and ``args`` fit its signature."""
    spec = SWITCH_METHODS.get(method) or SERVER_METHODS.get(method)
    if spec is None:
        raise ControlProtocolError(f"unknown method {method!r}")
    if not spec.required <= len(args) <= len(spec.kinds):
        want = (
            str(spec.required)
            if spec.required == len(spec.kinds)
            else f"{spec.required}..{len(spec.kinds)}"
        )
        raise ControlProtocolError(f"{method} takes {want} arguments, got {len(args)}: {args!r}")
    for position, (kind, value) in enumerate(zip(spec.kinds, args, strict=False)):
        if not _fits(kind, value):
            raise ControlProtocolError(
                f"{method} argument {position} must be {kind}, got {value!r}"
            )


def encode_ok(result: Any) -> bytes:
    """Encode a successful reply carrying ``result`` (None, int, str, list or dict of those)."""
    return _dump({"ok": result})


def encode_error(message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> bytes:
    """Encode an error reply."""
    return _dump({"error": message, "code": code.value})


def decode_reply(data: bytes) -> Reply:
    """Decode a reply; raise ControlProtocolError when it is neither ok nor error."""
    obj = _load(data)
    if set(obj) == {"ok"}:
        return Reply(obj["ok"], None)
    if set(obj) == {"error", "code"} and isinstance(obj["error"], str):
        if obj["code"] not in _ERROR_CODES:
            raise ControlProtocolError(f"unknown error code in reply {obj!r}")
        return Reply(None, obj["error"], obj["code"])
    raise ControlProtocolError(f"malformed reply {obj!r}")


def encode_digests(digests: Sequence[Digest]) -> bytes:
    """Encode one notification message carrying digests, in the order they were raised."""
    items = [{name: getattr(d, name) for name in DIGEST_FIELDS} for d in digests]
    return _dump({"type": "digests", "digests": items})


def encode_aged(handles: Sequence[int]) -> bytes:
    """Encode one notification message listing idle conn_table entry handles."""
    return _dump({"type": "aged", "handles": [int(h) for h in handles]})


def decode_notification(data: bytes) -> Notification:
    """Decode a notification message; raise ControlProtocolError when malformed."""
    obj = _load(data)
    kind = obj.get("type")
    if kind == "digests":
        items = obj.get("digests")
        if not isinstance(items, list):
            raise ControlProtocolError(f"digests must be a list, got {items!r}")
        return Notification(digests=tuple(_digest_from_json(item) for item in items))
    if kind == "aged":
        handles = obj.get("handles")
        if not isinstance(handles, list) or not all(_is_int(h) for h in handles):
            raise ControlProtocolError(f"aged handles must be a list of ints, got {handles!r}")
        return Notification(aged=tuple(handles))
    raise ControlProtocolError(f"unknown notification type {kind!r}")


def default_digest_address(control: str) -> str:
    """The notification address a control address implies: TCP port + 1, IPC path + ".digests"."""
    if control.startswith("ipc://"):
        return control + ".digests"
    if control.startswith("tcp://"):
        host, sep, port = control[len("tcp://") :].rpartition(":")
        if sep and port == "*":
            return control
        if sep and is_decimal(port) and len(port) <= 5 and 0 < int(port) < 65535:
            return f"tcp://{host}:{int(port) + 1}"
    raise ControlProtocolError(f"cannot derive a digest address from {control!r}; give one")


def _digest_from_json(item: Any) -> Digest:
    if not isinstance(item, dict) or set(item) != set(DIGEST_FIELDS):
        raise ControlProtocolError(f"digest must have fields {DIGEST_FIELDS!r}, got {item!r}")
    for name, value in item.items():
        ok = isinstance(value, str) if name in _DIGEST_STR_FIELDS else _is_int(value)
        if not ok:
            raise ControlProtocolError(f"digest field {name} has bad value {value!r}")
    return Digest(**item)


def _fits(kind: ArgKind, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return _is_int(value)
    if kind == "strs":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "opt_int":
        return value is None or _is_int(value)
    # "index": one cell or a [start, end) range
    return _is_int(value) or (
        isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _load(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ControlProtocolError(f"not JSON: {bytes(data[:80])!r}") from exc
    if not isinstance(obj, dict):
        raise ControlProtocolError(f"message must be a JSON object, got {obj!r}")
    return obj
