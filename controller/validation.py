"""Scalar checks for config validation: each records its problem and says if the value is good."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from typing import Any

from agent.wire import parse_host_port


class Problems:
    """Collects "location: problem" lines instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, where: str, message: str) -> None:
        """Record one problem."""
        self.problems.append(f"{where}: {message}")

    def required(
        self, where: str, item: Mapping[str, Any], key: str, check: Callable[[str, Any], bool]
    ) -> Any:
        """A required key: its value if present and good, else None."""
        if key not in item:
            self.bad(f"{where}.{key}", "missing")
            return None
        value = item[key]
        return value if check(f"{where}.{key}", value) else None

    def check(self, where: str, ok: bool, message: str) -> bool:
        """Record `message` at `where` unless `ok`; returns `ok`."""
        if not ok:
            self.bad(where, message)
        return ok

    def ipv4(self, where: str, value: Any) -> bool:
        """A dotted IPv4 address."""
        try:
            ipaddress.IPv4Address(value if isinstance(value, str) else "x")
        except ValueError:
            return self.check(where, False, f"{value!r} is not an IPv4 address")
        return True

    def port(self, where: str, value: Any) -> bool:
        """A port number 1-65535."""
        ok = _is_int(value) and 1 <= value <= 65535
        return self.check(where, ok, f"{value!r} is not a port")

    def integer(self, where: str, value: Any, low: int, high: int) -> bool:
        """An integer within [low, high]."""
        ok = _is_int(value) and low <= value <= high
        return self.check(where, ok, f"{value!r} is not an integer in [{low}, {high}]")

    def number(
        self,
        where: str,
        value: Any,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        strict: bool = False,
    ) -> bool:
        """A finite number within the optional bounds."""
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if ok and minimum is not None:
            ok = value > minimum if strict else value >= minimum
        if ok and maximum is not None:
            ok = value <= maximum
        if not ok:
            low = "" if minimum is None else (f" > {minimum}" if strict else f" >= {minimum}")
            high = "" if maximum is None else f" <= {maximum}"
            self.bad(where, f"{value!r} is not a number{low}{high}")
        return ok

    def boolean(self, where: str, value: Any) -> bool:
        """true or false."""
        return self.check(where, isinstance(value, bool), f"{value!r} is not true or false")

    def choice(self, where: str, value: Any, choices: Mapping[str, Any] | tuple[str, ...]) -> bool:
        """One of the allowed strings."""
        ok = isinstance(value, str) and value in choices
        return self.check(where, ok, f"{value!r} is not one of {', '.join(sorted(choices))}")

    def zmq_endpoint(self, where: str, value: Any) -> bool:
        """A ZeroMQ bind endpoint: tcp://HOST:PORT (PORT may be *), ipc://PATH or inproc://NAME."""
        ok = isinstance(value, str) and zmq_endpoint_ok(value)
        return self.check(where, ok, f"{value!r} is not a ZeroMQ endpoint like tcp://HOST:PORT")

    def host_port(
        self, where: str, value: Any, *, allow_empty: bool, expected: str = "HOST:PORT"
    ) -> bool:
        """HOST:PORT (or empty, when allowed); `expected` names the form in the error."""
        if allow_empty and value == "":
            return True
        try:
            parse_host_port(value, low_port=0)
        except ValueError:
            return self.check(where, False, f"{value!r} is not {expected}")
        return True

    def admin_address(self, where: str, value: Any) -> bool:
        """HOST:PORT, an absolute Unix socket path, or empty (disabled)."""
        if isinstance(value, str) and value.startswith("/"):
            return True
        return self.host_port(
            where, value, allow_empty=True, expected="HOST:PORT or /PATH of a socket"
        )


def zmq_endpoint_ok(endpoint: str) -> bool:
    """Whether `endpoint` has the form of a ZeroMQ endpoint a socket can bind."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or not rest or scheme not in ("tcp", "ipc", "inproc"):
        return False
    if scheme != "tcp":
        return True
    if rest.endswith(":*"):  # ZeroMQ picks a free port
        return len(rest) > 2
    try:
        parse_host_port(rest, low_port=0)
    except ValueError:
        return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_local_endpoint(endpoint: str) -> bool:
    """Whether a ZeroMQ bind endpoint is reachable from this host only (loopback, ipc, inproc)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: not provably local
        return False


def load_exposure_problem(
    endpoint: str, *, curve: bool, allow_list: bool, insecure: bool
) -> str | None:
    """Why binding the load feed at `endpoint` is refused (None when it is allowed): beyond
    loopback anyone could steer traffic with forged reports, so CURVE with an allow-list is
    required unless the operator says --insecure-load-listen."""
    if insecure or is_local_endpoint(endpoint) or (curve and allow_list):
        return None
    return (
        f"load_listen {endpoint!r} is reachable from other hosts: give --curve-secret and "
        "--curve-allow (or --insecure-load-listen to accept unauthenticated reports)"
    )
